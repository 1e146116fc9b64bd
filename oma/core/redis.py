"""One Redis connection pool per process, or None when REDIS_URL is unset (embedded mode)."""

from __future__ import annotations

from functools import lru_cache

import redis
from django.conf import settings


@lru_cache(maxsize=1)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2, health_check_interval=30)


def get_redis() -> redis.Redis | None:
    url = settings.REDIS_URL
    return _client(url) if url else None
