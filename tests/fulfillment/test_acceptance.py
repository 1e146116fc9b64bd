"""Acceptance, end to end: the Genstore and carrier sandboxes over HTTP, CSV tracking from four channels, a real
Celery worker on its own Redis broker, 10% of Genstore's writes applied but answered 502, and the worker killed
with SIGKILL mid-run and restarted.

Checked: Genstore holds exactly one fulfillment per shipment, with the shipment's line items, tracking fields and
the shipmentStatus mapped from the carrier's status; orders cancelled in Genstore get none; running everything
again (sweep, poll, push, the beat) changes nothing; reconciliation finds nothing missing.
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db.models import Count, Q
from django.utils import timezone

from oma.channels.csv_import import tracking_csv_import
from oma.channels.services import channel_create
from oma.fulfillment.models import FulfillmentPush
from oma.fulfillment.pushed_status import shipment_status_for
from oma.fulfillment.reconciliation import Finding, store_reconcile
from oma.fulfillment.services.push import pushes_pending
from oma.fulfillment.tasks import push_pending
from oma.genstore.carriers import tracking_company_for
from oma.orders.models import Order, SyncRun
from oma.orders.services import orders_sweep
from tests.faults.processes import sigkill_tree
from tests.fixtures_celery import (  # noqa: F401 (fixtures)
    CeleryWorker,
    celery_worker_factory,
    subprocess_env,
    wait_until,
)
from tests.genstore_sandbox import connect, start_sandbox
from tracking.models import Shipment
from tracking.polling import poll_due_shipments
from tracking.sandbox import CARRIERS, numbers_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

CHANNELS = ("amazon feed", "walmart feed", "tiktok feed", "shipbob feed")
CARRIER_COLUMN = {"ups": "ups", "fedex": "fedex", "usps": "usps", "dhl": "dhl", "17track": ""}  # S10: detected
State = FulfillmentPush.State
# Fixtures from tests/fulfillment/conftest.py: `broker` (this process publishes to the test's own Redis) and
# `carriers` (the carrier sandbox, mid-journey, with an account for each carrier).


def sigkill(worker: CeleryWorker) -> None:
    """SIGKILL the worker and its pool processes at once: nothing gets to finish, ack or clean up."""
    assert worker.process is not None
    sigkill_tree(worker.process)
    worker.process = None


def tracking_csv(rows: list[dict[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["order", "tracking_number", "carrier", "line_item_id", "quantity"])
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def settled() -> bool:
    return not FulfillmentPush.objects.filter(state__in=[State.PENDING, State.IN_PROGRESS]).exists() and not (
        pushes_pending(include_queued=True)
    )


def test_exactly_one_fulfillment_per_shipment_with_faults_and_a_killed_worker(
    transactional_db, broker, private_redis, celery_worker_factory, carriers, tmp_path  # noqa: F811
):
    genstore = start_sandbox(orders=100, seed=11, rate_limit=(2000, 1000.0))
    try:
        _run(genstore, broker, private_redis, celery_worker_factory)
    finally:
        genstore.stop()


def _run(genstore, broker, private_redis, celery_worker_factory) -> None:  # noqa: F811
    # --- 500 orders mirrored (the carrier accounts are the `carriers` fixture's) ---------------------------
    new_order_ids = genstore.add_orders("shop1", 400)
    store = connect(genstore, rate_limit=(2000, 1000.0))
    assert orders_sweep(store=store, kind=SyncRun.Kind.FULL).state == SyncRun.State.SUCCEEDED
    assert Order.objects.filter(store=store).count() == 500

    # Twenty orders are cancelled in Genstore after the sweep: OMA's mirror still thinks they are open.
    cancelled = set(new_order_ids[::20])
    for order_id in cancelled:
        genstore.cancel_order("shop1", order_id, reason="customer")

    # --- a real worker, Genstore answering 10% of its writes with 502 (after applying them) ------------------
    env = subprocess_env(broker_url=broker, extra={"LOG_LEVEL": "WARNING", "REDIS_URL": private_redis.url(1)})
    worker = celery_worker_factory(env=env, concurrency=4)
    genstore.set_faults(write_error_rate=0.1, write_error_status=502)

    # --- CSV tracking for 400 orders from four channels; a third of the multi-item orders split in two ------
    channels = [channel_create(store=store, kind="csv", name=name) for name in CHANNELS]
    files: dict[str, list[dict[str, str]]] = {name: [] for name in CHANNELS}
    sequence = 0
    for index, order in enumerate(Order.objects.filter(store=store, order_id__in=new_order_ids).order_by("pk")):
        carrier = CARRIERS[index % len(CARRIERS)]
        lines = list(order.line_items.order_by("pk"))
        parcels = [lines[:1], lines[1:]] if len(lines) > 1 and index % 3 == 0 else [lines]
        for parcel in parcels:
            sequence += 1
            number = next(numbers_for(carrier, 1, start=sequence))
            for line in parcel:
                files[CHANNELS[index % 4]].append({
                    "order": order.order_id, "tracking_number": number, "carrier": CARRIER_COLUMN[carrier],
                    "line_item_id": line.line_item_id, "quantity": str(line.quantity),
                })
    for channel in channels:
        report = tracking_csv_import(
            store=store, data=tracking_csv(files[channel.name]), file_name=f"{channel.name}.csv", channel=channel
        )
        assert report.file_error == "" and report.count("rejected") == report.count("waiting") == 0, report.summary()
    # The channels' shipments (the sandbox's own fulfillments are tracked too, as `genstore` shipments).
    shipments = Shipment.objects.filter(store=store, order__isnull=False).exclude(source=Shipment.Source.GENSTORE)
    assert shipments.values("order").distinct().count() == 400
    # A parcel holding only items that need no shipping (gift cards...) is never pushed.
    ships_something = Q(lines__line_item__requires_shipping=True) | Q(lines__line_item__requires_shipping__isnull=True)
    expected_pushes = shipments.exclude(order__order_id__in=cancelled).filter(ships_something).distinct().count()

    # --- carriers polled: status changes queue their pushes too ---------------------------------------------
    summary = poll_due_shipments()
    assert summary.failed == 0, summary.line()

    # --- kill the worker mid-run, restart it, let the beat pick up what the dead one held ----------------------
    wait_until(
        lambda: FulfillmentPush.objects.filter(state=State.SUCCEEDED, shipment__in=shipments).count()
        >= expected_pushes // 3,
        timeout=240, interval=0.2, what="a third of the pushes",
    )
    sigkill(worker)
    worker = celery_worker_factory(env=env, concurrency=4)
    push_pending.delay(requeue_after_seconds=0)  # a beat tick (the dead worker's messages are gone)

    def done() -> bool:
        if worker.process is None or worker.process.poll() is not None:
            raise AssertionError(f"the worker died:\n{worker.log_tail()}")
        if not settled():
            push_pending.delay(requeue_after_seconds=30)  # the beat keeps ticking
            return False
        return True

    try:
        wait_until(done, timeout=600, interval=3, what="every push settled")
    except TimeoutError:
        states = dict(FulfillmentPush.objects.values_list("state").annotate(n=Count("pk")))
        raise AssertionError(f"pushes not settled: {states}\n{worker.log_tail()}") from None

    # --- Genstore holds exactly one fulfillment per shipment, exactly as OMA has it --------------------------
    _assert_genstore_matches(genstore, store, cancelled)
    assert genstore.stats("shop1")["fulfillments_created"] == expected_pushes
    assert genstore.stats("shop1")["write_faults_injected"] > 0

    # --- running everything again changes nothing -------------------------------------------------------------
    before = genstore.stats("shop1")
    orders_sweep(store=store, kind=SyncRun.Kind.INCREMENTAL)
    Shipment.objects.filter(next_poll_at__isnull=False).update(next_poll_at=timezone.now() - timedelta(seconds=1))
    poll_due_shipments()
    call_command("push_fulfillments", "--store", store.domain)
    push_pending.delay(requeue_after_seconds=0)
    wait_until(settled, timeout=60, interval=1, what="nothing left to push")
    after = genstore.stats("shop1")
    assert (after["fulfillments_created"], after["fulfillments_updated"]) == (
        before["fulfillments_created"], before["fulfillments_updated"],
    )
    _assert_genstore_matches(genstore, store, cancelled)

    pushes = FulfillmentPush.objects.filter(store=store)
    read_back = sum(
        1 for log in pushes.values_list("log", flat=True)
        if any("our earlier create did reach Genstore" in entry["message"] for entry in log)
    )
    retried = sum(
        1 for log in pushes.values_list("log", flat=True) if any("will retry" in entry["message"] for entry in log)
    )
    taken_over = sum(
        1 for log in pushes.values_list("log", flat=True)
        if any("the previous attempt did not finish" in entry["message"] for entry in log)
    )
    print(  # shown with -s: the figures of the run
        f"\n{shipments.count()} shipments on 400 of 500 orders, {expected_pushes} pushed, "
        f"{pushes.filter(state=State.SKIPPED).count()} skipped (cancelled orders, nothing to ship); "
        f"Genstore: {after['requests']} requests, {after['fulfillments_created']} created, "
        f"{after['fulfillments_updated']} updates, {after['write_faults_injected']} writes answered 502, "
        f"{after['rate_limited']} 429s; {read_back} creates found again by reading after a 502 or the kill; "
        f"{retried} pushes waited for a retry; {taken_over} pushes taken over from the killed worker"
    )

    report = store_reconcile(store=store, refresh=True)
    for kind in (Finding.SHIPMENT_WITHOUT_FULFILLMENT, Finding.DELIVERED_NOT_IN_GENSTORE,
                 Finding.DUPLICATE_FULFILLMENT, Finding.NUMBER_ON_TWO_ORDERS):
        assert report.count(kind) == 0, [d for d in report.disagreements if d.kind == kind][:5]


def _assert_genstore_matches(genstore, store, cancelled: set[str]) -> None:
    problems = []
    shipments = Shipment.objects.filter(store=store, order__isnull=False).exclude(
        source=Shipment.Source.GENSTORE
    ).select_related("order").prefetch_related(
        "lines__line_item"
    )
    for shipment in shipments:
        order_id = shipment.order.order_id
        live = [
            f for f in genstore.fulfillments("shop1", order_id)
            if f["trackingNumber"] == shipment.tracking_number and f["status"] != "cancelled"
        ]
        lines = sorted(
            (line.line_item.line_item_id, line.quantity)
            for line in shipment.lines.all()
            if line.line_item.requires_shipping is not False
        )
        if order_id in cancelled or not lines:
            if live:
                problems.append(f"{shipment.tracking_number}: cancelled or unshippable on {order_id}: {len(live)}")
            continue
        if len(live) != 1:
            problems.append(f"{shipment.tracking_number}: {len(live)} fulfillments on {order_id}")
            continue
        [fulfillment] = live
        if sorted((item["id"], item["quantity"]) for item in fulfillment["lineItems"]) != lines:
            problems.append(f"{shipment.tracking_number}: line items {fulfillment['lineItems']} != {lines}")
        wanted = (
            tracking_company_for(shipment.carrier, shipment.tracking_number),
            shipment.tracking_url or None,
            shipment_status_for(shipment.status, shipment.substatus),
        )
        got = (fulfillment["trackingCompany"], fulfillment["trackingUrl"], fulfillment["shipmentStatus"])
        if got != wanted:
            problems.append(f"{shipment.tracking_number} ({shipment.status}/{shipment.substatus}): {got} != {wanted}")
    assert problems == [], f"{len(problems)} problems, e.g. {problems[:10]}"
