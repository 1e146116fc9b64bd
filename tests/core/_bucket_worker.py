"""Target of the multi-process rate limiter test (imported by spawned processes: keep it light)."""

from __future__ import annotations

from typing import Any

import redis

from oma.core.ratelimit import RedisTokenBucket


def take_tokens(
    redis_url: str, key_prefix: str, key: str, count: int, capacity: int, refill: float, start: Any, granted: Any
) -> None:
    """Wait for the start signal, then take `count` tokens, counting each one only after acquire() returned."""
    bucket = RedisTokenBucket(redis.Redis.from_url(redis_url), key_prefix=key_prefix)
    start.wait(30)
    for _ in range(count):
        bucket.acquire(key, capacity=capacity, refill_per_second=refill)
        with granted.get_lock():
            granted.value += 1
