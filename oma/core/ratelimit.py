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
that long and asks again: no busy polling, and a penalty set meanwhile by another process is honoured. A key's
capacity and refill may change from one call to the next: the tokens it holds are kept (capped at the capacity).
`observe` lowers our count when the API reports fewer tokens left than we think (other clients of the API do not
share our bucket, the API's does); which header carries that count is the client's knowledge, not this module's.

**Learned buckets.** A client that does not know its API's bucket passes a `BucketLearning` (its starting figures
and the API's documented plans) to `observe` and `learned=True` to `acquire`; the bucket then learns, per key and
shared by every process (in Redis), from the answers' `used`/`capacity`:

* the capacity: the answer's, at once (a smaller one also shrinks the refill in proportion until measured again);
* the refill: from how `used` falls between answers (`refill_update`, over windows of some `window_tokens`);
* the tokens: the API's own count. Each answer says how many tokens are left; requests we sent that it has not
  answered yet (counted in flight from `acquire` to `observe`/`settle`) will still take theirs. Our count is
  lowered to that at once, and raised to it (less a small headroom) when the API has room we did not know of, so
  that a store's whole bucket is used, never more. `learned(key)` reads the figures.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import redis

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_KEY_PREFIX",
    "BucketLearning",
    "DrainWindow",
    "LocalTokenBucket",
    "RateLimiter",
    "RateLimiterTimeout",
    "RedisTokenBucket",
    "rate_limiter_for",
    "refill_update",
]

# A bucket nobody touched for this long after it would be full again is forgotten (Redis key expiry).
_IDLE_EXPIRY_SECONDS = 600
# Learned figures outlive idle periods (a store pushed once a day keeps what it taught us).
_LEARNED_EXPIRY_SECONDS = 7 * 24 * 3600
# A request counts as in flight from its token to its answer. After this long without a token taken, what is still
# counted belongs to requests that will never be answered (a killed process) and is forgotten.
_INFLIGHT_FORGET_SECONDS = 60.0
# A token short by less than this is a whole one: waiting for float dust (1e-15 s) would spin, not wait.
_TOKEN_EPSILON = 1e-9
# Redis keys are `<prefix><key>`; a client family may keep its own prefix (oma.genstore keeps its historical one).
DEFAULT_KEY_PREFIX = "oma:bucket:"


class RateLimiterTimeout(Exception):
    """acquire() would have had to wait longer than its timeout; `wait` is how long a token is still away."""

    def __init__(self, key: str, wait: float) -> None:
        super().__init__(f"rate limiter {key!r}: next token in {wait:.2f}s, longer than the timeout")
        self.key = key
        self.wait = wait


def _check_bucket(capacity: int, refill_per_second: float) -> None:
    if capacity < 1:
        raise ValueError(f"bucket capacity must be at least 1, got {capacity}")
    if not refill_per_second > 0:
        raise ValueError(f"bucket refill must be positive, got {refill_per_second}")


