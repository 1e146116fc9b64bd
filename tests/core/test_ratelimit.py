"""The shared token bucket: exact behaviour on a fake clock (both implementations), then real threads and processes.

Count-based checks only: "by time t, at most capacity + refill * (t - t0) tokens were granted". With real clocks the
count is read before the time, so every counted grant happened before `t`; the bound holds exactly when the
limiter is right, however slow the machine.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from oma.core.ratelimit import LocalTokenBucket, RateLimiterTimeout, RedisTokenBucket, rate_limiter_for
from tests.core._bucket_worker import take_tokens

KEY = "store:1"


@pytest.fixture(params=["local", "redis"])
def make_bucket(request, fake_clock):
    """Builds buckets on the fake clock; for Redis, several instances share one Redis database (like processes)."""
    if request.param == "local":
        shared = LocalTokenBucket(clock=fake_clock.now, sleep=fake_clock.sleep)
        return lambda: shared  # one per process: every "client" of the process shares it
    limiter_redis = request.getfixturevalue("limiter_redis")
    return lambda: limiter_redis.bucket(clock=fake_clock.now, sleep=fake_clock.sleep)


def assert_within_bucket(grant_times: list[float], capacity: int, refill: float) -> None:
    """For every window [t_i, t_j] of grants: j - i + 1 <= capacity + refill * (t_j - t_i)."""
    for i in range(len(grant_times)):
        for j in range(i, len(grant_times)):
            assert j - i + 1 <= capacity + refill * (grant_times[j] - grant_times[i]) + 1e-9, (i, j)


def test_burst_then_steady_refill(make_bucket, fake_clock):
    bucket = make_bucket()
    grant_times, waits = [], []
    for _ in range(25):
        waits.append(bucket.acquire(KEY, capacity=5, refill_per_second=2))
        grant_times.append(fake_clock.now())
    assert waits[:5] == [0, 0, 0, 0, 0]  # a full bucket hands out its burst at once
    assert waits[5:] == pytest.approx([0.5] * 20)  # then exactly one token per 1/refill seconds, no more sleeping
    assert sum(fake_clock.sleeps) == pytest.approx((25 - 5) / 2)
    assert_within_bucket(grant_times, capacity=5, refill=2)


def test_two_clients_share_one_bucket(make_bucket, fake_clock):
    first, second = make_bucket(), make_bucket()
    grant_times = []
    for round_ in range(12):
        bucket = first if round_ % 2 else second
        bucket.acquire(KEY, capacity=4, refill_per_second=1)
        grant_times.append(fake_clock.now())
    assert sum(fake_clock.sleeps) == pytest.approx(12 - 4)
    assert_within_bucket(grant_times, capacity=4, refill=1)


def test_refill_never_exceeds_capacity(make_bucket, fake_clock):
    bucket = make_bucket()
    bucket.acquire(KEY, capacity=3, refill_per_second=1)
    fake_clock.advance(3600)  # an idle hour refills to the capacity, not to 3600 tokens
    waits = [bucket.acquire(KEY, capacity=3, refill_per_second=1) for _ in range(4)]
    assert waits == [0, 0, 0, pytest.approx(1.0)]


def test_keys_are_independent(make_bucket, fake_clock):
    bucket = make_bucket()
    for _ in range(2):
        bucket.acquire("store:1", capacity=2, refill_per_second=1)
    assert bucket.acquire("store:2", capacity=2, refill_per_second=1) == 0
    assert bucket.acquire("store:1", capacity=2, refill_per_second=1) == pytest.approx(1.0)


def test_penalize_holds_every_client_back(make_bucket, fake_clock):
    punished, other = make_bucket(), make_bucket()
    punished.acquire(KEY, capacity=5, refill_per_second=2)
    punished.penalize(KEY, seconds=3)
    assert other.acquire(KEY, capacity=5, refill_per_second=2) == pytest.approx(3.0)
    # The bucket counted as empty at the 429 and refilled for 3 s since: 6 tokens, capped at 5 (one just taken).
    waits = [other.acquire(KEY, capacity=5, refill_per_second=2) for _ in range(5)]
    assert waits == [0, 0, 0, 0, pytest.approx(0.5)]


def test_penalty_set_while_waiting_is_honoured(make_bucket, fake_clock):
    waiter, punisher = make_bucket(), make_bucket()
    for _ in range(2):
        waiter.acquire(KEY, capacity=2, refill_per_second=1)

    def sleep_and_meanwhile_a_429(seconds: float) -> None:
        if not fake_clock.sleeps:  # while we sleep the first time, another worker gets a 429 with Retry-After 10
            punisher.penalize(KEY, seconds=10)
        fake_clock.sleep(seconds)

    waiter._sleep = sleep_and_meanwhile_a_429
    waited = waiter.acquire(KEY, capacity=2, refill_per_second=1)
    assert fake_clock.sleeps == [pytest.approx(1.0), pytest.approx(9.0)]
    assert waited == pytest.approx(10.0)


def test_observe_lowers_our_tokens_to_what_genstore_reports(make_bucket, fake_clock):
    bucket = make_bucket()
    bucket.acquire(KEY, capacity=40, refill_per_second=2)  # we think 39 are left
    bucket.observe(KEY, used=38, capacity=40)  # Genstore says 2 are left (another app spent them)
    waits = [bucket.acquire(KEY, capacity=40, refill_per_second=2) for _ in range(3)]
    assert waits == [0, 0, pytest.approx(0.5)]


def test_observe_never_raises_our_tokens(make_bucket, fake_clock):
    bucket = make_bucket()
    for _ in range(3):
        bucket.acquire(KEY, capacity=3, refill_per_second=1)
    bucket.observe(KEY, used=0, capacity=40)  # a stale or optimistic header does not make room
    assert bucket.acquire(KEY, capacity=3, refill_per_second=1) == pytest.approx(1.0)


def test_observe_before_any_acquire_seeds_the_bucket(make_bucket, fake_clock):
    bucket = make_bucket()
    bucket.observe(KEY, used=39, capacity=40)
    waits = [bucket.acquire(KEY, capacity=40, refill_per_second=2) for _ in range(2)]
    assert waits == [0, pytest.approx(0.5)]


def test_timeout_raises_without_sleeping_or_taking(make_bucket, fake_clock):
    bucket = make_bucket()
    bucket.acquire(KEY, capacity=1, refill_per_second=0.1)
    with pytest.raises(RateLimiterTimeout) as info:
        bucket.acquire(KEY, capacity=1, refill_per_second=0.1, timeout=5)
    assert info.value.wait == pytest.approx(10.0)
    assert fake_clock.sleeps == []
    fake_clock.advance(10)
    assert bucket.acquire(KEY, capacity=1, refill_per_second=0.1, timeout=0) == 0


def test_timeout_allows_waits_that_fit(make_bucket, fake_clock):
    bucket = make_bucket()
    bucket.acquire(KEY, capacity=1, refill_per_second=1)
    assert bucket.acquire(KEY, capacity=1, refill_per_second=1, timeout=1.5) == pytest.approx(1.0)


@pytest.mark.parametrize(("capacity", "refill"), [(0, 1.0), (5, 0.0), (5, -1.0)])
def test_invalid_bucket_settings(capacity, refill):
    with pytest.raises(ValueError):
        LocalTokenBucket().acquire(KEY, capacity=capacity, refill_per_second=refill)


@pytest.mark.redis
def test_redis_state_expires_when_idle(limiter_redis):
    bucket = limiter_redis.bucket()
    bucket.acquire(KEY, capacity=40, refill_per_second=2)
    ttl = limiter_redis.client.pttl(limiter_redis.key_prefix + KEY)
    assert 0 < ttl <= (20 + 600) * 1000 + 1000


def test_redis_outage_falls_back_to_local_pacing(caplog, fake_clock):
    caplog.set_level(logging.WARNING, logger="oma.core.ratelimit")
    unreachable = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    calls = []
    original = unreachable.evalsha

    def counting_evalsha(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    unreachable.evalsha = counting_evalsha
    bucket = RedisTokenBucket(unreachable, clock=fake_clock.now, sleep=fake_clock.sleep)
    waits = [bucket.acquire(KEY, capacity=2, refill_per_second=1) for _ in range(3)]
    assert waits == [0, 0, pytest.approx(1.0)]
    bucket.penalize(KEY, seconds=5)
    bucket.observe(KEY, used=1, capacity=2)
    assert bucket.acquire(KEY, capacity=2, refill_per_second=1) == pytest.approx(5.0)
    assert "Redis acquire failed" in caplog.text
    assert len(calls) == 1  # after the first failure Redis is left alone for a while, not retried on every call


def test_rate_limiter_for_shares_one_local_bucket_per_process(limiter_redis):
    assert rate_limiter_for(None) is rate_limiter_for(None)
    assert isinstance(rate_limiter_for(None), LocalTokenBucket)
    assert isinstance(rate_limiter_for(limiter_redis.client), RedisTokenBucket)
    # One per Redis client too, so that a Redis outage falls back to one bucket per process, not one per client.
    assert rate_limiter_for(limiter_redis.client) is rate_limiter_for(limiter_redis.client)


# --- real concurrency ---------------------------------------------------------------------------------------------


def _watch(read_count, read_clock, t0: float, capacity: int, refill: float, done: threading.Event) -> list[tuple]:
    """Sample (count, time) until done; each sample must respect the bucket from t0."""
    samples = []
    while not done.is_set():
        count = read_count()
        now = read_clock()  # read after the count: every counted grant happened before `now`
        samples.append((count, now))
        assert count <= capacity + refill * (now - t0) + 1e-6, (count, now - t0)
        time.sleep(0.01)
    return samples


def _run_threads(bucket, read_clock, *, threads: int, each: int, capacity: int, refill: float) -> int:
    granted = 0
    lock = threading.Lock()
    start = threading.Barrier(threads + 1)
    done = threading.Event()

    def worker() -> None:
        nonlocal granted
        start.wait()
        for _ in range(each):
            bucket.acquire("shared", capacity=capacity, refill_per_second=refill)
            with lock:
                granted += 1

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    t0 = read_clock()  # before any thread can take a token (they wait on the barrier)
    start.wait()
    watcher_error: list[BaseException] = []

    def watch() -> None:
        try:
            _watch(lambda: granted, read_clock, t0, capacity, refill, done)
        except BaseException as exc:
            watcher_error.append(exc)

    watcher = threading.Thread(target=watch)
    watcher.start()
    for thread in pool:
        thread.join(30)
    t1 = read_clock()
    done.set()
    watcher.join()
    if watcher_error:
        raise watcher_error[0]
    assert granted == threads * each
    assert granted <= capacity + refill * (t1 - t0) + 1e-6
    return granted


def test_threads_share_the_local_bucket():
    bucket = LocalTokenBucket()
    assert _run_threads(bucket, time.monotonic, threads=6, each=10, capacity=5, refill=100) == 60


@pytest.mark.redis
def test_threads_share_the_redis_bucket(limiter_redis):
    def redis_now() -> float:
        seconds, micros = limiter_redis.client.time()
        return seconds + micros / 1_000_000

    # One RedisTokenBucket per thread, as separate clients would have.
    buckets = threading.local()

    class PerThread:
        def acquire(self, *args, **kwargs):
            if not hasattr(buckets, "bucket"):
                buckets.bucket = limiter_redis.bucket()
            return buckets.bucket.acquire(*args, **kwargs)

    assert _run_threads(PerThread(), redis_now, threads=6, each=10, capacity=5, refill=100) == 60


@pytest.mark.redis
def test_processes_share_the_redis_bucket(limiter_redis):
    capacity, refill, processes, each = 4, 40.0, 3, 12
    context = multiprocessing.get_context("spawn")  # fresh interpreters: nothing inherited, like Celery workers
    start = context.Event()
    granted = context.Value("i", 0)
    pool = [
        context.Process(
            target=take_tokens,
            args=(limiter_redis.url, limiter_redis.key_prefix, "shared", each, capacity, refill, start, granted),
        )
        for _ in range(processes)
    ]
    for process in pool:
        process.start()

    def redis_now() -> float:
        seconds, micros = limiter_redis.client.time()
        return seconds + micros / 1_000_000

    def read_count() -> int:
        with granted.get_lock():
            return granted.value

    time.sleep(0.5)  # let the interpreters come up (the bound below starts counting at t0 either way)
    t0 = redis_now()
    start.set()
    done = threading.Event()
    samples: list[tuple] = []
    errors: list[BaseException] = []

    def watch() -> None:
        try:
            samples.extend(_watch(read_count, redis_now, t0, capacity, refill, done))
        except BaseException as exc:
            errors.append(exc)

    watcher = threading.Thread(target=watch)
    watcher.start()
    for process in pool:
        process.join(60)
    t1 = redis_now()
    done.set()
    watcher.join()
    if errors:
        raise errors[0]
    assert all(process.exitcode == 0 for process in pool)
    total = read_count()
    assert total == processes * each
    assert total <= capacity + refill * (t1 - t0) + 1e-6
    assert len(samples) > 5  # the bound was checked all along the run, not only at the end
