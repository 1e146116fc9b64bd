"""Client-side token buckets shared by every process that calls one metered API: the one token bucket of OMA.

APIs meter their clients with token buckets (Genstore: per shop, 40 tokens, 2 per second by default; carriers: a
request budget per account). Sweeps, pushes, webhook re-reads and tracking polls run in several Celery workers at
once; if each paced itself alone they would together overrun the API's bucket and collect 429s. So every request
first takes a token from a bucket that all processes share, named by a key the client chooses:

* `RedisTokenBucket`: the state lives in Redis, changed only by Lua scripts (atomic) that read the time from Redis
  itself (`TIME`), so the workers' clocks do not matter. If Redis fails, it falls back to a per-process bucket (and
  leaves Redis alone for `outage_retry_seconds`) and says so in the log: work goes on, and the client's 429
  handling covers the gap.
* `LocalTokenBucket`: thread-safe, in-process; the embedded mode (REDIS_URL unset) runs a single worker process.

Both keep, per key, `tokens` (at time `ts`, refilled continuously up to the capacity) and `until` (no token is
handed out before it: set after a 429). `acquire` takes a token or learns exactly how long until one is due, sleeps
that long and asks again: no busy polling, and a penalty set meanwhile by another process is honoured.
`observe` lowers our count when the API reports fewer tokens left than we think (other clients of the API do not
share our bucket, the API's does); which header carries that count is the client's knowledge, not this module's.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import redis

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_KEY_PREFIX",
    "LocalTokenBucket",
    "RateLimiter",
    "RateLimiterTimeout",
    "RedisTokenBucket",
    "rate_limiter_for",
]

# A bucket nobody touched for this long after it would be full again is forgotten (Redis key expiry).
_IDLE_EXPIRY_SECONDS = 600
# Redis keys are `<prefix><key>`; a client family may keep its own prefix (oma.genstore keeps its historical one).
DEFAULT_KEY_PREFIX = "oma:bucket:"


class RateLimiterTimeout(Exception):
    """acquire() would have had to wait longer than its timeout; `wait` is how long a token is still away."""

    def __init__(self, key: str, wait: float) -> None:
        super().__init__(f"rate limiter {key!r}: next token in {wait:.2f}s, longer than the timeout")
        self.key = key
        self.wait = wait


class RateLimiter(Protocol):
    def acquire(self, key: str, *, capacity: int, refill_per_second: float, timeout: float | None = None) -> float: ...

    def observe(self, key: str, *, used: int, capacity: int) -> None: ...

    def penalize(self, key: str, *, seconds: float) -> None: ...


def _check_bucket(capacity: int, refill_per_second: float) -> None:
    if capacity < 1:
        raise ValueError(f"bucket capacity must be at least 1, got {capacity}")
    if not refill_per_second > 0:
        raise ValueError(f"bucket refill must be positive, got {refill_per_second}")


class _BucketBase:
    """The blocking loop shared by both buckets; subclasses implement the three atomic steps."""

    def __init__(self, *, sleep: Callable[[float], None]) -> None:
        self._sleep = sleep

    def _try_take(self, key: str, capacity: int, refill_per_second: float) -> float:
        """Take a token and return 0, or take nothing and return the seconds until one is due."""
        raise NotImplementedError

    def acquire(self, key: str, *, capacity: int, refill_per_second: float, timeout: float | None = None) -> float:
        """Block until a token is ours; return the seconds slept. RateLimiterTimeout if it would exceed `timeout`."""
        _check_bucket(capacity, refill_per_second)
        waited = 0.0
        while True:
            wait = self._try_take(key, capacity, refill_per_second)
            if wait <= 0:
                return waited
            if timeout is not None and waited + wait > timeout:
                raise RateLimiterTimeout(key, wait)
            self._sleep(wait)
            waited += wait


# --- in-process ---------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _State:
    tokens: float
    ts: float
    until: float = 0.0
    refill: float = 0.0  # the last refill rate acquire() used: observe() and penalize() need it
    capacity: float = 0.0


def _refilled(state: _State, now: float, capacity: float, refill: float) -> float:
    return min(capacity, state.tokens + max(0.0, now - state.ts) * refill)


class LocalTokenBucket(_BucketBase):
    """A token bucket per key inside this process (thread-safe). `clock` and `sleep` are injectable for tests."""

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        super().__init__(sleep=sleep)
        self._clock = clock
        self._lock = threading.Lock()
        self._states: dict[str, _State] = {}

    def _try_take(self, key: str, capacity: int, refill_per_second: float) -> float:
        with self._lock:
            now = self._clock()
            state = self._states.get(key)
            if state is None:
                state = self._states[key] = _State(tokens=float(capacity), ts=now)
            state.tokens = _refilled(state, now, capacity, refill_per_second)
            state.ts = max(state.ts, now)
            state.refill, state.capacity = refill_per_second, capacity
            if now < state.until:
                return state.until - now
            if state.tokens >= 1:
                state.tokens -= 1
                return 0.0
            return (1 - state.tokens) / refill_per_second

    def observe(self, key: str, *, used: int, capacity: int) -> None:
        """The API says `used` of `capacity` are spent: if that leaves fewer tokens than we think, believe it."""
        remaining = max(0.0, float(capacity - used))
        with self._lock:
            now = self._clock()
            state = self._states.get(key)
            if state is None:
                self._states[key] = _State(tokens=remaining, ts=now, capacity=capacity)
                return
            current = _refilled(state, now, state.capacity or capacity, state.refill)
            if remaining < current:
                state.tokens, state.ts = remaining, max(state.ts, now)

    def penalize(self, key: str, *, seconds: float) -> None:
        """After a 429: nobody gets a token for `seconds`, and the bucket counts as empty from now."""
        with self._lock:
            now = self._clock()
            state = self._states.get(key)
            if state is None:
                state = self._states[key] = _State(tokens=0.0, ts=now)
            state.tokens, state.ts = 0.0, max(state.ts, now)
            state.until = max(state.until, now + max(0.0, seconds))


# --- Redis ----------------------------------------------------------------------------------------------------------

# Shared by the three scripts: read the state, refill it to `now`. Time comes from Redis unless a test passes it.
_LUA_PRELUDE = """
if redis.replicate_commands then redis.replicate_commands() end  -- Redis < 7: allow writes after TIME
local key = KEYS[1]
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local s = redis.call('HMGET', key, 'tokens', 'ts', 'until', 'refill', 'capacity')
local tokens, ts = tonumber(s[1]), tonumber(s[2])
local until_ = tonumber(s[3]) or 0
local refill, capacity = tonumber(s[4]) or 0, tonumber(s[5]) or 0
local function refilled(cap, rate)
  if tokens == nil or ts == nil then return nil end
  local elapsed = now - ts
  if elapsed < 0 then elapsed = 0 end
  return math.min(cap, tokens + elapsed * rate)
