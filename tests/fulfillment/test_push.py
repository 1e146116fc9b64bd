"""Pushing shipments to the Genstore sandbox over real HTTP: create, keep current, exactly once, refusals."""

from __future__ import annotations

import psycopg
import pytest
import requests
from django.db import connection
from django.test import TestCase

from oma.fulfillment.models import FulfillmentPush
from oma.fulfillment.services.push import PushResult, push_row_for, pushes_pending, shipment_push
from oma.genstore.client import GenstoreClient
from oma.orders.models import GenstoreFulfillment, Order
from oma.stores.services import genstore_client_for, genstore_limiter
from tests.fulfillment.conftest import add_shipment, carrier_says, new_number, open_orders
from tracking.models import Shipment

# Not transactional (a flush per test costs seconds): on-commit work is run where a test looks at its effect.
pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

State = FulfillmentPush.State


def quick_client(store, **options) -> GenstoreClient:
    """The store's client, retrying at once and only twice (the tests inject failures on purpose)."""
    return GenstoreClient(
        base_url=store.resolved_api_base_url, api_version=store.api_version, access_token=store.access_token,
        limiter=genstore_limiter(), limiter_key=f"genstore:{store.domain}", bucket_capacity=1000,
        bucket_refill_per_second=1000, max_retries=2, sleep=lambda _: None, **options,
    )


def genstore_fulfillments(sandbox, order: Order) -> list[dict]:
    return [f for f in sandbox.fulfillments("shop1", order.order_id) if f["status"] != "cancelled"]


def ours(sandbox, order: Order, number: str) -> list[dict]:
    return [f for f in genstore_fulfillments(sandbox, order) if f["trackingNumber"] == number]


def test_creates_one_fulfillment_with_its_lines_tracking_and_mapped_status(sandbox, store):
    order = open_orders(store, lines_at_least=2)[0]
    first, second = list(order.line_items.order_by("pk"))[:2]
    shipment = add_shipment(store, order, [(first, first.quantity), (second, 1)])
    carrier_says(shipment, "in_transit")

    with TestCase.captureOnCommitCallbacks(execute=True):
        outcome = shipment_push(shipment_id=shipment.pk)

    assert outcome.result == PushResult.CREATED
    assert outcome.requests == 3  # read the order, create, set shipmentStatus
    [fulfillment] = ours(sandbox, order, shipment.tracking_number)
    assert fulfillment["lineItems"] == [
        {"id": first.line_item_id, "quantity": first.quantity},
        {"id": second.line_item_id, "quantity": 1},
    ]
    assert fulfillment["trackingCompany"] == "USPS"
    assert fulfillment["trackingUrl"] == shipment.tracking_url and shipment.tracking_url
    assert fulfillment["shipmentStatus"] == "in_transit"
    push = outcome.push
    push.refresh_from_db()
    assert push.state == State.SUCCEEDED
    assert push.fulfill_id == fulfillment["fulfillId"]
    assert (push.tracking_number, push.tracking_company, push.shipment_status) == (
        shipment.tracking_number, "USPS", "in_transit",
    )
    assert push.line_items == fulfillment["lineItems"]
    assert not push.adopted
    # The mirror knows the fulfillment too, and the order's unified status follows.
    mirrored = GenstoreFulfillment.objects.get(store=store, fulfill_id=push.fulfill_id)
    assert (mirrored.tracking_number, mirrored.shipment_status) == (shipment.tracking_number, "in_transit")
    order.refresh_from_db()
    left = (second.quantity > 1) + order.line_items.count() - 2
    if left:
        expected = ("partially_shipped", f"1 parcel shipped; {left} line item{'s' if left > 1 else ''} not shipped yet")
    else:
        expected = ("in_transit", "the parcel is in transit")
    assert (order.unified_status, order.unified_status_reason) == expected


def test_pending_carrier_status_creates_without_shipment_status(sandbox, store):
    order = open_orders(store)[0]
    shipment = add_shipment(store, order)

    outcome = shipment_push(shipment_id=shipment.pk)

    assert (outcome.result, outcome.requests) == (PushResult.CREATED, 2)
    [fulfillment] = ours(sandbox, order, shipment.tracking_number)
    assert fulfillment["shipmentStatus"] is None


