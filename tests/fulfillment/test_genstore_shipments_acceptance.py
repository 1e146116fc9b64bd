"""Acceptance of issue 16, item 1, end to end: 100 orders fulfilled in Genstore itself (the merchant's own
fulfillments, numbers of four carriers) end with the carrier's status as `shipmentStatus` on those same
fulfillments. The Genstore and carrier sandboxes answer over HTTP; real Celery workers on their own Redis broker do
the sweep, the tracking, the polls and the pushes; the carriers are down for a while, and a worker is killed with
SIGKILL mid-run and another started. Checked: only update_tracking reached Genstore (not one POST /fulfillments,
not one cancel), every fulfillment kept its id and number, and running everything again writes nothing.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db.models import Count
from django.utils import timezone

from oma.fulfillment.models import FulfillmentPush
from oma.fulfillment.pushed_status import shipment_status_for
from oma.fulfillment.reconciliation import Finding, store_reconcile
from oma.fulfillment.services.push import pushes_pending
from oma.fulfillment.tasks import push_pending
from oma.genstore.carriers import tracking_company_for
from oma.orders.models import SyncRun
from oma.orders.services import orders_sweep
from oma.orders.tasks import sweep_store
from tests.fixtures_celery import (  # noqa: F401 (fixtures)
    CeleryWorker,
    celery_worker_factory,
    private_redis,
    subprocess_env,
    wait_until,
)
from tests.genstore_sandbox import connect, start_sandbox
from tests.tracking.conftest import ALL_DONE, EPOCH, FAST_LIMITS, add_sandbox_account
from tracking.models import CarrierAccount, Shipment
from tracking.polling import forget_transports, poll_due_shipments
from tracking.sandbox import CarrierSandbox, numbers_for
from tracking.tasks import poll_due

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

CARRIERS = ("ups", "fedex", "usps", "dhl")
ORDERS = 100
State = FulfillmentPush.State
# A worker's settings for this run: a carrier outage backs accounts off for a second or two (not a minute), and a
# poll claimed by the killed worker is free again after five seconds (not ten minutes).
WORKER_SETTINGS = {
    "LOG_LEVEL": "WARNING",
    "TRACKING_BACKOFF_BASE_SECONDS": "1",
    "TRACKING_BACKOFF_MAX_SECONDS": "2",
    "TRACKING_CLAIM_LEASE_SECONDS": "5",
}


@pytest.fixture
def carriers() -> Iterator[CarrierSandbox]:
    sandbox = CarrierSandbox(port=0, epoch=EPOCH, rate_limits=FAST_LIMITS).start()
    sandbox.set_clock(EPOCH + timedelta(days=2, hours=6))  # mid-journey: parcels on their way, some delivered
    yield sandbox
    sandbox.stop()
    forget_transports()


def sigkill(worker: CeleryWorker) -> None:
    """SIGKILL the worker and its pool processes at once: nothing gets to finish, ack or clean up."""
    assert worker.process is not None
    pids = [worker.process.pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if parent == worker.process.pid:
                pids.append(int(entry.name))
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    worker.process.wait(timeout=10)
    worker.process = None


def genstore_writes(genstore) -> Counter[str]:
    return Counter({
        endpoint: count for endpoint, count in genstore.stats("shop1")["by_endpoint"].items()
        if endpoint.split(" ")[0] in ("POST", "PUT", "DELETE")
    })


def test_the_merchants_own_fulfillments_follow_the_carrier_across_an_outage_and_a_killed_worker(
    transactional_db, broker, private_redis, celery_worker_factory, carriers  # noqa: F811
):
    genstore = start_sandbox(orders=0, seed=16, rate_limit=(2000, 1000.0))
    try:
        _run(genstore, broker, private_redis, celery_worker_factory, carriers)
    finally:
        genstore.stop()


def _run(genstore, broker, private_redis, celery_worker_factory, carriers) -> None:  # noqa: F811, C901
    started = time.monotonic()
    order_ids = genstore.add_orders("shop1", ORDERS)
    store = connect(genstore, rate_limit=(2000, 1000.0))
    assert orders_sweep(store=store, kind=SyncRun.Kind.FULL).state == SyncRun.State.SUCCEEDED
    for carrier in CARRIERS:
        add_sandbox_account(carriers, carrier)

    # --- the merchant fulfils every order in Genstore's own admin: four carriers, a link on half of them -----------
    made: dict[str, dict] = {}
    for index, order_id in enumerate(order_ids):
        carrier = CARRIERS[index % len(CARRIERS)]
        number = next(numbers_for(carrier, 1, start=1600 + index))
        made[order_id] = genstore.fulfil_as_merchant(
            "shop1", order_id, tracking_number=number, tracking_company=tracking_company_for(carrier),
            tracking_url=f"https://track.example.com/{carrier}/{number}" if index % 2 else None,
            shipment_status="confirmed" if index % 5 == 0 else None,
        )
    assert genstore_writes(genstore) == Counter()

    # --- the carriers are down; a worker sweeps, tracks, polls and pushes ----------------------------------------
    for carrier in CARRIERS:
        carriers.set_down(carrier, retry_after=1)
    env = subprocess_env(broker_url=broker, extra={**WORKER_SETTINGS, "REDIS_URL": private_redis.url(1)})
    worker = celery_worker_factory(env=env, concurrency=4)
    sweep_store.delay(store.pk, SyncRun.Kind.INCREMENTAL)

    def tick() -> None:
        """What beat would send, faster: a poll of what is due, the push safety net."""
        poll_due.delay()
        push_pending.delay(requeue_after_seconds=5)

    shipments = Shipment.objects.filter(store=store)

    def tracked() -> bool:
        tick()
        return shipments.filter(source=Shipment.Source.GENSTORE, order__isnull=False).count() == ORDERS

    wait_until(tracked, timeout=60, interval=1, what="a shipment for each fulfillment")

    def carriers_failed() -> bool:
        tick()
        return CarrierAccount.objects.filter(last_failure_at__isnull=False).count() == len(CARRIERS)

    wait_until(carriers_failed, timeout=60, interval=1, what="every carrier account to fail")
    assert not shipments.exclude(status="pending").exists()  # nothing known yet, nothing pushed
    assert genstore_writes(genstore) == Counter()
    for carrier in CARRIERS:
        carriers.set_down(carrier, down=False)

    # --- the carriers answer again: statuses flow to Genstore; the worker is killed in the middle ---------------
    def a_third_pushed() -> bool:
        tick()
        return genstore.stats("shop1")["fulfillments_updated"] >= ORDERS // 3

    wait_until(a_third_pushed, timeout=90, interval=0.5, what="a third of the fulfillments updated")
    sigkill(worker)
    killed_at = genstore.stats("shop1")["fulfillments_updated"]
    worker = celery_worker_factory(env=env, concurrency=4)

    # The journeys go on to their end; what is not final yet is due again.
    carriers.set_clock(ALL_DONE)
    shipments.filter(next_poll_at__isnull=False).update(next_poll_at=timezone.now())

    def in_line() -> bool:
        if worker.process is None or worker.process.poll() is not None:
            raise AssertionError(f"the worker died:\n{worker.log_tail()}")
        tick()
        final = 0
        for shipment in shipments.select_related("order"):
            [fulfillment] = genstore.fulfillments("shop1", shipment.order.order_id)
            wanted = shipment_status_for(shipment.status, shipment.substatus)
            final += (
                shipment.status == carriers.expected_final_status(shipment.tracking_number)
                and fulfillment["shipmentStatus"] == wanted
            )
        return final == ORDERS and settled()

    try:
        wait_until(in_line, timeout=180, interval=1, what="every fulfillment at the carrier's final status")
    except TimeoutError:
        states = dict(FulfillmentPush.objects.values_list("state").annotate(n=Count("pk")))
        raise AssertionError(f"not in line: pushes {states}\n{worker.log_tail()}") from None
    first_run = time.monotonic() - started

    # --- Genstore: update_tracking only, on the same fulfillments, with the same numbers --------------------------
    writes = genstore_writes(genstore)
    assert set(writes) == {"PUT /fulfillments/{id}/update_tracking"}, writes
    stats = genstore.stats("shop1")
    assert (stats["fulfillments_created"], stats["fulfillments_cancelled"]) == (0, 0)
    for order_id, fulfillment in made.items():
        [now] = genstore.fulfillments("shop1", order_id)
        assert (now["fulfillId"], now["trackingNumber"], now["status"]) == (
            fulfillment["fulfillId"], fulfillment["trackingNumber"], "success"
        )
    assert shipments.count() == ORDERS
    assert CarrierAccount.objects.filter(consecutive_failures=0).count() == len(CARRIERS)  # recovered
    taken_over = sum(
        1 for log in FulfillmentPush.objects.values_list("log", flat=True)
        if any("the previous attempt did not finish" in entry["message"] for entry in log)
    )

    # --- running everything again writes nothing -----------------------------------------------------------------
    before = genstore_writes(genstore)
    orders_sweep(store=store, kind=SyncRun.Kind.INCREMENTAL)
    shipments.update(next_poll_at=timezone.now() - timedelta(seconds=1))
    poll_due_shipments()
    call_command("push_fulfillments", "--store", store.domain)
    push_pending.delay(requeue_after_seconds=0)
    wait_until(settled, timeout=30, interval=0.5, what="nothing left to push")
    assert genstore_writes(genstore) == before

    report = store_reconcile(store=store, refresh=True)
    for kind in (Finding.UNKNOWN_TRACKING_NUMBER, Finding.SHIPMENT_WITHOUT_FULFILLMENT,
                 Finding.DELIVERED_NOT_IN_GENSTORE, Finding.DUPLICATE_FULFILLMENT):
        assert report.count(kind) == 0, [d for d in report.disagreements if d.kind == kind][:5]
    print(  # shown with -s: the figures of the run
        f"\n{ORDERS} merchant fulfillments tracked; first run {first_run:.1f} s; Genstore: {stats['requests']} "
        f"requests, {writes['PUT /fulfillments/{id}/update_tracking']} update_tracking ({killed_at} before the kill), "
        f"0 creates, 0 cancels; {taken_over} pushes taken over from the killed worker; carriers: "
        f"{sum(carriers.stats()['requests'].values())} requests"
    )


def settled() -> bool:
    return not FulfillmentPush.objects.filter(state__in=[State.PENDING, State.IN_PROGRESS]).exists() and not (
        pushes_pending(include_queued=True)
    )
