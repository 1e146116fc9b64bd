from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection

from tests.services import HAVE_POSTGRES, HAVE_REDIS


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        f"oma services: PostgreSQL {'yes' if HAVE_POSTGRES else 'NO (SQLite; postgres tests skipped)'}, "
        f"Redis {'yes' if HAVE_REDIS else 'NO (redis tests skipped)'}"
    ]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_pg = pytest.mark.skip(reason="needs PostgreSQL (this run uses SQLite: none reachable on 127.0.0.1:5432)")
    skip_redis = pytest.mark.skip(reason="needs Redis: not reachable on 127.0.0.1:6379")
    for item in items:
        if "postgres" in item.keywords and not HAVE_POSTGRES:
            item.add_marker(skip_pg)
        if "redis" in item.keywords and not HAVE_REDIS:
            item.add_marker(skip_redis)


@pytest.fixture
def redis_client():
    """A clean Redis database (15) for the test; skips when Redis is down."""
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