def test_running_again_changes_nothing_and_sends_nothing(sandbox, store):
    order = open_orders(store)[0]
    shipment = carrier_says(add_shipment(store, order), "out_for_delivery")
    assert shipment_push(shipment_id=shipment.pk).result == PushResult.CREATED
    before = sandbox.stats("shop1")["requests"]

    for _ in range(3):
        outcome = shipment_push(shipment_id=shipment.pk)
        assert (outcome.result, outcome.requests) == (PushResult.UNCHANGED, 0)

    assert sandbox.stats("shop1")["requests"] == before
    assert len(ours(sandbox, order, shipment.tracking_number)) == 1
    assert FulfillmentPush.objects.get(shipment=shipment).attempts == 1


def test_status_moves_forward_with_update_tracking_only(sandbox, store):
    order = open_orders(store)[0]
    shipment = carrier_says(add_shipment(store, order), "in_transit", hours_ago=5)
    shipment_push(shipment_id=shipment.pk)
    created = sandbox.stats("shop1")["fulfillments_created"]

    carrier_says(shipment, "out_for_delivery", hours_ago=2)
    outcome = shipment_push(shipment_id=shipment.pk)
    assert (outcome.result, outcome.requests) == (PushResult.UPDATED, 1)
    assert ours(sandbox, order, shipment.tracking_number)[0]["shipmentStatus"] == "out_for_delivery"

    carrier_says(shipment, "delivered")
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert shipment_push(shipment_id=shipment.pk).result == PushResult.UPDATED
    assert ours(sandbox, order, shipment.tracking_number)[0]["shipmentStatus"] == "delivered"
    assert sandbox.stats("shop1")["fulfillments_created"] == created
    order.refresh_from_db()
    assert order.unified_status == "delivered"


def test_never_backwards_a_late_status_is_recorded_not_pushed(sandbox, store):
    order = open_orders(store)[0]
    shipment = carrier_says(add_shipment(store, order), "delivered")
    shipment_push(shipment_id=shipment.pk)
    # The tracking engine itself never moves a delivered shipment back; a re-tracked or corrected shipment can
    # still ask for an earlier status, which the push must refuse to send.
    Shipment.objects.filter(pk=shipment.pk).update(status="in_transit")
    updates = sandbox.stats("shop1")["fulfillments_updated"]

    outcome = shipment_push(shipment_id=shipment.pk)

    assert outcome.result == PushResult.UNCHANGED
    assert sandbox.stats("shop1")["fulfillments_updated"] == updates
    assert ours(sandbox, order, shipment.tracking_number)[0]["shipmentStatus"] == "delivered"
    push = FulfillmentPush.objects.get(shipment=shipment)
    assert (push.state, push.shipment_status, push.held_back_shipment_status) == (
        State.SUCCEEDED, "delivered", "in_transit",
    )
    assert "in_transit not pushed: Genstore is already at delivered" in [entry["message"] for entry in push.log]


def test_number_or_carrier_change_updates_the_same_fulfillment(sandbox, store):
    order = open_orders(store)[0]
    shipment = carrier_says(add_shipment(store, order), "in_transit")
    shipment_push(shipment_id=shipment.pk)
    [before] = ours(sandbox, order, shipment.tracking_number)

    Shipment.objects.filter(pk=shipment.pk).update(carrier="ups", tracking_url="https://www.ups.com/track?x=1")
    outcome = shipment_push(shipment_id=shipment.pk)

    assert outcome.result == PushResult.UPDATED
    [after] = ours(sandbox, order, shipment.tracking_number)
    assert after["fulfillId"] == before["fulfillId"]
    assert (after["trackingCompany"], after["trackingUrl"], after["shipmentStatus"]) == (
        "UPS", "https://www.ups.com/track?x=1", "in_transit",
    )
    assert sandbox.stats("shop1")["fulfillments_created"] == 1


