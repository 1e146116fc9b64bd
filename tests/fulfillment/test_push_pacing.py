"""Pushes do not flood the queue: an import that owes N pushes queues one drain for its store
(`fulfillment.push_due`), not N tasks; the drain works through them at the bucket's pace and queues itself again
while work remains; the beat adds at most one drain per store. Real broker (a private Redis), real worker,
the Genstore sandbox over HTTP."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis
from celery.signals import before_task_publish
from django.db.models import Exists, OuterRef
from django.utils import timezone

from oma.channels.csv_import import tracking_csv_import
from oma.fulfillment.models import FulfillmentPush
from oma.fulfillment.services.push import store_pushes_drain
from oma.fulfillment.tasks import drains_enqueue, push_pending
from oma.orders.models import LineItem, Order, SyncRun
from oma.orders.services import orders_sweep
from oma.stores.models import Store
from tests.channels.test_csv_import import row, to_csv
from tests.faults.processes import celery_app_publishing_to
from tests.fixtures_celery import (  # noqa: F401 (fixtures)
    RedisServer,
    celery_worker_factory,
    private_redis,
    subprocess_env,
    wait_until,
)
from tests.genstore_sandbox import connect, start_sandbox
from tracking.models import Shipment

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

State = FulfillmentPush.State
SHIPMENTS = 600


@pytest.fixture
def published() -> Iterator[Counter[str]]:
    """Task names this process publishes, counted as they go to the broker (Celery's own publish signal)."""
    counts: Counter[str] = Counter()

    def count(sender: str | None = None, **kwargs: object) -> None:
        counts[str(sender)] += 1

    before_task_publish.connect(count, weak=False)
    yield counts
    before_task_publish.disconnect(count)


def broker_messages(server: RedisServer) -> int:
    """Messages waiting in every queue of the broker (kombu keeps each queue as a Redis list)."""
    client = redis.Redis.from_url(server.url())
    try:
        return sum(client.llen(key) for key in client.keys("*") if client.type(key) == b"list")
    finally:
        client.close()


CSV = Shipment.Source.CSV  # the import's shipments (the sandbox's own fulfillments are tracked too, as `genstore`)


@pytest.mark.slow
def test_a_600_shipment_import_queues_one_drain_and_every_push_lands(
    transactional_db, private_redis, celery_worker_factory, published  # noqa: F811
):
    genstore = start_sandbox(orders=1, seed=5, rate_limit=(40, 2.0))
    try:
        genstore.add_orders("shop1", SHIPMENTS + SHIPMENTS // 5)  # open orders; a few ship nothing: spares
        store = connect(genstore, rate_limit=(40, 2.0))
        assert orders_sweep(store=store, kind=SyncRun.Kind.FULL).state == SyncRun.State.SUCCEEDED
        ships = LineItem.objects.filter(order=OuterRef("pk")).exclude(requires_shipping=False)
        order_ids = list(Order.objects.filter(store=store, cancelled_at__isnull=True).filter(Exists(ships))
                         .order_by("pk").values_list("order_id", flat=True)[:SHIPMENTS])
        assert len(order_ids) == SHIPMENTS

        # --- the import, on a store of 40 at 2/s, no worker running: what does it queue? -------------------
        rows = [row(order_id, f"1Z999AA1{int(order_id) % 10**10:010d}") for order_id in order_ids]
        with celery_app_publishing_to(private_redis.url()):
            report = tracking_csv_import(store=store, data=to_csv(rows), file_name="big.csv")
            assert report.file_error == "" and report.count("rejected") == 0, report.summary()
            assert Shipment.objects.filter(store=store, order__isnull=False, source=CSV).count() == SHIPMENTS
            assert FulfillmentPush.objects.filter(store=store, state=State.PENDING).count() == SHIPMENTS
            after_import = dict(published)
            # The beat's next tick finds the same pushes owed (and queued a moment ago: left to their drain).
            push_pending.apply(kwargs={"requeue_after_seconds": 0})
        assert after_import.get("fulfillment.push_shipment", 0) == 0
        assert 1 <= after_import.get("fulfillment.push_due", 0) <= 2, after_import
        assert published["fulfillment.push_due"] <= 3, published
        assert broker_messages(private_redis) <= 3

        # --- a worker drains them: with a short bucket (the test's time), every push lands once ---------------
        genstore.set_rate_limit(1_000_000, 1_000_000.0)
        Store.objects.filter(pk=store.pk).update(rate_limit_capacity=1000, rate_limit_refill_per_second=1000.0,
                                                 updated_at=timezone.now())
        env = subprocess_env(broker_url=private_redis.url(), extra={"REDIS_URL": private_redis.url(1),
                                                                    "LOG_LEVEL": "INFO"})
        worker = celery_worker_factory(env=env, concurrency=2)
        succeeded = FulfillmentPush.objects.filter(store=store, state=State.SUCCEEDED, shipment__source=CSV)
        wait_until(lambda: succeeded.count() == SHIPMENTS, timeout=180, interval=0.5,
                   what=f"{SHIPMENTS} pushes\n{worker.log_tail()}")
        assert genstore.stats("shop1")["fulfillments_created"] == SHIPMENTS
        drains = worker.log_path.read_text().count("Task fulfillment.push_due[")
        assert 1 <= drains <= 10, drains  # a handful of drains (a minute's budget each, busy ones), not 600 tasks
    finally:
        genstore.stop()


@pytest.mark.django_db(transaction=True)
def test_one_drain_per_store_at_a_time_and_a_queued_drain_is_not_queued_twice(published):
    genstore = start_sandbox(orders=1, seed=6, rate_limit=None)
    try:
        genstore.add_orders("shop1", 3)
        store = connect(genstore, rate_limit=(1000, 1000.0))
        assert orders_sweep(store=store, kind=SyncRun.Kind.FULL).state == SyncRun.State.SUCCEEDED

        # Another drain holds the store: this one does nothing.
        Store.objects.filter(pk=store.pk).update(push_drain_token="other",
                                                 push_drain_until=timezone.now() + timedelta(seconds=30))
        assert store_pushes_drain(store=store).busy

        # A drain queued and not finished: the next import's enqueue adds none; a stale stamp (a lost message) does.
        with celery_app_publishing_to("memory://"):
            drains_enqueue(store_ids=[store.pk, store.pk])
            drains_enqueue(store_ids=[store.pk])
            assert published["fulfillment.push_due"] == 1
            Store.objects.filter(pk=store.pk).update(push_drain_queued_at=timezone.now() - timedelta(minutes=5))
            drains_enqueue(store_ids=[store.pk])
            assert published["fulfillment.push_due"] == 2
            drains_enqueue(store_ids=[store.pk], even_if_queued=True)  # the beat
            assert published["fulfillment.push_due"] == 3
    finally:
        genstore.stop()
