"""What sets pushes and statuses moving: shipments added or changed, orders changed, the beat (tasks run eagerly
here; the acceptance test runs them in a real worker)."""

from __future__ import annotations

import pytest
from django.test import TestCase

from oma.fulfillment.models import FulfillmentPush
from oma.fulfillment.services.unified_status import fulfillment_facts, order_facts, shipment_facts
from oma.fulfillment.status import unified_status_for
from oma.fulfillment.tasks import push_pending, push_shipment
from oma.orders.models import Order, SyncRun
from oma.orders.services import orders_sweep
from tests.fulfillment.conftest import add_shipment, carrier_says, open_orders
from tests.genstore_sandbox import connect
from tracking.models import Shipment

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def after_commit():
    return TestCase.captureOnCommitCallbacks(execute=True)


def test_every_order_gets_its_unified_status_when_mirrored(sandbox, redis_client):
    store = connect(sandbox, rate_limit=(1000, 1000.0))
    with after_commit():
        orders_sweep(store=store, kind=SyncRun.Kind.FULL)
    orders = Order.objects.filter(store=store).prefetch_related(
        "line_items", "genstore_fulfillments", "shipments__lines__line_item"
    )
    # Every row was computed by the one function, from the facts as stored.
    seen = set()
    for order in orders:
        expected = unified_status_for(
            order=order_facts(order),
            shipments=[shipment_facts(s) for s in order.shipments.all()],
            fulfillments=[fulfillment_facts(f) for f in order.genstore_fulfillments.all()],
        )
        assert (order.unified_status, order.unified_status_reason) == expected, order.order_id
        seen.add(order.unified_status)
    assert {"cancelled", "refunded", "unfulfilled", "awaiting_tracking"} <= seen
    assert Order.objects.filter(store=store, unified_status="").count() == 0


def test_orders_mirrored_without_a_status_get_one_from_the_beat(sandbox, store, eager_celery):
    # The store fixture swept outside any commit hook (as data mirrored before this app existed would be).
    assert Order.objects.filter(store=store, unified_status="").count() == 80
    with after_commit():
        push_pending.delay().get()
    assert Order.objects.filter(store=store, unified_status="").count() == 0


def test_a_new_shipment_is_pushed_and_each_carrier_change_follows(sandbox, store, eager_celery):
    order = open_orders(store)[0]
    with after_commit():
        shipment = add_shipment(store, order)
    [fulfillment] = sandbox.fulfillments("shop1", order.order_id)
    assert fulfillment["trackingNumber"] == shipment.tracking_number
    order.refresh_from_db()
    assert order.unified_status == "awaiting_tracking"

    with after_commit():
        carrier_says(shipment, "in_transit", hours_ago=3)
    assert sandbox.fulfillments("shop1", order.order_id)[0]["shipmentStatus"] == "in_transit"
    order.refresh_from_db()
    assert (order.unified_status, order.unified_status_reason) == ("in_transit", "the parcel is in transit")

    with after_commit():
        carrier_says(shipment, "delivered")
    assert sandbox.fulfillments("shop1", order.order_id)[0]["shipmentStatus"] == "delivered"
    order.refresh_from_db()
    assert order.unified_status == "delivered"
    assert sandbox.stats("shop1")["fulfillments_created"] == 1


def test_an_order_cancelled_in_genstore_changes_status_and_blocks_its_push(sandbox, store, eager_celery):
    order = open_orders(store)[0]
    sandbox.cancel_order("shop1", order.order_id, reason="fraud")
    with after_commit():
        orders_sweep(store=store, kind=SyncRun.Kind.INCREMENTAL)
    order.refresh_from_db()
    assert (order.unified_status, order.unified_status_reason) == ("cancelled", "cancelled in Genstore (fraud)")

    with after_commit():
        shipment = add_shipment(store, order)
    push = FulfillmentPush.objects.get(shipment=shipment)
    assert push.state == FulfillmentPush.State.SKIPPED
    assert sandbox.fulfillments("shop1", order.order_id) == []


def test_the_beat_task_pushes_what_no_trigger_did(sandbox, store, eager_celery):
    orders = open_orders(store)[:3]
    # Shipments written without their trigger (a path that forgot it, or a broker that was down).
    shipments = [
        Shipment.objects.create(store=store, order=order, tracking_number=f"1ZBEAT{index:012d}", carrier="ups")
        for index, order in enumerate(orders)
    ]

    with after_commit():
        queued = push_pending.delay().get()

    assert queued == 3
    for order, shipment in zip(orders, shipments, strict=True):
        [fulfillment] = sandbox.fulfillments("shop1", order.order_id)
        assert fulfillment["trackingNumber"] == shipment.tracking_number
        assert fulfillment["trackingCompany"] == "UPS"
    with after_commit():
        assert push_pending.delay().get() == 0


def test_the_push_task_is_safe_to_run_twice(sandbox, store, eager_celery):
    order = open_orders(store)[0]
    shipment = add_shipment(store, order)
    assert push_shipment.delay(shipment.pk).get() == "created"
    assert push_shipment.delay(shipment.pk).get() == "unchanged"
    assert push_shipment.delay(10**9).get() == "not_pushable"
    assert len(sandbox.fulfillments("shop1", order.order_id)) == 1
