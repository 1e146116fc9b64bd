"""Pushes of `genstore` shipments (the merchant's own Genstore fulfillments, issue 16 item 1): update_tracking names
the shipmentStatus alone, so the merchant's number, company and link stay theirs; a forced push never creates a
fulfillment for one; and every orders/{id}/fulfillments read a push makes tracks the merchant's fulfillments. The
Genstore sandbox answers over HTTP; pushes run eagerly after the commit, as a worker would run them."""

from __future__ import annotations

import pytest

from oma.fulfillment.models import FulfillmentPush
from oma.fulfillment.services.push import PushResult, shipment_push
from oma.fulfillment.tasks import shipments_push_enqueue
from oma.orders.models import GenstoreFulfillment, Order, SyncRun
from oma.orders.services import orders_sweep
from oma.sandbox.server import GenstoreSandbox
from oma.sandbox.shop import recompute_fulfillment_status
from tests.fulfillment.conftest import add_shipment, carrier_says, open_orders
from tests.fulfillment.test_genstore_shipments import GENSTORE, State, after_commit, sweep
from tracking.models import Shipment
from tracking.numbers import normalize
from tracking.sandbox import numbers_for

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

def fulfil(sandbox: GenstoreSandbox, order: Order, number: str, company: str, **fields) -> dict:
    return sandbox.fulfil_as_merchant("shop1", order.order_id, tracking_number=number, tracking_company=company,
                                      **fields)


def in_genstore(sandbox: GenstoreSandbox, order: Order, fulfill_id: str) -> dict:
    return next(f for f in sandbox.fulfillments("shop1", order.order_id) if f["fulfillId"] == fulfill_id)


def vanish(sandbox: GenstoreSandbox, order: Order, fulfill_id: str) -> None:
    """The fulfillment disappears from Genstore (deleted behind the API's back), its items fulfillable again: a
    create for them would succeed."""
    with sandbox._lock:
        shop = sandbox._shop("shop1")
        index = sandbox._index(shop, order.order_id)
        data = shop.order_for_write(index)
        gone = next(f for f in data["fulfillments"] if f["fulfillId"] == fulfill_id)
        data["fulfillments"] = [f for f in data["fulfillments"] if f["fulfillId"] != fulfill_id]
        freed = {str(item["id"]): int(item["quantity"]) for item in gone["lineItems"]}
        for line in data["lineItems"]:
            line["fulfillableQuantity"] += freed.get(str(line["id"]), 0)
        recompute_fulfillment_status(data)
        shop.changed(index)


def test_a_status_push_keeps_the_merchants_number_company_and_link(sandbox, store, eager_celery):
    order = open_orders(store)[0]
    number = next(numbers_for("dhl", 1, start=2101))
    spelled = f"{number[:4]} {number[4:]}"  # the merchant's spelling, with a space
    link = f"https://www.dhl.com/track?piece={number}&lang=fr"
    made = fulfil(sandbox, order, spelled, "DHL Express", tracking_url=link)
    sweep(store)
    shipment = Shipment.objects.get(store=store, tracking_number=number)
    assert (shipment.source, shipment.carrier) == (GENSTORE, "dhl")
    updated = sandbox.stats("shop1")["fulfillments_updated"]

    with after_commit():
        carrier_says(shipment, "in_transit", hours_ago=3)
    with after_commit():
        carrier_says(shipment, "delivered")

    now = in_genstore(sandbox, order, made["fulfillId"])
    assert (now["trackingNumber"], now["trackingCompany"], now["trackingUrl"], now["shipmentStatus"]) == (
        spelled, "DHL Express", link, "delivered"
    )
    assert sandbox.stats("shop1")["fulfillments_updated"] - updated == 2
    push = FulfillmentPush.objects.get(shipment=shipment)
    # The row says what Genstore holds: the merchant's values, and the status OMA moved.
    assert (push.state, push.tracking_number, push.tracking_company, push.tracking_url, push.shipment_status) == (
        State.SUCCEEDED, spelled, "DHL Express", link, "delivered"
    )
    assert "shipmentStatus only" in push.log[-1]["message"]
    mirrored = GenstoreFulfillment.objects.get(fulfill_id=made["fulfillId"])
    assert (mirrored.tracking_company, mirrored.shipment_status) == ("DHL Express", "delivered")
    # A forced push re-reads Genstore and finds nothing to write.
    assert shipment_push(shipment_id=shipment.pk, force=True).result == PushResult.UNCHANGED
    assert sandbox.stats("shop1")["fulfillments_updated"] - updated == 2


