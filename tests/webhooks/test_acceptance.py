"""Acceptance, end to end: signed deliveries over real HTTP to gunicorn, a real Celery worker, a real Redis broker.

The module's tests share one stack (`shared_stack`): a redis-server of its own (the shared 6379 is never touched), a
gunicorn and a worker that share the test database; data is committed (transactional_db) so those processes see it.
Starting it costs more CPU than three of the four tests (every gunicorn and worker process imports Django), so it is
started once per module, and `xdist_group` asks xdist to run the module in one worker (tests/conftest.py puts the
group into the node ids, where pytest 9.2 lets loadgroup see it: pytest-xdist#1386).
Nothing leaks from one test to the next: the database is emptied after each test (transactional_db), each test has
shop domains of its own (gunicorn keeps a store, by domain, for OMA_WEBHOOK_STORE_CACHE_SECONDS, and a test's stores
are new rows), and a Redis left stopped by a failed outage test is started again for the next one.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from oma.orders.models import Order
from oma.stores.models import Store
from oma.stores.services import store_connect
from tests.fixtures_celery import ROOT, CeleryWorker, GunicornServer, RedisServer, subprocess_env, wait_until
from tests.webhooks.payloads import BASE_TIME, OTHER_SECRET, SECRET, encode, nested_json, order_json, sign
from tests.webhooks.sender import Delivery, Progress, post_all, signed_delivery
from webhooks.models import WebhookDelivery

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.xdist_group("webhooks_acceptance")]

SETTINGS = "tests.webhooks.server_settings"
State = WebhookDelivery.State


@dataclass
class Stack:
    web: GunicornServer
    worker: CeleryWorker
    redis: RedisServer
    env: dict[str, str]

    @property
    def url(self) -> str:
        return f"{self.web.base_url}/webhooks/genstore/"


@pytest.fixture(scope="module")
def shared_stack(django_db_setup, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Redis, gunicorn and a worker for the whole module, stopped before the test database is dropped."""
    directory: Path = tmp_path_factory.mktemp("webhooks-acceptance")
    with ExitStack() as started:
        redis = RedisServer(directory=directory)
        redis.start()
        started.callback(redis.stop)
        # A short outbox deadline stands in for minutes of waiting (the outage test): messages Redis held when it
        # died are lost with it. Only the outbox reads it, and only the outage test runs the outbox.
        env = subprocess_env(broker_url=redis.url(), settings_module=SETTINGS,
                             extra={"LOG_LEVEL": "WARNING", "OMA_WEBHOOK_REDISPATCH_SECONDS": "5"})
        web = GunicornServer(env=env, log_path=directory / "gunicorn.log", workers=2, threads=8)
        started.callback(web.stop)
        web.start()
        worker = CeleryWorker(env=env, log_path=directory / "celery-worker.log", concurrency=3)
        # Warm shutdown for a few seconds at most: the tests are over, whatever is still running proves nothing.
        started.callback(worker.stop, grace=5)
        worker.start()
        yield Stack(web=web, worker=worker, redis=redis, env=env)


@pytest.fixture
def stack(transactional_db, shared_stack: Stack) -> Stack:
    if not shared_stack.redis.running:  # an outage test that failed before it restarted Redis
        shared_stack.redis.start()
    for name, process in (("gunicorn", shared_stack.web.process), ("worker", shared_stack.worker.process)):
        assert process is not None and process.poll() is None, f"the shared {name} is gone"
    return shared_stack


def _store(domain: str, secret: str = SECRET) -> Store:
    # The API base is a closed port: these deliveries carry everything, so nothing may call the API.
    return Store.objects.create(domain=domain, access_token="token", client_secret=secret,
                                api_base_url="http://127.0.0.1:9")


def _wait_for_processing(stack: Stack, expected: int, *, timeout: float) -> None:
    def finished() -> bool:
        if stack.worker.process is None or stack.worker.process.poll() is not None:
            raise AssertionError(f"the worker died:\n{stack.worker.log_tail()}")
        return WebhookDelivery.objects.filter(state__in=[State.PROCESSED, State.FAILED]).count() >= expected

    try:
        wait_until(finished, timeout=timeout, interval=0.5, what=f"{expected} deliveries processed")
    except TimeoutError:
        states = Counter(WebhookDelivery.objects.values_list("state", flat=True))
        raise AssertionError(f"not all processed: {dict(states)}\n{stack.worker.log_tail()}") from None


