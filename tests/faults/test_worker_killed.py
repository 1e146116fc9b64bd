"""The worker SIGKILLed in the middle of fulfillment pushes and carrier polls.

Genstore and carrier sandboxes over HTTP (slowed down, so that work is in flight), a real Celery worker on a
private broker. Shipments are added for 20 orders: their pushes start at once, and a poll of the carriers runs.
When some pushes are done but not all, the worker and its pool processes are killed with SIGKILL (nothing gets to
finish, acknowledge or release), then a new worker starts and the test ticks like beat (`fulfillment.push_pending`
and `tracking.poll_due`, as every minute).

Checked: Genstore holds exactly one fulfillment per shipment (none lost, none created twice), with the shipment
status of the carrier's final answer; every shipment was polled to its final status once more after the kill,
with no event stored twice and no claim left behind.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from django.db import transaction
from django.db.models import Count

from oma.fulfillment.models import FulfillmentPush
from oma.fulfillment.pushed_status import shipment_status_for
from oma.fulfillment.tasks import push_pending
from oma.orders.models import Order, SyncRun
from oma.orders.services import orders_sweep
from tests.faults.processes import sigkill_tree
from tests.fixtures_celery import wait_until
from tests.genstore_sandbox import connect, start_sandbox
from tests.tracking.conftest import ALL_DONE, EPOCH, FAST_LIMITS, add_sandbox_account
from tracking.models import Shipment, TrackingEvent
from tracking.polling import forget_transports
from tracking.sandbox import CarrierSandbox, numbers_for
from tracking.services import shipment_add
from tracking.tasks import poll_due

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.redis]

State = FulfillmentPush.State
CARRIERS = ("ups", "usps")
CSV = Shipment.Source.CSV  # this test's shipments (the sandbox's own fulfillments are tracked too, as `genstore`)


@pytest.fixture
def carriers() -> Iterator[CarrierSandbox]:
    sandbox = CarrierSandbox(port=0, epoch=EPOCH, rate_limits=FAST_LIMITS).start()
    sandbox.set_clock(ALL_DONE)  # every journey has ended: each number has one final status
    yield sandbox
    sandbox.stop()
    forget_transports()


def open_orders(store, count: int) -> list[Order]:
    chosen = []
    for order in Order.objects.filter(store=store, cancelled_at__isnull=True, financial_status="paid").order_by("pk"):
        lines = list(order.line_items.all())
        if lines and all(line.fulfillable_quantity == line.quantity > 0 and line.requires_shipping is not False
                         for line in lines):
            chosen.append(order)
        if len(chosen) == count:
            break
    return chosen


def test_worker_killed_during_pushes_and_polls_loses_nothing_and_pushes_nothing_twice(
    transactional_db, broker, counters_in, app_env, celery_worker_factory, carriers
):
    genstore = start_sandbox(orders=200, seed=3, rate_limit=None)
    try:
        store = connect(genstore, rate_limit=(1000, 1000.0))
        assert orders_sweep(store=store, kind=SyncRun.Kind.FULL).state == SyncRun.State.SUCCEEDED
        for carrier in CARRIERS:
            add_sandbox_account(carriers, carrier)
        genstore.set_faults(slow_rate=1.0, slow_seconds=0.25)  # every Genstore answer takes a quarter second
        carriers.set_latency("ups", 0.5)

        worker = celery_worker_factory(env=app_env, concurrency=2)
        orders = open_orders(store, 20)
        assert len(orders) == 20
        with transaction.atomic():
            transaction.on_commit(poll_due.delay)  # queued first: the poll runs beside the pushes
            for index, order in enumerate(orders):  # each add queues its push after the commit
                carrier = CARRIERS[index % 2]
                shipment_add(store=store, order=order, carrier=carrier, source=Shipment.Source.CSV,
                             tracking_number=next(numbers_for(carrier, 1, start=500 + index)),
                             lines=[(line, line.quantity) for line in order.line_items.all()])

        def in_flight() -> bool:
            pushes = FulfillmentPush.objects.filter(state=State.SUCCEEDED, shipment__source=CSV).count()
            return pushes >= 3 and Shipment.objects.filter(poll_claimed_until__gt=time_now()).exists()

        wait_until(in_flight, timeout=120, interval=0.05, what="pushes done and a poll in flight")
        sigkill_tree(worker.process)
        worker.process = None
        done_at_kill = FulfillmentPush.objects.filter(state=State.SUCCEEDED, shipment__source=CSV).count()
        polled_at_kill = Shipment.objects.filter(last_polled_at__isnull=False).count()
        claimed_at_kill = Shipment.objects.filter(poll_claimed_until__gt=time_now()).count()
        assert done_at_kill < 20, "the kill must land while pushes are still owed"
        assert claimed_at_kill > 0, "the kill must land while a poll holds shipments"

        genstore.clear_faults()
        carriers.set_latency("ups", 0)
        worker = celery_worker_factory(env=app_env, concurrency=2)

        def settled() -> bool:
            if worker.process is None or worker.process.poll() is not None:
                raise AssertionError(f"the worker died:\n{worker.log_tail()}")
            pushes_done = FulfillmentPush.objects.filter(state=State.SUCCEEDED, shipment__source=CSV).count() == 20
            polled = all(
                shipment.status == carriers.expected_final_status(shipment.tracking_number)
                for shipment in Shipment.objects.filter(store=store, source=CSV)
            )
            if pushes_done and polled:
                return True
            push_pending.delay(requeue_after_seconds=0)  # beat's minute, every two seconds
            poll_due.delay()
            return False

        try:
            wait_until(settled, timeout=150, interval=2, what="every push done and every shipment polled")
        except TimeoutError:
            states = dict(FulfillmentPush.objects.values_list("state").annotate(n=Count("pk")))
            raise AssertionError(f"not settled: pushes {states}\n{worker.log_tail()}") from None
        # One more tick once the pushes are done: their last status updates may still be on the way.
        time.sleep(1)

        shipments = list(Shipment.objects.filter(store=store, source=CSV).select_related("order"))
        problems = []
        for shipment in shipments:
            live = [f for f in genstore.fulfillments("shop1", shipment.order.order_id)
                    if f["trackingNumber"] == shipment.tracking_number and f["status"] != "cancelled"]
            if len(live) != 1:
                problems.append(f"{shipment.tracking_number}: {len(live)} fulfillments")
        assert problems == [], problems
        assert genstore.stats("shop1")["fulfillments_created"] == 20  # not one created twice
        assert not Shipment.objects.filter(poll_claimed_until__gt=time_now()).exists()
        duplicated = TrackingEvent.objects.values("shipment", "key").annotate(n=Count("pk")).filter(n__gt=1)
        assert not duplicated.exists()
        wait_until(lambda: all_statuses_pushed(genstore, shipments), timeout=60, interval=1,
                   what="the final shipment statuses pushed to Genstore")
        print(f"\nSIGKILL with {done_at_kill}/20 pushes done, a poll holding {claimed_at_kill} shipments "
              f"({polled_at_kill}/20 polled); after the "
              f"restart: 20 fulfillments, {genstore.stats('shop1')['fulfillments_updated']} status updates, "
              f"no duplicate")
    finally:
        genstore.stop()


def time_now():
    from django.utils import timezone

    return timezone.now()


def all_statuses_pushed(genstore, shipments: list[Shipment]) -> bool:
    push_pending.delay(requeue_after_seconds=0)
    for shipment in shipments:
        shipment.refresh_from_db()
        [fulfillment] = [f for f in genstore.fulfillments("shop1", shipment.order.order_id)
                         if f["trackingNumber"] == shipment.tracking_number and f["status"] != "cancelled"]
        if fulfillment["shipmentStatus"] != shipment_status_for(shipment.status, shipment.substatus):
            return False
    return True
