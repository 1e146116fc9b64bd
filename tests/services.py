"""Which real services the test run has. Probed once, before Django is configured.

Outside CI a missing PostgreSQL or Redis skips the tests that need it (and pytest says so with -ra);
with OMA_REQUIRE_SERVICES=1 (set by .ci/run) a missing service fails the run instead.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse, urlsplit, urlunsplit

POSTGRES_URL = os.environ.get("OMA_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/oma")
REQUIRE_SERVICES = os.environ.get("OMA_REQUIRE_SERVICES", "") not in ("", "0", "false")

# pytest-xdist names its worker processes gw0, gw1, ...: each has its own test database (pytest-django appends the
# worker id to its name) and, below, its own Redis database, since the tests flush theirs and count broker queues.
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
# The rate limiter tests' database (tests/core/fakes.py): keys prefixed per test and never flushed, so no worker
# uses it as its own.
LIMITER_REDIS_DB = 14
# Not 0 (a developer's `make run`), 13 (the benchmarks' bucket) or 14; the first worker, or a run without xdist,
# takes 15 (or OMA_TEST_REDIS_URL's database).
_WORKER_REDIS_DBS = (15, *range(12, 0, -1))


def _worker_redis_url(url: str) -> str:
    """`url` itself for a run without xdist and its first worker; another database of the same server for the rest."""
    number = int(XDIST_WORKER.removeprefix("gw") or 0)
    if number == 0:
        return url
    return urlunsplit(urlsplit(url)._replace(path=f"/{_WORKER_REDIS_DBS[number % len(_WORKER_REDIS_DBS)]}"))


SHARED_REDIS_URL = os.environ.get("OMA_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
REDIS_URL = _worker_redis_url(SHARED_REDIS_URL)
LIMITER_REDIS_URL = urlunsplit(urlsplit(SHARED_REDIS_URL)._replace(path=f"/{LIMITER_REDIS_DB}"))


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=1):
            return True
    except OSError:
        return False


HAVE_POSTGRES = os.environ.get("OMA_TEST_SQLITE", "") == "" and _reachable(POSTGRES_URL, 5432)
HAVE_REDIS = _reachable(REDIS_URL, 6379)

if REQUIRE_SERVICES:
    missing = [name for name, ok in (("PostgreSQL", HAVE_POSTGRES), ("Redis", HAVE_REDIS)) if not ok]
    if missing:
        raise SystemExit(f"OMA_REQUIRE_SERVICES is set but these services are down: {', '.join(missing)}")