# --- learning -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BucketLearning:
    """How a bucket learns an API's figures from its answers. The API's own numbers (starting figures, documented
    plans) come from its client package; the rest are the learning's knobs."""

    start_capacity: int  # until an answer says otherwise
    start_refill: float  # until measured
    plans: tuple[tuple[int, float], ...] = ()  # documented (capacity, refill) pairs a close measurement snaps to
    max_capacity: int = 1_000_000
    min_refill: float = 0.1
    max_refill: float = 100_000.0
    window_tokens: float = 30.0  # a refill measurement spans at least this many tokens regained ...
    min_window_seconds: float = 1.0  # ... and at least this long, or else this long (a slow bucket, a quiet store)
    max_window_seconds: float = 15.0
    smoothing: float = 0.5  # how far a measurement close to the belief moves it
    snap_tolerance: float = 0.1  # a measurement within 10% of a documented plan's refill is that plan
    headroom_share: float = 0.05  # room the API reports beyond ours is taken up to this share of the capacity ...
    min_headroom: float = 2.0  # ... and at least this many tokens short of it (answers overtaking each other)

    def __post_init__(self) -> None:
        _check_bucket(self.start_capacity, self.start_refill)

    def capacity_from(self, header_capacity: int) -> int:
        return max(1, min(int(header_capacity), self.max_capacity))

    def bounded(self, refill: float) -> float:
        return min(max(refill, self.min_refill), self.max_refill)

    def snapped(self, refill: float, capacity: int) -> float:
        """The documented refill closest to `refill` if within the tolerance (plans of this capacity first)."""
        same = [plan_refill for plan_capacity, plan_refill in self.plans if plan_capacity == capacity]
        candidates = same or [plan_refill for _, plan_refill in self.plans]
        close = [plan for plan in candidates if abs(refill - plan) <= self.snap_tolerance * plan]
        return min(close, key=lambda plan: abs(refill - plan)) if close else refill

    def window_closes(self, *, seconds: float, regained: float) -> bool:
        """A measurement of the refill is due: enough tokens regained (integer counts: each window is off by a
        token or two) over long enough a time, or the longest window is over."""
        if seconds < self.min_window_seconds:
            return False
        return regained >= self.window_tokens or seconds >= self.max_window_seconds

    def headroom(self, capacity: int) -> float:
        return max(self.min_headroom, capacity * self.headroom_share)

    def refill_for_new_capacity(self, refill: float, *, old: int, new: int) -> float:
        """A smaller capacity is a cheaper plan: until measured again, the slowest documented plan of that capacity,
        else the refill shrunk in proportion (whichever is slower). A larger one keeps the refill (measured soon:
        the bucket's own count lets us use the room at once)."""
        if new >= old:
            return refill
        plans = [plan_refill for plan_capacity, plan_refill in self.plans if plan_capacity == new]
        return self.bounded(min([refill * new / old, *plans]))

    def script_args(self) -> list[str]:
        return [
            str(self.max_capacity), repr(float(self.start_refill)), repr(float(self.min_refill)),
            repr(float(self.headroom_share)), repr(float(self.min_headroom)), repr(float(self.window_tokens)),
            repr(float(self.min_window_seconds)), repr(float(self.max_window_seconds)),
        ]


@dataclass(frozen=True, slots=True)
class DrainWindow:
    """Two answers of the API `seconds` apart and what happened between them (the input of refill_update)."""

    seconds: float
    used_start: int
    used_end: int
    answered: int  # answers after the first one that took a token
    min_used: int  # the lowest `used` among the answers after the first one
    capacity: int
    refill: float  # the refill believed so far


def refill_update(window: DrainWindow, learning: BucketLearning) -> float:
    """The refill to believe after `window`.

    Between the two answers the bucket lost `answered` tokens to requests and regained refill x seconds, unless it
    was full meanwhile (the regain is capped): used_end = used_start + answered - refill x seconds. A window in which
    the bucket never was full (every `used` above 1) therefore measures the refill; one that saw it full measures
    nothing. Another client of the same bucket shows up as a smaller refill: the safe side. A measurement far from
    the belief (another plan) replaces it; a close one moves it by `smoothing` (integer counts make each window a
    little noisy); a result close to a documented plan becomes that plan."""
    if window.seconds <= 0 or window.min_used <= 1:
        return window.refill
    sample = (window.used_start + window.answered - window.used_end) / window.seconds
    if abs(sample - window.refill) > window.refill / 2:
        estimate = sample
    else:
        estimate = window.refill + learning.smoothing * (sample - window.refill)
    return learning.bounded(learning.snapped(learning.bounded(estimate), window.capacity))


def _window_from(values: Sequence[bytes | str]) -> DrainWindow:
    seconds, used_start, used_end, answered, min_used, capacity, refill = (
        value.decode() if isinstance(value, bytes) else str(value) for value in values
    )
    return DrainWindow(
        seconds=float(seconds), used_start=int(float(used_start)), used_end=int(float(used_end)),
        answered=int(float(answered)), min_used=int(float(min_used)), capacity=int(float(capacity)),
        refill=float(refill),
    )