def _order_deliveries(order_ids: list[str], versions: int, *, shop: str, with_ids: bool = True) -> list[Delivery]:
    deliveries = []
    for index, order_id in enumerate(order_ids):
        for version in range(1, versions + 1):
            # Half the orders come without X-Genstore-Webhook-Id: deduplicated on topic + SHA-256 of the body.
            webhook_id = f"wh-{order_id}-{version}" if with_ids and index % 2 == 0 else None
            body = encode(order_json(order_id, version=version))
            deliveries.append(signed_delivery(body, topic="orders/update", shop=shop, secret=SECRET,
                                              webhook_id=webhook_id))
    return deliveries


def _assert_orders_at_version(store: Store, order_ids: list[str], version: int) -> None:
    orders = {order.order_id: order for order in Order.objects.filter(store=store).prefetch_related("line_items")}
    assert set(orders) == set(order_ids)
    wrong = [
        order_id for order_id, order in orders.items()
        if order.genstore_updated_at != BASE_TIME + timedelta(minutes=version)
        or order.raw.get("note") != f"version {version}"
        or str(order.total_price) != f"{10 + version}.00"
        or sorted(line.line_item_id for line in order.line_items.all()) != [f"{order_id}-1", f"{order_id}-2"]
    ]
    assert wrong == [], f"{len(wrong)} orders not at version {version}, e.g. {wrong[:5]}"


def _assert_each_processed_exactly_once(expected: int) -> None:
    assert WebhookDelivery.objects.count() == expected
    assert dict(Counter(WebhookDelivery.objects.values_list("state", flat=True))) == {State.PROCESSED: expected}
    # `attempts` counts claims: one claim each means no delivery was processed twice.
    assert dict(Counter(WebhookDelivery.objects.values_list("attempts", flat=True))) == {1: expected}


# 400 orders, 5 versions each, plus 20% duplicates: 2,500 POSTs (the acceptance sent 12,500, 2,000 orders).
# The scenario is the same at this size: 16 concurrent senders still interleave each order's versions and copies,
# the intake still writes them in shared commits, versions still arrive out of order (created, updated, stale and
# unchanged outcomes all occur), and the worker still processes them concurrently; only the volume is smaller.
ORDERS = 400
VERSIONS = 5
DUPLICATES = ORDERS * VERSIONS // 4


def test_shuffled_deliveries_with_duplicates_leave_every_order_at_its_newest_version(stack):
    shop = "shuffled.genmystore.com"
    store = _store(shop)
    rng = random.Random(20261127)
    order_ids = [str(100_000 + n) for n in range(ORDERS)]
    unique = _order_deliveries(order_ids, versions=VERSIONS, shop=shop)
    duplicates = [rng.choice(unique) for _ in range(DUPLICATES)]  # 20% of what is sent
    deliveries = unique + duplicates
    rng.shuffle(deliveries)

    report = post_all(stack.url, deliveries, concurrency=16)
    assert report.errors == []
    assert Counter(report.statuses) == {200: len(deliveries)}
    answers = Counter(json.loads(body)["status"] for body in report.bodies)
    assert answers == {"accepted": len(unique), "duplicate": DUPLICATES}

    started = time.monotonic()
    _wait_for_processing(stack, len(unique), timeout=240)
    print(f"\n{len(deliveries):,} POSTs in {report.seconds:.1f} s ({len(deliveries) / report.seconds:.0f}/s); "
          f"processing finished {time.monotonic() - started:.1f} s after the last answer")
    _assert_each_processed_exactly_once(len(unique))
    _assert_orders_at_version(store, order_ids, VERSIONS)
    outcomes = Counter(o.rsplit(" ", 1)[-1] for o in WebhookDelivery.objects.values_list("outcome", flat=True))
    assert outcomes["created"] == ORDERS  # one creation per order, whichever version came first
    assert outcomes["created"] + outcomes["updated"] + outcomes["stale"] + outcomes["unchanged"] == len(unique)
    assert outcomes["updated"] and outcomes["stale"]  # versions arrived both in and out of order