end
local function fmt(x) return string.format('%.17g', x) end  -- tostring() keeps only 14 digits
local function save(new_tokens, new_until, ttl_seconds)
  if ts == nil or now > ts then ts = now end
  redis.call('HSET', key, 'tokens', fmt(new_tokens), 'ts', fmt(ts), 'until', fmt(new_until),
             'refill', fmt(refill), 'capacity', fmt(capacity))
  redis.call('PEXPIRE', key, math.ceil(ttl_seconds * 1000))
end
local function ttl()
  local full = 0
  if refill > 0 then full = capacity / refill end
  return math.max(until_ - now, 0) + full + IDLE_SECONDS
end
""".replace("IDLE_SECONDS", str(_IDLE_EXPIRY_SECONDS))

# ARGV: now, capacity, refill -> "0" when a token was taken, else the seconds until one is due (as a string: Lua
# numbers returned to Redis are truncated to integers).
_LUA_ACQUIRE = (
    _LUA_PRELUDE
    + """
capacity, refill = tonumber(ARGV[2]), tonumber(ARGV[3])
local current = refilled(capacity, refill)
if current == nil then current = capacity end
local wait = 0
if now < until_ then
  wait = until_ - now
elseif current >= 1 then
  current = current - 1
else
  wait = (1 - current) / refill
end
save(current, until_, ttl())
return fmt(wait)
"""
)

# ARGV: now, used, server capacity
_LUA_OBSERVE = (
    _LUA_PRELUDE
    + """
local remaining = tonumber(ARGV[3]) - tonumber(ARGV[2])
if remaining < 0 then remaining = 0 end
local current = refilled(capacity > 0 and capacity or tonumber(ARGV[3]), refill)
if current == nil or remaining < current then
  if capacity == 0 then capacity = tonumber(ARGV[3]) end
  save(remaining, until_, ttl())
  return 1