class RateLimiter(Protocol):
    def acquire(
        self, key: str, *, capacity: int, refill_per_second: float, timeout: float | None = None, learned: bool = False
    ) -> float: ...

    def observe(
        self, key: str, *, used: int, capacity: int, consumed: bool = True, learning: BucketLearning | None = None
    ) -> None: ...

    def settle(self, key: str) -> None: ...

    def penalize(self, key: str, *, seconds: float) -> None: ...

    def learned(self, key: str) -> tuple[int, float] | None: ...


class _BucketBase:
    """The blocking loop shared by both buckets; subclasses implement the atomic steps."""

    def __init__(self, *, sleep: Callable[[float], None]) -> None:
        self._sleep = sleep

    def _try_take(self, key: str, capacity: int, refill_per_second: float, learned: bool) -> float:
        """Take a token and return 0, or take nothing and return the seconds until one is due."""
        raise NotImplementedError

    def acquire(
        self, key: str, *, capacity: int, refill_per_second: float, timeout: float | None = None, learned: bool = False
    ) -> float:
        """Block until a token is ours; return the seconds slept. RateLimiterTimeout if it would exceed `timeout`.
        `learned`: the key's learned capacity and refill, where known, replace the figures given."""
        _check_bucket(capacity, refill_per_second)
        waited = 0.0
        while True:
            wait = self._try_take(key, capacity, refill_per_second, learned)
            if wait <= 0:
                return waited
            if timeout is not None and waited + wait > timeout:
                raise RateLimiterTimeout(key, wait)
            self._sleep(wait)
            waited += wait


# --- in-process ---------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Window:
    used: int
    at: float
    answers: int
    min_used: int = -1


