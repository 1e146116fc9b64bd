"""The learned Genstore bucket (oma.genstore.bucket over oma.core.ratelimit): the capacity from the
`X-Genstore-Shop-Api-Rate-Limit` header at once, the refill from how `used` falls between answers, the figures shared
through Redis, a pinned store left alone, a capacity drop obeyed at once.

Exact scenarios run on the fake clock against `FakeGenstore` (Genstore's bucket as the sandbox keeps it, on the same
clock), for both bucket implementations; the convergence and the sharing run against the real sandbox over HTTP.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid

import pytest

from oma.core.ratelimit import DrainWindow, LocalTokenBucket, RateLimiterTimeout, refill_update
from oma.genstore.bucket import GENSTORE_BUCKET
from oma.genstore.client import BUCKET_KEY_PREFIX, GenstoreClient
from oma.sandbox.server import GenstoreSandbox
from oma.stores.models import Store
from oma.stores.services import genstore_bucket, genstore_client_for, genstore_limiter, genstore_limiter_key
from tests.core.fakes import FakeClock, LimiterRedis
from tests.genstore_sandbox import SANDBOX_SECRET, SANDBOX_TOKEN, start_sandbox

KEY = "genstore:learn.genmystore.com"


class FakeGenstore:
    """Genstore's per-shop bucket (oma.sandbox.shop.TokenBucket) on the test's fake clock."""

    def __init__(self, clock: FakeClock, capacity: int, refill: float) -> None:
        self.clock, self.capacity, self.refill = clock, capacity, refill
        self.tokens, self.stamp = float(capacity), clock.now()
        self.accepted = self.rejected = 0

    def answer(self) -> tuple[int, bool]:
        """One request: (`used` as the header says it, whether it was accepted)."""
        now = self.clock.now()
        self.tokens = min(float(self.capacity), self.tokens + (now - self.stamp) * self.refill)
        self.stamp = now
        accepted = self.tokens >= 1
        if accepted:
            self.tokens -= 1
            self.accepted += 1
        else:
            self.rejected += 1
        return self.capacity - int(self.tokens), accepted


def request(bucket, genstore: FakeGenstore) -> bool:
    """What GenstoreClient does for one request of a store whose bucket is learned."""
    bucket.acquire(KEY, capacity=GENSTORE_BUCKET.start_capacity, refill_per_second=GENSTORE_BUCKET.start_refill,
                   learned=True)
    used, accepted = genstore.answer()
    bucket.observe(KEY, used=used, capacity=genstore.capacity, consumed=accepted, learning=GENSTORE_BUCKET)
    if not accepted:
        bucket.penalize(KEY, seconds=1.0)
    return accepted


def tokens_at_once(bucket, *, capacity: int = 40, refill: float = 2.0, learned: bool = True) -> int:
    """How many tokens the bucket hands out right now without waiting (and takes them)."""
    taken = 0
    while True:
        try:
            bucket.acquire(KEY, capacity=capacity, refill_per_second=refill, timeout=0, learned=learned)
        except RateLimiterTimeout:
            return taken
        taken += 1


@pytest.fixture(params=["local", "redis"])
def make_bucket(request, fake_clock):
    """Buckets on the fake clock; for Redis, each call is another process's bucket over the same Redis keys."""
    if request.param == "local":
        shared = LocalTokenBucket(clock=fake_clock.now, sleep=fake_clock.sleep)
        return lambda: shared
    limiter_redis: LimiterRedis = request.getfixturevalue("limiter_redis")
    return lambda: limiter_redis.bucket(clock=fake_clock.now, sleep=fake_clock.sleep)


# --- the refill measurement ---------------------------------------------------------------------------------------


def test_a_window_in_which_the_bucket_never_was_full_measures_the_refill():
    # 100 used, 60 requests, 120 used 2 s later: 40 tokens came back, 20 a second (far from 2: it replaces it).
    window = DrainWindow(seconds=2.0, used_start=100, used_end=120, answered=60, min_used=100, capacity=200,
                         refill=2.0)
    assert refill_update(window, GENSTORE_BUCKET) == 20.0