end
return 0
"""
)

# ARGV: now, seconds
_LUA_PENALIZE = (
    _LUA_PRELUDE
    + """
local new_until = math.max(until_, now + math.max(0, tonumber(ARGV[2])))
until_ = new_until
save(0, new_until, ttl())
return fmt(new_until - now)
"""
)


class RedisTokenBucket(_BucketBase):
    """A token bucket per key in Redis, shared by every process using the same Redis database.

    `clock` is for tests only: by default the scripts read the time from Redis (`TIME`), one clock for everyone.
    """

    key_prefix = DEFAULT_KEY_PREFIX
    outage_retry_seconds = 10.0

    def __init__(
        self,
        redis_client: redis.Redis,
        *,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        key_prefix: str | None = None,
    ) -> None:
        super().__init__(sleep=sleep)
        if key_prefix is not None:
            self.key_prefix = key_prefix
        self._redis = redis_client
        self._clock = clock
        self._acquire_script = redis_client.register_script(_LUA_ACQUIRE)
        self._observe_script = redis_client.register_script(_LUA_OBSERVE)
        self._penalize_script = redis_client.register_script(_LUA_PENALIZE)
        # Used only while Redis is unreachable, so that a Redis outage slows nothing down but our own pacing.
        self._fallback = LocalTokenBucket(clock=clock or time.monotonic, sleep=sleep)
        self._last_outage_log = -math.inf
        # After a failure Redis is left alone for a while: redis-py's own retries make each failing call slow.
        self._redis_down_until = -math.inf

    def _now_arg(self) -> str:
        return "" if self._clock is None else repr(self._clock())

    def _redis_usable(self) -> bool:
        return time.monotonic() >= self._redis_down_until

    def _redis_failed(self, action: str, exc: redis.RedisError) -> None:
        self._redis_down_until = time.monotonic() + self.outage_retry_seconds
        if time.monotonic() - self._last_outage_log > 60:  # once a minute is enough to be noticed
            self._last_outage_log = time.monotonic()
            logger.warning(
                "Rate limiter %s: Redis %s failed (%s); pacing per process until it is back", self.key_prefix, action,
                exc,
            )

    def _try_take(self, key: str, capacity: int, refill_per_second: float) -> float:
        if not self._redis_usable():
            return self._fallback._try_take(key, capacity, refill_per_second)
        try:
            result = self._acquire_script(
                keys=[self.key_prefix + key], args=[self._now_arg(), capacity, repr(float(refill_per_second))]
            )
        except redis.RedisError as exc:
            self._redis_failed("acquire", exc)
            return self._fallback._try_take(key, capacity, refill_per_second)
        return float(result)

    def observe(self, key: str, *, used: int, capacity: int) -> None:
        if not self._redis_usable():
            self._fallback.observe(key, used=used, capacity=capacity)
            return
        try:
            self._observe_script(keys=[self.key_prefix + key], args=[self._now_arg(), int(used), int(capacity)])
        except redis.RedisError as exc:
            self._redis_failed("observe", exc)
            self._fallback.observe(key, used=used, capacity=capacity)

    def penalize(self, key: str, *, seconds: float) -> None:
        if not self._redis_usable():
            self._fallback.penalize(key, seconds=seconds)
            return
        try:
            self._penalize_script(keys=[self.key_prefix + key], args=[self._now_arg(), repr(float(seconds))])
        except redis.RedisError as exc:
            self._redis_failed("penalize", exc)
            self._fallback.penalize(key, seconds=seconds)


_process_bucket = LocalTokenBucket()


@lru_cache(maxsize=8)
def _redis_bucket(redis_client: redis.Redis, key_prefix: str) -> RedisTokenBucket:
    return RedisTokenBucket(redis_client, key_prefix=key_prefix)


def rate_limiter_for(redis_client: redis.Redis | None, *, key_prefix: str = DEFAULT_KEY_PREFIX) -> RateLimiter:
    """The limiter every client in this process should share: Redis-backed when a client is given, else one
    process-wide LocalTokenBucket (so two clients for the same key in one process still share a bucket).

    One RedisTokenBucket per Redis client, key prefix and process, too: while Redis is down it paces with its
    in-process fallback, and that fallback must be the process's, not a fresh full bucket for every client (every
    task)."""
    return _process_bucket if redis_client is None else _redis_bucket(redis_client, key_prefix)