@dataclass(slots=True)
class _State:
    tokens: float
    ts: float
    until: float = 0.0
    refill: float = 0.0  # the last refill rate used: observe() and penalize() need it
    capacity: float = 0.0
    # Learning (keys observed with a BucketLearning):
    learned_capacity: int | None = None
    learned_refill: float | None = None
    inflight: int = 0  # tokens taken whose answer is not observed yet
    last_take: float = -math.inf
    answers: int = 0  # answers observed that took a token
    window: _Window | None = None


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

    def _try_take(self, key: str, capacity: int, refill_per_second: float, learned: bool = False) -> float:
        with self._lock:
            now = self._clock()
            state = self._states.get(key)
            if learned and state is not None:
                capacity = state.learned_capacity or capacity
                refill_per_second = state.learned_refill or refill_per_second
            if state is None:
                state = self._states[key] = _State(tokens=float(capacity), ts=now)
            state.tokens = _refilled(state, now, capacity, refill_per_second)
            state.ts = max(state.ts, now)
            state.refill, state.capacity = refill_per_second, capacity
            if now < state.until:
                return state.until - now
            if state.tokens >= 1 - _TOKEN_EPSILON:
                state.tokens = max(0.0, state.tokens - 1)
                if learned:
                    if now - state.last_take > _INFLIGHT_FORGET_SECONDS:
                        state.inflight = 0
                    state.inflight += 1
                    state.last_take = now
                return 0.0
            return (1 - state.tokens) / refill_per_second

    def observe(
        self, key: str, *, used: int, capacity: int, consumed: bool = True, learning: BucketLearning | None = None
    ) -> None:
        """The API says `used` of `capacity` are spent: if that leaves fewer tokens than we think, believe it.
        With `learning`: learn from it (see the module docstring)."""
        if learning is not None:
            self._observe_learning(key, used=used, capacity=capacity, consumed=consumed, learning=learning)
            return
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

    def _observe_learning(
        self, key: str, *, used: int, capacity: int, consumed: bool, learning: BucketLearning
    ) -> None:
        with self._lock:
            now = self._clock()
            state = self._states.get(key)
            if state is None:
                state = self._states[key] = _State(tokens=float(learning.capacity_from(capacity)), ts=now)
            window = self._learn(state, now, used, learning.capacity_from(capacity), consumed, learning)
            if window is not None:  # the tokens were just brought up to now: the new refill counts from here
                state.refill = state.learned_refill = refill_update(window, learning)

    @staticmethod
    def _learn(
        state: _State, now: float, used: int, capacity: int, consumed: bool, learning: BucketLearning
    ) -> DrainWindow | None:
        """One answer into the state (the Lua script _LUA_OBSERVE_LEARN does the same); the window it closes."""
        rate = state.learned_refill or learning.start_refill
        old_capacity = state.learned_capacity or int(state.capacity) or capacity
        current = min(_refilled(state, now, old_capacity, state.refill or rate), capacity)
        restart = state.learned_capacity is not None and state.learned_capacity != capacity
        if state.learned_capacity is not None:
            rate = learning.refill_for_new_capacity(rate, old=state.learned_capacity, new=capacity)
        state.capacity, state.refill, state.learned_capacity, state.learned_refill = capacity, rate, capacity, rate
        state.inflight = max(0, state.inflight - 1)
        truth = max(0.0, float(capacity - used - state.inflight))
        if current > truth:
            current = truth
        elif current < truth - learning.headroom(capacity):
            current = truth - learning.headroom(capacity)
        state.tokens, state.ts = current, max(state.ts, now)
        state.answers += consumed
        window = state.window
        if restart or window is None:
            state.window = _Window(used=used, at=now, answers=state.answers)
            return None
        window.min_used = used if window.min_used < 0 else min(window.min_used, used)
        seconds = now - window.at
        if not learning.window_closes(seconds=seconds, regained=window.used + state.answers - window.answers - used):
            return None
        state.window = _Window(used=used, at=now, answers=state.answers)
        return DrainWindow(
            seconds=seconds, used_start=window.used, used_end=used, answered=state.answers - window.answers,
            min_used=window.min_used, capacity=capacity, refill=rate,
        )

    def settle(self, key: str) -> None:
        """A request that took a token ended without an answer to observe (a timeout): no longer in flight."""
        with self._lock:
            state = self._states.get(key)
            if state is not None:
                state.inflight = max(0, state.inflight - 1)

    def learned(self, key: str) -> tuple[int, float] | None:
        with self._lock:
            state = self._states.get(key)
            if state is None or state.learned_capacity is None or state.learned_refill is None:
                return None
            return state.learned_capacity, state.learned_refill

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

# Shared by the scripts: read the state, refill it to `now`. Time comes from Redis unless a test passes it.
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
local s = redis.call('HMGET', key, 'tokens', 'ts', 'until', 'refill', 'capacity', 'lcap', 'lrefill')
local tokens, ts = tonumber(s[1]), tonumber(s[2])
local until_ = tonumber(s[3]) or 0
local refill, capacity = tonumber(s[4]) or 0, tonumber(s[5]) or 0
local lcap, lrefill = tonumber(s[6]), tonumber(s[7])
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
  if lcap ~= nil then return LEARNED_SECONDS end
  local full = 0
  if refill > 0 then full = capacity / refill end
  return math.max(until_ - now, 0) + full + IDLE_SECONDS
end
""".replace("IDLE_SECONDS", str(_IDLE_EXPIRY_SECONDS)).replace("LEARNED_SECONDS", str(_LEARNED_EXPIRY_SECONDS))

# ARGV: now, capacity, refill, learned ('1': the learned figures replace the two given) -> "0" when a token was
# taken, else the seconds until one is due (as a string: Lua numbers returned to Redis are truncated to integers).
_LUA_ACQUIRE = (
    _LUA_PRELUDE
    + """
capacity, refill = tonumber(ARGV[2]), tonumber(ARGV[3])
local learning = ARGV[4] == '1'
if learning then
  capacity = lcap or capacity
  refill = lrefill or refill