def test_adopts_a_fulfillment_genstore_already_has_with_the_same_number(sandbox, store):
    order = open_orders(store)[0]
    number = new_number()
    lines = [(line.line_item_id, line.quantity) for line in order.line_items.order_by("pk")]
    existing = genstore_client_for(store).create_fulfillment(
        order_id=order.order_id, line_items=lines, tracking_number=number.lower(), tracking_company="usps",
        tracking_url=None, notify_customer=False,
    )
    shipment = carrier_says(add_shipment(store, order, number=number), "in_transit")
    created = sandbox.stats("shop1")["fulfillments_created"]

    outcome = shipment_push(shipment_id=shipment.pk)

    assert outcome.result == PushResult.ADOPTED
    assert sandbox.stats("shop1")["fulfillments_created"] == created
    push = outcome.push
    assert push.fulfill_id == existing.fulfill_id and push.adopted
    [fulfillment] = genstore_fulfillments(sandbox, order)
    assert (fulfillment["trackingNumber"], fulfillment["trackingCompany"], fulfillment["shipmentStatus"]) == (
        number, "USPS", "in_transit",
    )


def test_502_on_create_is_read_back_and_adopted_never_duplicated(sandbox, store):
    order = open_orders(store)[0]
    shipment = carrier_says(add_shipment(store, order), "in_transit")
    sandbox.set_faults(write_error_rate=1.0, write_error_status=502)

    outcome = shipment_push(shipment_id=shipment.pk, client=quick_client(store))

    # The create was applied but answered 502: the push lists, finds it, and sets the status (that PUT also
    # answers 502 and is retried by the client, applied each time: idempotent).
    sandbox.clear_faults()
    assert len(ours(sandbox, order, shipment.tracking_number)) == 1
    assert sandbox.stats("shop1")["fulfillments_created"] == 1
    push = FulfillmentPush.objects.get(shipment=shipment)
    assert push.fulfill_id == ours(sandbox, order, shipment.tracking_number)[0]["fulfillId"]
    messages = [entry["message"] for entry in push.log]
    assert any("our earlier create did reach Genstore" in m for m in messages)
    if outcome.result == PushResult.RETRY:  # the status PUT kept failing: the next run finishes it, no create
        outcome = shipment_push(shipment_id=shipment.pk)
    assert outcome.result in (PushResult.CREATED, PushResult.UPDATED)
    assert ours(sandbox, order, shipment.tracking_number)[0]["shipmentStatus"] == "in_transit"
    assert sandbox.stats("shop1")["fulfillments_created"] == 1


def test_worker_killed_after_the_create_left_genstore_the_next_run_adopts(sandbox, store):
    order = open_orders(store)[0]
    shipment = add_shipment(store, order)
    push = shipment_push(shipment_id=shipment.pk).push
    # Rewind the row to the moment between "POST sent" and "fulfillId saved": what a SIGKILL there leaves behind.
    FulfillmentPush.objects.filter(pk=push.pk).update(state=State.IN_PROGRESS, fulfill_id="", adopted=False)

    outcome = shipment_push(shipment_id=shipment.pk)

    assert outcome.result == PushResult.CREATED  # ours, found again: not adopted from someone else
    assert len(ours(sandbox, order, shipment.tracking_number)) == 1
    assert sandbox.stats("shop1")["fulfillments_created"] == 1
    push.refresh_from_db()
    assert push.state == State.SUCCEEDED and not push.adopted
    assert any("the previous attempt did not finish" in entry["message"] for entry in push.log)


def test_a_push_held_by_another_worker_is_left_alone(sandbox, store):
    order = open_orders(store)[0]
    shipment = add_shipment(store, order)
    push = push_row_for(shipment=shipment, order=order)
    settings = connection.settings_dict
    other = psycopg.connect(
        host=settings["HOST"], port=settings["PORT"] or 5432, user=settings["USER"], dbname=settings["NAME"],
        autocommit=True,
    )
    try:
        other.execute("SELECT pg_advisory_lock(%s)", [push.lock_id])
        assert shipment_push(shipment_id=shipment.pk).result == PushResult.BUSY
        assert genstore_fulfillments(sandbox, order) == []
    finally:
        other.close()  # a worker that dies releases its lock with its connection
    assert shipment_push(shipment_id=shipment.pk).result == PushResult.CREATED