def test_a_number_changed_in_genstore_is_never_written_back(sandbox, store, eager_celery):
    order, other = open_orders(store)[:2]
    old, new, newer = numbers_for("ups", 3, start=2201)
    made = fulfil(sandbox, order, old, "UPS")
    sweep(store)
    shipment = Shipment.objects.get(store=store, tracking_number=old)

    # The merchant changes the number in Genstore; OMA has not read the order since (its mirror still says `old`)
    # when the carrier moves the old parcel on and the drain pushes its status.
    sandbox.edit_fulfillment_as_merchant("shop1", made["fulfillId"], trackingNumber=new)
    assert normalize(GenstoreFulfillment.objects.get(fulfill_id=made["fulfillId"]).tracking_number) == old
    with after_commit():
        carrier_says(shipment, "in_transit")

    assert in_genstore(sandbox, order, made["fulfillId"])["trackingNumber"] == new
    push = FulfillmentPush.objects.get(shipment=shipment)
    assert push.state == State.SKIPPED and f"now carries {new}" in push.state_reason
    # Genstore's answer showed the change: mirrored at once, and the next read of the order retires the shipment.
    assert normalize(GenstoreFulfillment.objects.get(fulfill_id=made["fulfillId"]).tracking_number) == new
    sweep(store)
    shipment.refresh_from_db()
    assert shipment.order_id is None
    second = Shipment.objects.get(store=store, tracking_number=new)
    assert (second.source, second.order_id) == (GENSTORE, order.pk)

    # Changed again, and a forced push (re-reading Genstore) of the shipment it had: no update at all, the
    # number stays the merchant's, and the read itself tracks the newer number.
    sandbox.edit_fulfillment_as_merchant("shop1", made["fulfillId"], trackingNumber=newer)
    updated = sandbox.stats("shop1")["fulfillments_updated"]
    outcome = shipment_push(shipment_id=second.pk, force=True)
    assert outcome.result == PushResult.SKIPPED, outcome.detail
    assert sandbox.stats("shop1")["fulfillments_updated"] == updated
    assert in_genstore(sandbox, order, made["fulfillId"])["trackingNumber"] == newer
    second.refresh_from_db()
    assert second.order_id is None  # retired by the read
    third = Shipment.objects.get(store=store, tracking_number=newer)
    assert (third.source, third.order_id) == (GENSTORE, order.pk)
    assert FulfillmentPush.objects.get(shipment=third).fulfill_id == made["fulfillId"]
    # The mirror's number differs from the shipment's (nothing re-read it): nothing is sent either.
    other_fulfillment = fulfil(sandbox, other, next(numbers_for("ups", 1, start=2301)), "UPS")
    sweep(store)
    tracked = Shipment.objects.get(store=store, tracking_number=normalize(other_fulfillment["trackingNumber"]))
    GenstoreFulfillment.objects.filter(fulfill_id=other_fulfillment["fulfillId"]).update(tracking_number="1Z0NOTOURS")
    updated = sandbox.stats("shop1")["fulfillments_updated"]
    with after_commit():
        carrier_says(tracked, "out_for_delivery")
    assert sandbox.stats("shop1")["fulfillments_updated"] == updated
    assert FulfillmentPush.objects.get(shipment=tracked).state == State.SKIPPED
    assert sandbox.stats("shop1")["fulfillments_created"] == 0