end
local current = refilled(capacity, refill)
if current == nil then current = capacity end
local wait = 0
if now < until_ then
  wait = until_ - now
elseif current >= 1 - TOKEN_EPSILON then
  current = math.max(0, current - 1)
else
  wait = (1 - current) / refill
end
save(current, until_, ttl())
if learning and wait == 0 then
  local f = redis.call('HMGET', key, 'inflight', 'last_take')
  local inflight, last_take = tonumber(f[1]) or 0, tonumber(f[2])
  if last_take == nil or now - last_take > FORGET_SECONDS then inflight = 0 end
  redis.call('HSET', key, 'inflight', inflight + 1, 'last_take', fmt(now))
end
return fmt(wait)
""".replace("FORGET_SECONDS", str(_INFLIGHT_FORGET_SECONDS)).replace("TOKEN_EPSILON", repr(_TOKEN_EPSILON))
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

# LocalTokenBucket._learn in Lua. ARGV: now, used, server capacity, consumed ('1'/'0'), then
# BucketLearning.script_args(): max capacity, start refill, min refill, headroom share, min headroom, window tokens,
# min and max window seconds. Returns the closed window (DrainWindow's fields in order), or after a change of
# capacity {'capacity', old capacity, new capacity, refill before} (the refill is shrunk in proportion meanwhile),
# or nil.
_LUA_OBSERVE_LEARN = (
    _LUA_PRELUDE
    + """
local used = tonumber(ARGV[2])
local cap = math.max(1, math.min(math.floor(tonumber(ARGV[3])), tonumber(ARGV[5])))
local rate = lrefill or tonumber(ARGV[6])
local f = redis.call('HMGET', key, 'inflight', 'answers', 'wused', 'wat', 'wanswers', 'wmin')
local inflight, answers = tonumber(f[1]) or 0, tonumber(f[2]) or 0
local wused, wat, wanswers, wmin = tonumber(f[3]), tonumber(f[4]), tonumber(f[5]), tonumber(f[6]) or -1
local old_cap = lcap or (capacity > 0 and capacity) or cap
local current = refilled(old_cap, refill > 0 and refill or rate)
if current == nil then current = cap end
current = math.min(current, cap)
local restart = lcap ~= nil and lcap ~= cap
local old_lcap, old_rate = lcap, rate
if lcap ~= nil and cap < lcap then
  rate = math.max(tonumber(ARGV[7]), rate * cap / lcap)
end
capacity, refill, lcap = cap, rate, cap
if inflight > 0 then inflight = inflight - 1 end
local truth = cap - used - inflight
if truth < 0 then truth = 0 end
local headroom = math.max(tonumber(ARGV[9]), cap * tonumber(ARGV[8]))
if current > truth then
  current = truth
elseif current < truth - headroom then
  current = truth - headroom
end
if ARGV[4] == '1' then answers = answers + 1 end
local window = false
if restart then
  window = {'capacity', tostring(old_lcap), tostring(cap), fmt(old_rate)}
end
if restart or wat == nil then
  wused, wat, wanswers, wmin = used, now, answers, -1
else
  if wmin < 0 or used < wmin then wmin = used end
  local seconds = now - wat
  local regained = wused + (answers - wanswers) - used
  if seconds >= tonumber(ARGV[11]) and (regained >= tonumber(ARGV[10]) or seconds >= tonumber(ARGV[12])) then
    window = {fmt(seconds), tostring(wused), tostring(used), tostring(answers - wanswers), tostring(wmin),
              tostring(cap), fmt(rate)}
    wused, wat, wanswers, wmin = used, now, answers, -1
  end
end
save(current, until_, LEARNED_SECONDS)
redis.call('HSET', key, 'lcap', cap, 'lrefill', fmt(rate), 'inflight', inflight, 'answers', answers,
           'wused', wused, 'wat', fmt(wat), 'wanswers', wanswers, 'wmin', wmin)