def test_unauthentic_and_malformed_deliveries_are_refused_over_http(stack):
    shop = "refused.genmystore.com"
    _store(shop)
    _store("refused-other.genmystore.com", OTHER_SECRET)
    body = encode(order_json("5001"))
    refused = {
        "forged signature": Delivery(body, {"X-Genstore-Topic": "orders/update", "X-Genstore-Shop-Domain": shop,
                                            "X-Genstore-Hmac-Sha256": sign(body + b" ", SECRET)}),
        "another store's secret": signed_delivery(body, topic="orders/update", shop=shop, secret=OTHER_SECRET),
        "missing signature": Delivery(body, {"X-Genstore-Topic": "orders/update", "X-Genstore-Shop-Domain": shop}),
        "unknown shop": signed_delivery(body, topic="orders/update", shop="nobody.genmystore.com", secret=SECRET),
        "malformed JSON": signed_delivery(b'{"order": {"orderId": "5001"', topic="orders/update", shop=shop,
                                          secret=SECRET),
        "2 MiB body": signed_delivery(b'{"order": {"orderId": "5001", "pad": "' + b"x" * (2 << 20) + b'"}}',
                                      topic="orders/update", shop=shop, secret=SECRET),
        "nested 10,000 deep": signed_delivery(nested_json(10_000), topic="orders/update", shop=shop, secret=SECRET),
    }
    expected = {"forged signature": 401, "another store's secret": 401, "missing signature": 401,
                "unknown shop": 401, "malformed JSON": 400, "2 MiB body": 413, "nested 10,000 deep": 400}
    report = post_all(stack.url, list(refused.values()), concurrency=1)
    assert report.errors == []
    assert dict(zip(refused, report.statuses, strict=True)) == expected
    assert WebhookDelivery.objects.count() == 0

    # A genuine delivery afterwards is processed: the worker was there all along, and processed nothing else.
    good = signed_delivery(encode(order_json("5002")), topic="orders/update", shop=shop, secret=SECRET)
    assert post_all(stack.url, [good]).statuses == [200]
    _wait_for_processing(stack, 1, timeout=60)
    assert list(Order.objects.values_list("order_id", flat=True)) == ["5002"]
    assert WebhookDelivery.objects.get().state == State.PROCESSED


def test_deliveries_signed_with_the_previous_secret_are_accepted_during_a_rotation(stack):
    shop = "rotation.genmystore.com"
    store_connect(domain=shop, access_token="token", client_secret="secret-before-rotation",
                  api_base_url="http://127.0.0.1:9", verify=False)
    # The app's secret is rotated: Genstore may sign with either for a while.
    store_connect(domain=shop, access_token="token", client_secret="secret-after-rotation", verify=False)
    old = signed_delivery(encode(order_json("7001")), topic="orders/update", shop=shop,
                          secret="secret-before-rotation")
    new = signed_delivery(encode(order_json("7002")), topic="orders/update", shop=shop,
                          secret="secret-after-rotation", hex_form=True)
    stranger = signed_delivery(encode(order_json("7003")), topic="orders/update", shop=shop, secret="some-other")
    assert post_all(stack.url, [old, new, stranger], concurrency=1).statuses == [200, 200, 401]
    _wait_for_processing(stack, 2, timeout=60)
    assert sorted(Order.objects.values_list("order_id", flat=True)) == ["7001", "7002"]


def _run_outbox(env: dict[str, str]) -> str:
    """One outbox run in its own process, as beat's every-minute task would do it."""
    result = subprocess.run([sys.executable, "manage.py", "dispatch_webhooks"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_redis_stopped_during_a_burst_loses_nothing_and_processes_nothing_twice(stack):
    shop = "outage.genmystore.com"
    store = _store(shop)
    rng = random.Random(7)
    order_ids = [str(200_000 + n) for n in range(200)]
    deliveries = _order_deliveries(order_ids, versions=5, shop=shop)  # 1,000 distinct deliveries
    rng.shuffle(deliveries)

    progress = Progress()
    outcome: dict[str, object] = {}
    sender = threading.Thread(
        target=lambda: outcome.update(report=post_all(stack.url, deliveries, concurrency=16, progress=progress))
    )
    sender.start()
    wait_until(lambda: progress.done >= 150, timeout=60, what="the burst to start")
    stack.redis.stop()
    stopped_at = progress.done
    sender.join(timeout=180)
    report = outcome["report"]
    assert report.errors == []
    assert Counter(report.statuses) == {200: 1000}
    assert stopped_at < 1000, "Redis must go down during the burst"
    assert WebhookDelivery.objects.count() == 1000  # every answer was backed by a stored row
    unfinished_during_outage = WebhookDelivery.objects.exclude(state=State.PROCESSED).count()
    assert unfinished_during_outage > 0

    stack.redis.start()  # same port, empty: whatever it held is gone
    deadline = time.monotonic() + 150
    while WebhookDelivery.objects.exclude(state=State.PROCESSED).exists():
        assert time.monotonic() < deadline, (
            f"{WebhookDelivery.objects.exclude(state=State.PROCESSED).count()} unprocessed\n"
            f"{stack.worker.log_tail()}"
        )
        _run_outbox(stack.env)
        time.sleep(2)

    print(f"\nRedis stopped after {stopped_at} answers; {unfinished_during_outage} deliveries waited for it; "
          f"outbox dispatched {WebhookDelivery.objects.filter(dispatch_count__gt=0).count()}")
    assert WebhookDelivery.objects.filter(dispatch_count__gt=0).exists()  # the outbox did the catching up
    _assert_each_processed_exactly_once(1000)
    _assert_orders_at_version(store, order_ids, 5)
