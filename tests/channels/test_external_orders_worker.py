"""External orders created by a real Celery worker, with Genstore answering 502 to creates it applied, and the worker
SIGKILLed in the middle of the drain: the next worker (beat's minute ticked by the test) finishes, and Genstore holds
exactly one order per external order."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db.models import Count

from oma.channels.models import ExternalOrder
from oma.channels.order_intake import external_orders_receive
from oma.channels.services import channel_create
from oma.channels.tasks import enqueue_external_order_drains
from tests.admin.factories import ExternalOrderInputFactory
from tests.faults.processes import celery_app_publishing_to, sigkill_tree
from tests.fixtures_celery import (  # noqa: F401 (fixtures)
    RedisServer,
    celery_worker_factory,
    private_redis,
    subprocess_env,
    wait_until,
)
from tests.genstore_sandbox import connect, start_sandbox

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

State = ExternalOrder.State
ORDERS = 50


@pytest.fixture
def broker(private_redis: RedisServer) -> Iterator[str]:  # noqa: F811
    with celery_app_publishing_to(private_redis.url()):
        yield private_redis.url()


def test_a_worker_killed_mid_drain_leaves_exactly_one_genstore_order_per_external_order(
    transactional_db, broker, private_redis, celery_worker_factory  # noqa: F811
):
    env = subprocess_env(broker_url=broker, extra={"REDIS_URL": private_redis.url(1), "LOG_LEVEL": "WARNING"})
    sandbox = start_sandbox(orders=3, seed=17, rate_limit=None)
    try:
        store = connect(sandbox, rate_limit=(1000, 1000.0))
        channel = channel_create(store=store, kind="csv", name="Amazon", source_names=["amazon"])
        # A tenth of the creates are applied but answered 502, and every answer is slow: work stays in flight.
        sandbox.set_faults(write_error_rate=0.1, slow_rate=1.0, slow_seconds=0.1)
        worker = celery_worker_factory(env=env, concurrency=2)
        orders = [ExternalOrderInputFactory() for _ in range(ORDERS)]
        receipt = external_orders_receive(channel=channel, orders=orders)  # no transaction: the drain is queued now
        assert receipt.new == ORDERS

        def created() -> int:
            return ExternalOrder.objects.filter(state=State.CREATED).count()

        wait_until(lambda: created() >= 8, timeout=90, interval=0.05, what="the drain under way")
        sigkill_tree(worker.process)
        worker.process = None
        done_at_kill = created()
        assert done_at_kill < ORDERS, "the kill must land while creates are still owed"

        worker = celery_worker_factory(env=env, concurrency=2)

        def settled() -> bool:
            if worker.process is None or worker.process.poll() is not None:
                raise AssertionError(f"the worker died:\n{worker.log_tail()}")
            if created() == ORDERS:
                return True
            enqueue_external_order_drains.delay()  # beat's minute, every two seconds
            return False

        try:
            wait_until(settled, timeout=120, interval=2, what="every external order created")
        except TimeoutError:
            states = dict(ExternalOrder.objects.values_list("state").annotate(n=Count("pk")))
            raise AssertionError(f"not settled: {states}\n{worker.log_tail()}") from None

        genstore = {}
        for order in sandbox.orders_by_source("shop1", source_name="amazon"):
            genstore.setdefault(order["sourceIdentifier"], []).append(order["orderId"])
        rows = {row.external_order_id: row for row in ExternalOrder.objects.all()}
        assert {identifier: len(ids) for identifier, ids in genstore.items()} == dict.fromkeys(rows, 1)
        assert all(genstore[identifier] == [row.genstore_order_id] for identifier, row in rows.items())
        stats = sandbox.stats("shop1")
        assert stats["orders_created"] == ORDERS and stats["write_faults_injected"] > 0
        print(f"\nSIGKILL with {done_at_kill}/{ORDERS} created; {stats['write_faults_injected']} creates applied but "
              f"answered 502; {ORDERS} Genstore orders, no duplicate")
    finally:
        sandbox.stop()