def test_cancelled_refunded_and_voided_orders_get_nothing(sandbox, store):
    refused = Order.objects.filter(store=store).filter(
        financial_status__in=["refunded", "voided"]
    ) | Order.objects.filter(store=store, cancelled_at__isnull=False)
    before = sandbox.stats("shop1")["requests"]
    for order in refused[:6]:
        line = order.line_items.first()
        shipment = add_shipment(store, order, [(line, 1)])
        outcome = shipment_push(shipment_id=shipment.pk)
        assert outcome.result == PushResult.SKIPPED, order.financial_status
        assert outcome.push.state == State.SKIPPED
        assert outcome.push.state_reason.startswith("the order")
    assert sandbox.stats("shop1")["requests"] == before  # judged on the mirror: no request at all


def test_order_cancelled_in_genstore_since_the_last_sweep_is_caught_by_the_read(sandbox, store):
    order = open_orders(store)[0]
    shipment = add_shipment(store, order)
    sandbox.cancel_order("shop1", order.order_id, reason="customer")

    with TestCase.captureOnCommitCallbacks(execute=True):
        outcome = shipment_push(shipment_id=shipment.pk)

    assert outcome.result == PushResult.SKIPPED
    assert outcome.push.state_reason == "the order is cancelled in Genstore (customer)"
    assert genstore_fulfillments(sandbox, order) == []
    order.refresh_from_db()
    assert order.cancelled_at is not None and order.unified_status == "cancelled"


def test_items_that_need_no_shipping_are_left_out_and_alone_are_skipped(sandbox, store):
    order = open_orders(store, lines_at_least=2)[0]
    gift, shirt = list(order.line_items.order_by("pk"))[:2]
    gift.requires_shipping = False
    gift.save(update_fields=["requires_shipping"])

    only_gift = add_shipment(store, order, [(gift, 1)])
    outcome = shipment_push(shipment_id=only_gift.pk)
    assert (outcome.result, outcome.requests) == (PushResult.SKIPPED, 0)
    assert outcome.push.state_reason == "no item in this shipment needs shipping"

    both = add_shipment(store, order, [(gift, 1), (shirt, 1)])
    assert shipment_push(shipment_id=both.pk).result == PushResult.CREATED
    [fulfillment] = ours(sandbox, order, both.tracking_number)
    assert fulfillment["lineItems"] == [{"id": shirt.line_item_id, "quantity": 1}]


def test_quantity_above_fulfillable_fails_before_any_write_and_is_not_retried_blindly(sandbox, store):
    order = open_orders(store)[0]
    line = order.line_items.first()
    first = add_shipment(store, order, [(line, line.quantity)])
    assert shipment_push(shipment_id=first.pk).result == PushResult.CREATED
    # A second parcel claims the same units. The mirror still shows them fulfillable (no sweep since the first
    # push), so the push reads the order, learns that none are left, and creates nothing.
    second = add_shipment(store, order, [(line, 1)])
    before = sandbox.stats("shop1")["requests"]

    outcome = shipment_push(shipment_id=second.pk)

    assert outcome.result == PushResult.FAILED
    assert outcome.push.state_reason == (
        f"quantity above fulfillableQuantity ({line.sku or line.title}: 1 to ship, Genstore can fulfil 0)"
    )
    assert sandbox.stats("shop1")["requests"] == before + 1
    assert sandbox.stats("shop1")["fulfillments_created"] == 1
    # Now the mirror knows: judged again, it fails without any request.
    assert shipment_push(shipment_id=second.pk, force=True).result == PushResult.FAILED
    assert sandbox.stats("shop1")["requests"] == before + 1
    assert shipment_push(shipment_id=second.pk).result == PushResult.FAILED  # settled until something changes
    assert FulfillmentPush.objects.get(shipment=second).attempts == 2
    assert second.pk not in pushes_pending(store=store, include_queued=True)


class _CancelsBeforeCreate(requests.Session):
    """The merchant cancels the order in Genstore between our read and our create (a race at the network edge)."""

    def __init__(self, sandbox, order_id: str) -> None:
        super().__init__()
        self.sandbox, self.order_id = sandbox, order_id

    def request(self, method, url, *args, **kwargs):
        if method == "POST" and "/fulfillment" in url:
            self.sandbox.cancel_order("shop1", self.order_id, reason="inventory")
        return super().request(method, url, *args, **kwargs)