def test_a_close_measurement_moves_the_belief_halfway_and_snaps_to_a_documented_plan():
    near_plan = DrainWindow(seconds=1.0, used_start=50, used_end=50, answered=37, min_used=40, capacity=400,
                            refill=40.0)
    assert refill_update(near_plan, GENSTORE_BUCKET) == 40.0  # 38.5 is within 10% of the 400 plan's 40
    off_plan = DrainWindow(seconds=1.0, used_start=500, used_end=500, answered=33, min_used=400, capacity=1000,
                           refill=27.0)
    assert refill_update(off_plan, GENSTORE_BUCKET) == 30.0  # no plan near: halfway from 27 to 33


def test_a_window_that_saw_the_bucket_full_measures_nothing():
    # used 1: that request found the bucket full, so the refill was capped meanwhile and the count proves nothing.
    window = DrainWindow(seconds=3.0, used_start=1, used_end=1, answered=6, min_used=1, capacity=40, refill=2.0)
    assert refill_update(window, GENSTORE_BUCKET) == 2.0


# --- the bucket: both implementations, exact on the fake clock ----------------------------------------------------


def test_the_capacity_comes_from_the_first_answer_and_the_room_it_reports_is_used(make_bucket, fake_clock):
    bucket = make_bucket()
    genstore = FakeGenstore(fake_clock, 400, 40.0)
    assert bucket.learned(KEY) is None
    assert request(bucket, genstore)
    assert bucket.learned(KEY) == (400, 2.0)  # the refill is the contract's until measured
    # Genstore says 399 left: ours is raised to that less the headroom (5% of 400): not stuck at the start's 40.
    assert tokens_at_once(bucket) == 399 - 20


def test_the_refill_is_learned_from_the_answers_and_the_bucket_is_used_at_its_pace(make_bucket, fake_clock):
    bucket = make_bucket()
    genstore = FakeGenstore(fake_clock, 200, 20.0)
    started = fake_clock.now()
    for _ in range(300):
        assert request(bucket, genstore)
    assert bucket.learned(KEY) == (200, 20.0)
    middle = fake_clock.now()
    for _ in range(400):
        assert request(bucket, genstore)
    # 400 requests at 20/s from a bucket kept near empty: 20 s, give or take the headroom (10) left unspent; and
    # never a token Genstore did not have.
    assert (400 - 10) / 20.0 <= fake_clock.now() - middle <= 400 / 20.0 + 1.0
    assert genstore.rejected == 0
    assert middle - started < 300 / 20.0  # the first 300: the full bucket, then its refill


def test_a_capacity_drop_is_obeyed_at_once(make_bucket, fake_clock):
    bucket = make_bucket()
    genstore = FakeGenstore(fake_clock, 400, 40.0)
    for _ in range(600):
        request(bucket, genstore)
    assert bucket.learned(KEY) == (400, 40.0)
    # The store moves to the 40 at 2/s plan: its next answer says 40.
    genstore = FakeGenstore(fake_clock, 40, 2.0)
    assert request(bucket, genstore)
    assert bucket.learned(KEY) == (40, 2.0)  # the slowest documented plan of that capacity until measured
    assert tokens_at_once(bucket) <= 39  # never more than the 39 Genstore says are left
    genstore.tokens = 0.0  # what we just took
    for _ in range(40):
        request(bucket, genstore)
    assert genstore.rejected == 0
    assert bucket.learned(KEY) == (40, 2.0)


def test_a_new_capacity_or_refill_keeps_the_tokens_a_key_holds(make_bucket, fake_clock):
    bucket = make_bucket()
    for _ in range(10):
        bucket.acquire(KEY, capacity=40, refill_per_second=2.0)
    # 30 left; the key's figures change (a pinned store edited): the 30 stay, neither reset to 400 nor lost.
    bucket.acquire(KEY, capacity=400, refill_per_second=40.0)
    assert tokens_at_once(bucket, capacity=400, refill=40.0, learned=False) == 29


def test_a_pinned_key_learns_nothing(make_bucket, fake_clock):
    bucket = make_bucket()
    genstore = FakeGenstore(fake_clock, 200, 20.0)
    for _ in range(100):
        bucket.acquire(KEY, capacity=40, refill_per_second=2.0)
        used, _ = genstore.answer()
        bucket.observe(KEY, used=used, capacity=200)  # what a pinned client reports: no learning
    assert bucket.learned(KEY) is None
    assert fake_clock.now() >= 1000.0 + (100 - 40) / 2.0  # paced by its own 40 at 2/s, not Genstore's 200 at 20/s


# --- the real sandbox ---------------------------------------------------------------------------------------------