def test_a_forced_push_of_a_genstore_shipment_whose_fulfillment_vanished_creates_nothing(
    sandbox, store, eager_celery
):
    order = open_orders(store)[0]
    number = next(numbers_for("fedex", 1, start=2401))
    made = fulfil(sandbox, order, number, "FedEx")
    sweep(store)
    shipment = Shipment.objects.get(store=store, tracking_number=number)
    vanish(sandbox, order, made["fulfillId"])
    assert sandbox.fulfillments("shop1", order.order_id) == []
    # The mirror sees the items fulfillable again (a sweep, its hooks not run): a create would be planned.
    orders_sweep(store=store, kind=SyncRun.Kind.INCREMENTAL)

    # "Push tracking to Genstore now" (admin), as reconciliation's fixes and push_fulfillments force it too.
    with after_commit():
        shipments_push_enqueue(shipment_ids=[shipment.pk], force=True)

    push = FulfillmentPush.objects.get(shipment=shipment)
    assert push.state == State.SKIPPED and "gone from Genstore" in push.state_reason, push.state_reason
    assert push.fulfill_id == made["fulfillId"]
    assert sandbox.fulfillments("shop1", order.order_id) == []
    assert sandbox.stats("shop1")["fulfillments_created"] == 0

    # A carrier update later: still nothing created (Genstore does not know the fulfillment: the push fails).
    with after_commit():
        carrier_says(shipment, "in_transit")
    assert FulfillmentPush.objects.get(shipment=shipment).state == State.FAILED
    # Nor when its row holds no fulfillment at all (forced again, reading the order first).
    FulfillmentPush.objects.filter(pk=push.pk).update(fulfill_id="", state=State.PENDING)
    outcome = shipment_push(shipment_id=shipment.pk, force=True)
    assert outcome.result == PushResult.SKIPPED and "never creates" in outcome.detail, outcome.detail
    assert sandbox.fulfillments("shop1", order.order_id) == []
    assert sandbox.stats("shop1")["fulfillments_created"] == 0


def test_a_fulfillments_read_by_a_push_tracks_the_merchants_own(sandbox, store, eager_celery):
    order = open_orders(store, lines_at_least=2)[0]
    first, second = order.line_items.order_by("pk")[:2]
    with after_commit():
        ours = add_shipment(store, order, [(first, first.quantity)])  # OMA creates this fulfillment
    [created] = sandbox.fulfillments("shop1", order.order_id)
    # The merchant ships the other line by hand in Genstore; OMA has not read the order since.
    number = next(numbers_for("usps", 1, start=2501))
    theirs = fulfil(sandbox, order, number, "USPS", line_items=[(second.line_item_id, second.quantity)])
    assert not Shipment.objects.filter(tracking_number=number).exists()

    outcome = shipment_push(shipment_id=ours.pk, force=True)  # reads orders/{id}/fulfillments

    assert outcome.result == PushResult.UNCHANGED, outcome.detail
    tracked = Shipment.objects.get(store=store, tracking_number=number)
    assert (tracked.source, tracked.order_id) == (GENSTORE, order.pk)
    push = FulfillmentPush.objects.get(shipment=tracked)
    assert (push.fulfill_id, push.adopted, push.state) == (theirs["fulfillId"], True, State.SUCCEEDED)
    assert GenstoreFulfillment.objects.filter(fulfill_id=theirs["fulfillId"]).exists()
    # OMA's own fulfillment stays OMA's: not a second shipment.
    assert FulfillmentPush.objects.get(shipment=ours).fulfill_id == created["fulfillId"]
    assert Shipment.objects.filter(store=store, order=order).count() == 2
    assert sandbox.stats("shop1")["fulfillments_created"] == 1


def test_an_ambiguous_creates_read_tracks_the_merchants_fulfillment_never_ours(sandbox, store, eager_celery):
    order = open_orders(store, lines_at_least=2)[0]
    first, second = order.line_items.order_by("pk")[:2]
    number = next(numbers_for("usps", 1, start=2601))
    theirs = fulfil(sandbox, order, number, "USPS", line_items=[(second.line_item_id, second.quantity)])
    orders_sweep(store=store, kind=SyncRun.Kind.INCREMENTAL)  # mirrored, no hook ran: not tracked yet
    assert not Shipment.objects.filter(tracking_number=number).exists()

    sandbox.set_faults(write_error_rate=1.0)  # the create is applied, and answered 502
    try:
        with after_commit():
            ours = add_shipment(store, order, [(first, first.quantity)])
    finally:
        sandbox.set_faults()

    push = FulfillmentPush.objects.get(shipment=ours)
    assert (push.state, push.adopted) == (State.SUCCEEDED, False), push.state_reason
    mine = next(f for f in sandbox.fulfillments("shop1", order.order_id) if f["fulfillId"] != theirs["fulfillId"])
    assert push.fulfill_id == mine["fulfillId"]
    tracked = Shipment.objects.get(store=store, tracking_number=number)
    assert (tracked.source, tracked.order_id) == (GENSTORE, order.pk)
    assert FulfillmentPush.objects.get(shipment=tracked).fulfill_id == theirs["fulfillId"]
    assert not Shipment.objects.filter(store=store, source=GENSTORE, tracking_number=ours.tracking_number).exists()
    assert sandbox.stats("shop1")["fulfillments_created"] == 1