def test_a_422_marks_the_push_failed_with_genstores_message(sandbox, store):
    order = open_orders(store)[0]
    shipment = add_shipment(store, order)

    client = quick_client(store, session=_CancelsBeforeCreate(sandbox, order.order_id))
    outcome = shipment_push(shipment_id=shipment.pk, client=client)

    assert outcome.result == PushResult.FAILED
    push = FulfillmentPush.objects.get(shipment=shipment)
    assert (push.state, push.last_error, push.last_error_status) == (
        State.FAILED, "Cannot fulfill a cancelled order", 422,
    )
    assert push.state_reason == "Genstore refused the push: Cannot fulfill a cancelled order"
    assert genstore_fulfillments(sandbox, order) == []


def test_transient_trouble_leaves_the_push_pending_with_a_backoff(sandbox, store):
    order = open_orders(store)[0]
    shipment = add_shipment(store, order)
    sandbox.set_faults(error_rate=1.0, status=503)

    outcome = shipment_push(shipment_id=shipment.pk, client=quick_client(store))

    assert outcome.result == PushResult.RETRY and outcome.retry_after
    push = FulfillmentPush.objects.get(shipment=shipment)
    assert push.state == State.PENDING and push.next_attempt_at is not None and push.last_error_status == 503
    assert shipment.pk not in pushes_pending(store=store, include_queued=True)  # not due yet
    sandbox.clear_faults()
    FulfillmentPush.objects.filter(pk=push.pk).update(next_attempt_at=None)
    assert shipment.pk in pushes_pending(store=store, include_queued=True)
    assert shipment_push(shipment_id=shipment.pk).result == PushResult.CREATED
    assert len(genstore_fulfillments(sandbox, order)) == 1


def test_a_shipment_without_lines_ships_what_is_left_of_the_order(sandbox, store):
    order = open_orders(store, lines_at_least=2)[0]
    lines = list(order.line_items.order_by("pk"))
    shipment = add_shipment(store, order, lines=[])

    assert shipment_push(shipment_id=shipment.pk).result == PushResult.CREATED

    [fulfillment] = ours(sandbox, order, shipment.tracking_number)
    assert fulfillment["lineItems"] == [{"id": line.line_item_id, "quantity": line.quantity} for line in lines]


def test_store_remembers_the_create_path(sandbox, store):
    order = open_orders(store)[0]
    shipment = add_shipment(store, order)
    shipment_push(shipment_id=shipment.pk)
    store.refresh_from_db()
    assert store.fulfillment_create_path == "/fulfillments"


def test_pushes_pending_lists_what_is_owed(sandbox, store):
    orders = open_orders(store)
    never = add_shipment(store, orders[0])
    settled = add_shipment(store, orders[1])
    changed = add_shipment(store, orders[2])
    for shipment in (settled, changed):
        shipment_push(shipment_id=shipment.pk)
    carrier_says(changed, "in_transit")  # no trigger wired: the beat must notice
    unmatched = Shipment.objects.create(store=store, tracking_number="UNMATCHED1", carrier="usps")

    owed = pushes_pending(store=store)

    assert never.pk in owed and changed.pk in owed
    assert settled.pk not in owed and unmatched.pk not in owed


def test_a_push_abandoned_by_a_dead_worker_is_owed_at_once(sandbox, store):
    from django.utils import timezone

    order = open_orders(store)[0]
    shipment = add_shipment(store, order)
    push = push_row_for(shipment=shipment, order=order)
    FulfillmentPush.objects.filter(pk=push.pk).update(state=State.IN_PROGRESS, last_attempt_at=timezone.now())
    settings = connection.settings_dict
    worker = psycopg.connect(
        host=settings["HOST"], port=settings["PORT"] or 5432, user=settings["USER"], dbname=settings["NAME"],
        autocommit=True,
    )
    worker.execute("SELECT pg_advisory_lock(%s)", [push.lock_id])
    assert shipment.pk not in pushes_pending(store=store, include_queued=True)  # alive: its worker holds it

    worker.close()  # SIGKILL: the connection goes, and the lock with it

    assert shipment.pk in pushes_pending(store=store)
    assert shipment_push(shipment_id=shipment.pk).result == PushResult.CREATED