def _hammer(sandbox: GenstoreSandbox, handle: str, bucket, *, threads: int, until) -> int:
    """`threads` clients of one learning store send GET /shops/info until `until()`; the answers they got."""
    answers = [0] * threads

    def work(index: int) -> None:
        with GenstoreClient(base_url=sandbox.base_url_for(handle), api_version="202412", access_token=SANDBOX_TOKEN,
                            limiter=bucket, limiter_key=KEY) as client:
            assert not client.bucket_pinned
            while not until():
                client.shop_info()
                answers[index] += 1

    pool = [threading.Thread(target=work, args=(index,)) for index in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(30)
    return sum(answers)


@pytest.mark.redis
def test_learning_converges_on_the_sandboxs_200_at_20_and_a_second_process_reads_it(limiter_redis):
    bucket = limiter_redis.bucket()
    handle = f"learn{uuid.uuid4().hex[:6]}"
    with GenstoreSandbox(orders=1, seed=1, shops=(handle,), rate_limit=(200, 20.0), access_token=SANDBOX_TOKEN,
                         client_secret=SANDBOX_SECRET) as sandbox:
        deadline = time.monotonic() + 30  # a safety valve only: how fast it learns is bench/push.py's figure
        answers = _hammer(sandbox, handle, bucket, threads=6,
                          until=lambda: bucket.learned(KEY) == (200, 20.0) or time.monotonic() > deadline)
        assert bucket.learned(KEY) == (200, 20.0), bucket.learned(KEY)
        # Counted in answers, not seconds, so a loaded machine cannot fail it: the first 200 spend the full bucket and
        # a window of ~30 regained tokens measures the refill. Learning within the first 10 s of the store's own
        # refill (200 more) is the bound bench/push.py's "after the first 10 s" relies on.
        assert answers <= 200 + 20 * 10, answers
        assert sandbox.stats(handle)["rate_limited"] == 0

    # Another process (a Celery worker elsewhere) reads the same figures from Redis, and paces by them.
    code = (
        "import json, sys, redis\n"
        "from oma.core.ratelimit import RedisTokenBucket\n"
        "bucket = RedisTokenBucket(redis.Redis.from_url(sys.argv[1]), key_prefix=sys.argv[2])\n"
        "print(json.dumps(bucket.learned(sys.argv[3])))\n"
    )
    other = subprocess.run([sys.executable, "-c", code, limiter_redis.url, limiter_redis.key_prefix, KEY],
                           capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(other.stdout) == [200, 20.0]


@pytest.mark.django_db
@pytest.mark.redis
def test_a_pinned_store_is_paced_by_its_own_figures_and_nothing_is_learned(redis_client):
    handle = f"pin{uuid.uuid4().hex[:6]}"
    sandbox = start_sandbox(orders=1, shops=(handle,), rate_limit=(200, 20.0))
    try:
        pinned = Store.objects.create(
            domain=sandbox.domain_for(handle), api_base_url=sandbox.base_url_for(handle), access_token=SANDBOX_TOKEN,
            client_secret=SANDBOX_SECRET, rate_limit_capacity=5, rate_limit_refill_per_second=50.0,
        )
        redis_client.delete(BUCKET_KEY_PREFIX + genstore_limiter_key(pinned))
        with genstore_client_for(pinned) as client:
            assert client.bucket_pinned and client.bucket_figures() == (5, 50.0)
            for _ in range(30):
                client.shop_info()
        assert genstore_limiter().learned(genstore_limiter_key(pinned)) is None
        bucket = genstore_bucket(pinned)
        assert (bucket.capacity, bucket.refill_per_second, bucket.source) == (5, 50.0, "pinned")
        pinned.refresh_from_db()
        assert (pinned.rate_limit_capacity, pinned.rate_limit_refill_per_second) == (5, 50.0)

        learning = Store.objects.create(domain=f"learn-{handle}.genmystore.com", access_token="t", client_secret="s")
        assert not learning.rate_limit_pinned and learning.rate_limit_label == "learned"
        assert genstore_bucket(learning).source == "starting"
    finally:
        sandbox.stop()


def test_a_client_pins_both_figures_or_neither():
    with pytest.raises(ValueError, match="both"):
        GenstoreClient(base_url="http://127.0.0.1:9", api_version="202412", access_token="t",
                       limiter=LocalTokenBucket(), limiter_key=KEY, bucket_capacity=40)
