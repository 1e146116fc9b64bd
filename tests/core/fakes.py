"""Test doubles for oma.core's shared pieces: a fake clock, and Redis for the token bucket tests.

Fixtures here are made available by tests/core/conftest.py and tests/genstore/conftest.py (the Genstore client
tests pace through the same bucket on the same fake clock).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from oma.core.ratelimit import RedisTokenBucket
from tests.services import HAVE_REDIS, LIMITER_REDIS_URL


class FakeClock:
    """A clock that moves only when something sleeps on it; records every sleep."""

    def __init__(self, start: float = 1_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def now(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self._now += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@dataclass
class LimiterRedis:
    """Redis for the rate limiter tests: its own database and a key prefix unique to the test.

    Not the shared `redis_client` fixture: other test runs on the same machine (and the other xdist workers of this
    one) flush their databases at will, and a bucket that vanishes mid-test would hand out a second burst and look
    like a limiter bug. This database is nobody's to flush (tests/services.py).
    """

    url: str
    client: redis.Redis
    key_prefix: str

    def bucket(self, **kwargs: Any) -> RedisTokenBucket:
        return RedisTokenBucket(redis.Redis.from_url(self.url), key_prefix=self.key_prefix, **kwargs)


@pytest.fixture
def limiter_redis() -> Iterator[LimiterRedis]:
    if not HAVE_REDIS:
        pytest.skip("needs Redis: not reachable on 127.0.0.1:6379")
    url = LIMITER_REDIS_URL
    client = redis.Redis.from_url(url)
    prefix = f"test:{uuid.uuid4().hex}:oma:bucket:"
    yield LimiterRedis(url=url, client=client, key_prefix=prefix)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()