return window
""".replace("LEARNED_SECONDS", str(_LEARNED_EXPIRY_SECONDS))
)

# ARGV: now, the new refill. The tokens are brought up to now at the old rate first: nothing is lost or invented.
_LUA_RETUNE = (
    _LUA_PRELUDE
    + """
local current = refilled(lcap or capacity, refill)
refill = tonumber(ARGV[2])
if current ~= nil then save(current, until_, ttl()) end
redis.call('HSET', key, 'lrefill', ARGV[2])
return 1
"""
)

_LUA_SETTLE = """
local inflight = tonumber(redis.call('HGET', KEYS[1], 'inflight')) or 0
if inflight > 0 then redis.call('HSET', KEYS[1], 'inflight', inflight - 1) end
return 1
"""

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
        self._observe_learn_script = redis_client.register_script(_LUA_OBSERVE_LEARN)
        self._retune_script = redis_client.register_script(_LUA_RETUNE)
        self._settle_script = redis_client.register_script(_LUA_SETTLE)
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

    def _try_take(self, key: str, capacity: int, refill_per_second: float, learned: bool = False) -> float:
        if not self._redis_usable():
            return self._fallback._try_take(key, capacity, refill_per_second, learned)
        try:
            result = self._acquire_script(
                keys=[self.key_prefix + key],
                args=[self._now_arg(), capacity, repr(float(refill_per_second)), "1" if learned else "0"],
            )
        except redis.RedisError as exc:
            self._redis_failed("acquire", exc)
            return self._fallback._try_take(key, capacity, refill_per_second, learned)
        return float(result)

    def observe(
        self, key: str, *, used: int, capacity: int, consumed: bool = True, learning: BucketLearning | None = None
    ) -> None:
        if not self._redis_usable():
            self._fallback.observe(key, used=used, capacity=capacity, consumed=consumed, learning=learning)
            return
        try:
            if learning is None:
                self._observe_script(keys=[self.key_prefix + key], args=[self._now_arg(), int(used), int(capacity)])
                return
            window = self._observe_learn_script(
                keys=[self.key_prefix + key],
                args=[self._now_arg(), int(used), int(capacity), "1" if consumed else "0", *learning.script_args()],
            )
            if window:
                self._relearn(key, window, learning)
        except redis.RedisError as exc:
            self._redis_failed("observe", exc)
            self._fallback.observe(key, used=used, capacity=capacity, consumed=consumed, learning=learning)

    def _relearn(self, key: str, result: Sequence[bytes], learning: BucketLearning) -> None:
        """The observe script closed a window or saw a new capacity: the refill to believe from now (computed here,
        where the learning's knobs and plans are), set without losing a token."""
        if result[0] == b"capacity":
            old_capacity, new_capacity, refill = int(result[1]), int(result[2]), float(result[3])
            new_refill = learning.refill_for_new_capacity(refill, old=old_capacity, new=new_capacity)
        else:
            window = _window_from(result)
            refill, new_refill = window.refill, refill_update(window, learning)
        if new_refill != refill:
            self._retune_script(keys=[self.key_prefix + key], args=[self._now_arg(), repr(float(new_refill))])

    def settle(self, key: str) -> None:
        if not self._redis_usable():
            self._fallback.settle(key)
            return
        try:
            self._settle_script(keys=[self.key_prefix + key])
        except redis.RedisError as exc:
            self._redis_failed("settle", exc)
            self._fallback.settle(key)

    def learned(self, key: str) -> tuple[int, float] | None:
        if not self._redis_usable():
            return self._fallback.learned(key)
        try:
            capacity, refill = self._redis.hmget(self.key_prefix + key, ["lcap", "lrefill"])
        except redis.RedisError as exc:
            self._redis_failed("read", exc)
            return self._fallback.learned(key)
        if capacity is None or refill is None:
            return None
        return int(float(capacity)), float(refill)

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
