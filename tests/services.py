"""Which real services the test run has. Probed once, before Django is configured.

Outside CI a missing PostgreSQL or Redis skips the tests that need it (and pytest says so with -ra);
with OMA_REQUIRE_SERVICES=1 (set by .ci/run) a missing service fails the run instead.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

POSTGRES_URL = os.environ.get("OMA_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/oma")
REDIS_URL = os.environ.get("OMA_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
REQUIRE_SERVICES = os.environ.get("OMA_REQUIRE_SERVICES", "") not in ("", "0", "false")


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
