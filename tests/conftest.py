"""The whole suite's hooks and fixtures: which services the run has, and how pytest-xdist shares the tests out.

`make test` runs the suite in several xdist workers (`--dist loadgroup`). Each worker has its own test database and
Redis database (tests/services.py, tests/settings.py; the databases are copies of one migrated once:
tests/dbtemplate.py), and every server a test starts listens on a free port, so tests need not know about the
others. Two things are ordered here: heavy tests (real workers, servers, faults, acceptance volumes) start first,
so that the run does not end waiting for one long test, and tests that share one expensive session fixture
(Chromium) run in one worker.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from tests import dbtemplate
from tests.services import HAVE_POSTGRES, HAVE_REDIS, XDIST_WORKER

# `--cpu-report`: CPU per test file (tests/cpu_report.py).
pytest_plugins = ("tests.cpu_report",)

# Tests that start processes or push volumes: markers and the fixtures that start real servers.
HEAVY_MARKERS = ("slow", "faults")
HEAVY_FIXTURES = ("celery_worker_factory", "gunicorn_factory", "private_redis", "live_server")
# The longest of them (`--durations`), started before the other heavy ones: a run should not end waiting for one.
LONGEST = (
    "tests/fulfillment/test_acceptance.py", "tests/core/test_make_run.py",
    "tests/webhooks/test_acceptance.py::test_shuffled", "tests/tracking/test_acceptance.py",
    "tests/ops/test_queues.py::test_a_long_import",
)
# path prefix -> xdist group: these share a session fixture, started once in the worker that runs the group.
XDIST_GROUPS = {"tests/browser/": "browser"}


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        f"oma services: PostgreSQL {'yes' if HAVE_POSTGRES else 'NO (SQLite; postgres tests skipped)'}, "
        f"Redis {'yes' if HAVE_REDIS else 'NO (redis tests skipped)'}"
    ]


def pytest_configure(config: pytest.Config) -> None:
    # The xdist controller names the template database its workers copy theirs from (tests/dbtemplate.py).
    if HAVE_POSTGRES and _starts_xdist_workers(config):
        os.environ[dbtemplate.ENV] = dbtemplate.template_name()
        config.stash[_template_key] = os.environ[dbtemplate.ENV]


def pytest_unconfigure(config: pytest.Config) -> None:
    if _template_key in config.stash:
        dbtemplate.drop(config.stash[_template_key])


_template_key = pytest.StashKey[str]()


def _starts_xdist_workers(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput") and bool(getattr(config.option, "numprocesses", 0)) and getattr(
        config.option, "dist", "no") != "no"


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix: None,
                                 tmp_path_factory: pytest.TempPathFactory) -> None:
    """pytest-django's hook before it creates the test database: an xdist worker's is a copy of the template."""
    name = os.environ.get(dbtemplate.ENV)
    if XDIST_WORKER and name and connection.vendor == "postgresql":
        shared = Path(tmp_path_factory.getbasetemp()).parent  # the controller's: every worker's basetemp is in it
        if dbtemplate.prepare(name, lock_dir=shared):
            settings.DATABASES["default"]["TEST"]["TEMPLATE"] = name


@pytest.hookimpl(trylast=True)  # after pytest-django's own ordering
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_pg = pytest.mark.skip(reason="needs PostgreSQL (this run uses SQLite: none reachable on 127.0.0.1:5432)")
    skip_redis = pytest.mark.skip(reason="needs Redis: not reachable on 127.0.0.1:6379")
    for item in items:
        if "postgres" in item.keywords and not HAVE_POSTGRES:
            item.add_marker(skip_pg)
        if "redis" in item.keywords and not HAVE_REDIS:
            item.add_marker(skip_redis)
        for prefix, group in XDIST_GROUPS.items():
            if item.nodeid.startswith(prefix):
                item.add_marker(pytest.mark.xdist_group(group))
    if getattr(config.option, "loadgroup", False) or getattr(config.option, "dist", "no") == "loadgroup":
        _xdist_groups_in_node_ids(items)
    items[:] = heavy_first(items)


def _xdist_groups_in_node_ids(items: list[pytest.Item]) -> None:
    """Append each grouped test's `@group` to its node id, which is what `--dist loadgroup` schedules by.

    Why here: pytest-xdist 3.8 sets the private `_nodeid`, which pytest 9.2 no longer reads (node ids come from
    `_id`), so every group was ignored and its tests spread over the workers (a Chromium and a web stack started on
    each). pytest-xdist#1386; remove this once a release fixes it. Without pytest's NodeId (another pytest), the
    groups are left to xdist."""
    try:
        from _pytest.nodeid import NodeId
    except ImportError:
        return
    for item in items:
        names = sorted({str(marker.args[0] if marker.args else marker.kwargs.get("name", "default"))
                        for marker in item.iter_markers("xdist_group")})
        if names and "@" not in item.nodeid:
            item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(names)}")  # type: ignore[attr-defined]


def heavy_first(items: list[pytest.Item]) -> list[pytest.Item]:
    """The heavy tests first, each followed by a light one, then the rest in pytest-django's order.

    xdist keeps two tests queued on each worker: a heavy test queued behind another would wait for it while other
    workers run out of work; a light one behind it costs nothing. Heavy transactional tests may come before the
    other database tests: their teardown's flush re-runs the post_migrate handlers (content types, permissions,
    the beat schedule), which is all that migrations leave in the database. Every worker collects, and must order,
    the same way: nothing here depends on the worker or the clock.
    """
    heavy = sorted((item for item in items if _weight(item)), key=_weight, reverse=True)  # stable: ties keep order
    light = [item for item in items if not _weight(item)]
    interleaved = [item for pair in zip(heavy, light, strict=False) for item in pair]
    return interleaved + heavy[len(light):] + light[len(heavy):]


def _weight(item: pytest.Item) -> int:
    """3: one of the longest; 2: marked slow or a fault test; 1: starts real servers or processes; 0: the rest."""
    if item.nodeid.startswith(LONGEST):
        return 3
    if any(item.get_closest_marker(name) for name in HEAVY_MARKERS):
        return 2
    return 1 if any(name in getattr(item, "fixturenames", ()) for name in HEAVY_FIXTURES) else 0


@pytest.fixture
def redis_client():
    """A clean Redis database (this worker's: tests/services.py) for the test; skips when Redis is down."""
    if not HAVE_REDIS:
        pytest.skip("needs Redis: not reachable on 127.0.0.1:6379")
    from oma.core.redis import get_redis

    client = get_redis()
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture
def is_postgres() -> bool:
    return connection.vendor == "postgresql"


@pytest.fixture
def eager_celery() -> Iterator[None]:
    """Tasks run inline where they are queued (after the commit), as a worker would run them."""
    from oma.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous
