"""Genstore's own fulfillments tracked as shipments (issue 16, item 1): what is adopted, linked, left and retired,
what is pushed back (update_tracking only, never backwards), the sources (sweeps, orders/* webhooks, a sweep's
catch-up, orders/{id}/fulfillments reads), and that it stays set-based. The Genstore sandbox answers over HTTP;
pushes run eagerly after the commit, as a worker would run them."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext

from oma.fulfillment.models import FulfillmentPush
from oma.fulfillment.reconciliation import Finding, store_reconcile
from oma.fulfillment.services.genstore_shipments import (
    genstore_fulfillments_catch_up,
    genstore_fulfillments_track,
    order_fulfillments_record_and_track,
)
from oma.fulfillment.services.push import PushResult, pushes_pending, shipment_push
from oma.fulfillment.tracking_links import tracking_page_url_for
from oma.genstore.parsing import parse_order
from oma.merchant.tracking_page import tracking_page_for
from oma.orders.models import GenstoreFulfillment, Order, SyncRun
from oma.orders.services import orders_sweep, orders_upsert_page
from oma.stores.services import genstore_client_for
from tests.fulfillment.conftest import add_shipment, carrier_says, open_orders
from tests.genstore_sandbox import connect, start_sandbox
from tracking.models import Shipment
from tracking.numbers import normalize
from tracking.sandbox import numbers_for
from tracking.services import shipment_add

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

GENSTORE = Shipment.Source.GENSTORE
State = FulfillmentPush.State


def after_commit():
    return TestCase.captureOnCommitCallbacks(execute=True)


def sweep(store) -> None:
    """An incremental sweep, its hooks (orders_changed, the catch-up) run after its commits."""
    with after_commit():
        run = orders_sweep(store=store, kind=SyncRun.Kind.INCREMENTAL)
    assert run.state == SyncRun.State.SUCCEEDED, run.error_message


def writes(sandbox) -> dict[str, int]:
    """Genstore API writes the sandbox saw, by endpoint (the merchant's own edits are not API calls)."""
    return {
        endpoint: count for endpoint, count in sandbox.stats("shop1")["by_endpoint"].items()
        if endpoint.split(" ")[0] in ("POST", "PUT", "DELETE")
    }


def live_numbers_in_genstore(sandbox) -> set[tuple[str, str]]:
    """(orderId, number) of every live fulfillment with a number, as the sandbox holds them."""
    return {
        (str(order["orderId"]), normalize(f["trackingNumber"]))
        for order in sandbox.orders("shop1")
        for f in order["fulfillments"]
        if f["trackingNumber"] and f["status"] not in ("cancelled", "error", "failure")
    }


def genstore_shipments(store) -> set[tuple[str, str]]:
    return set(
        Shipment.objects.filter(store=store, source=GENSTORE, order__isnull=False).values_list(
            "order__order_id", "tracking_number"
        )
    )


def fulfil(sandbox, order: Order, number: str, company: str = "UPS", **fields) -> dict:
    return sandbox.fulfil_as_merchant(
        "shop1", order.order_id, tracking_number=number, tracking_company=company, **fields
    )


def test_merchant_fulfillments_become_shipments_linked_to_them(sandbox, store, eager_celery):
    orders = open_orders(store, lines_at_least=2)[:4]
    ups, fedex, usps, dhl = (next(numbers_for(carrier, 1, start=501)) for carrier in ("ups", "fedex", "usps", "dhl"))
    branded = tracking_page_url_for(orders[2], public_url="https://oma.example.com")
    first_line = orders[0].line_items.order_by("pk").first()
    made = [
        fulfil(sandbox, orders[0], ups, "UPS", tracking_url=f"https://www.ups.com/track?tracknum={ups}",
               line_items=[(first_line.line_item_id, first_line.quantity)]),
        fulfil(sandbox, orders[1], f" {fedex[:4]}-{fedex[4:]} ", "FedEx", shipment_status="in_transit"),
        fulfil(sandbox, orders[2], usps, "USPS", tracking_url=branded),  # OMA's own link: never the carrier's
        fulfil(sandbox, orders[3], dhl, "DHL Express"),
    ]
    before = writes(sandbox)

    sweep(store)

    # Every live fulfillment with a number is tracked: these four and the generated orders' own.
    assert genstore_shipments(store) == live_numbers_in_genstore(sandbox)
    for order, fulfillment, number, carrier in zip(orders, made, (ups, fedex, usps, dhl),
                                                   ("ups", "fedex", "usps", "dhl"), strict=True):
        shipment = Shipment.objects.get(store=store, tracking_number=number)
        assert (shipment.source, shipment.order_id, shipment.carrier, shipment.status) == (
            GENSTORE, order.pk, carrier, "pending"
        )
        assert shipment.next_poll_at is not None
        push = FulfillmentPush.objects.get(shipment=shipment)
        assert (push.fulfill_id, push.adopted, push.state, push.order_id) == (
            fulfillment["fulfillId"], True, State.SUCCEEDED, order.pk
        )
        # What Genstore holds (the mirror's copy) is what was pushed: nothing is owed until the carrier moves.
        mirrored = GenstoreFulfillment.objects.get(fulfill_id=fulfillment["fulfillId"])
        assert (push.tracking_number, push.tracking_company, push.tracking_url, push.shipment_status) == (
            mirrored.tracking_number, mirrored.tracking_company, mirrored.tracking_url, mirrored.shipment_status
        )
        assert normalize(mirrored.tracking_number) == number
        assert sorted((line.line_item.line_item_id, line.quantity) for line in shipment.lines.all()) == sorted(
            (item["id"], item["quantity"]) for item in fulfillment["lineItems"]
        )
    assert Shipment.objects.get(tracking_number=ups).tracking_url == f"https://www.ups.com/track?tracknum={ups}"
    usps_url = Shipment.objects.get(tracking_number=usps).tracking_url
    assert usps_url.startswith("https://tools.usps.com/") and "/track/" not in usps_url
    assert Shipment.objects.get(tracking_number=dhl).tracking_url == ""  # none in Genstore: the carrier's page shows
    assert pushes_pending(store=store, include_queued=True) == []
    assert writes(sandbox) == before  # nothing was written to Genstore
    report = store_reconcile(store=store)
    assert report.count(Finding.UNKNOWN_TRACKING_NUMBER) == 0, report.disagreements[:3]

    # Tracking them again changes nothing.
    count = Shipment.objects.count()
    sweep(store)
    assert genstore_fulfillments_catch_up(store=store).shipment_ids == []
    assert Shipment.objects.count() == count


def test_the_carrier_status_is_pushed_with_update_tracking_only_and_never_backwards(sandbox, store, eager_celery):
    order, ahead = open_orders(store)[:2]
    number, other = numbers_for("ups", 2, start=601)
    fulfillment = fulfil(sandbox, order, number)
    fulfil(sandbox, ahead, other, shipment_status="delivered")  # the merchant marked it delivered already
    sweep(store)
    shipment = Shipment.objects.get(store=store, tracking_number=number)
    before = sandbox.stats("shop1")

    with after_commit():
        carrier_says(shipment, "in_transit", hours_ago=2)
    [now] = sandbox.fulfillments("shop1", order.order_id)
    assert (now["fulfillId"], now["trackingNumber"], now["shipmentStatus"]) == (
        fulfillment["fulfillId"], number, "in_transit"
    )
    with after_commit():
        carrier_says(shipment, "delivered")
    assert sandbox.fulfillments("shop1", order.order_id)[0]["shipmentStatus"] == "delivered"

    # Genstore already says delivered: a carrier still on the way moves nothing back.
    with after_commit():
        carrier_says(Shipment.objects.get(tracking_number=other), "out_for_delivery")
    assert sandbox.fulfillments("shop1", ahead.order_id)[0]["shipmentStatus"] == "delivered"
    push = FulfillmentPush.objects.get(shipment__tracking_number=other)
    assert (push.state, push.held_back_shipment_status) == (State.SUCCEEDED, "out_for_delivery")

    after = sandbox.stats("shop1")
    assert after["fulfillments_updated"] - before["fulfillments_updated"] == 2
    assert (after["fulfillments_created"], after["fulfillments_cancelled"]) == (
        before["fulfillments_created"], before["fulfillments_cancelled"],
    )
    assert len(sandbox.fulfillments("shop1", order.order_id)) == 1
    # The second run writes nothing.
    shipment.refresh_from_db()
    assert shipment_push(shipment_id=shipment.pk).result == PushResult.UNCHANGED
    assert sandbox.stats("shop1")["fulfillments_updated"] == after["fulfillments_updated"]


def test_fulfillments_oma_pushed_or_is_pushing_are_never_adopted(sandbox, store, eager_celery):
    order, creating = open_orders(store)[:2]
    with after_commit():
        pushed = add_shipment(store, order)  # OMA creates this fulfillment
    assert len(sandbox.fulfillments("shop1", order.order_id)) == 1
    # A create sent and not answered yet (its worker died): the fulfillment is in Genstore, its id not on the row.
    in_flight = Shipment.objects.create(store=store, order=creating, tracking_number="1ZINFLIGHT0000001", carrier="ups")
    FulfillmentPush.objects.create(
        key=FulfillmentPush.key_for(store_id=store.pk, order_id=creating.order_id, shipment_id=in_flight.pk),
        store=store, order=creating, shipment=in_flight, state=State.IN_PROGRESS, create_sent_at=pushed.created_at,
        tracking_number="1Z INFLIGHT 0000002",
    )
    fulfil(sandbox, creating, "1ZINFLIGHT0000002")

    sweep(store)

    assert Shipment.objects.filter(tracking_number=pushed.tracking_number).count() == 1
    assert not Shipment.objects.filter(tracking_number="1ZINFLIGHT0000002").exists()
    assert not Shipment.objects.filter(source=GENSTORE, order__in=[order, creating]).exists()


def test_a_number_the_store_tracks_already_is_never_a_second_shipment(sandbox, store, eager_celery):
    unmatched_order, mine, theirs = open_orders(store)[:3]
    unmatched, same, elsewhere = numbers_for("usps", 3, start=701)
    # A CSV row that matched no order, a shipment already on this order, one on another order.
    loose = shipment_add(store=store, tracking_number=unmatched, carrier="usps", source=Shipment.Source.CSV)
    with after_commit():
        own = add_shipment(store, mine, number=same)
        other = add_shipment(store, theirs, number=elsewhere)
    created = sandbox.stats("shop1")["fulfillments_created"]
    fulfil(sandbox, unmatched_order, unmatched, "USPS")
    line = mine.line_items.order_by("pk").first()
    fulfil(sandbox, mine, same, "USPS", line_items=[(line.line_item_id, 1)])  # by hand too: one number twice
    fulfil(sandbox, mine, elsewhere, "USPS", line_items=[(line.line_item_id, 1)])

    sweep(store)

    loose.refresh_from_db()
    assert (loose.order_id, loose.source) == (unmatched_order.pk, Shipment.Source.CSV)
    # Linked, its own push adopts the merchant's fulfillment by number instead of creating one.
    push = FulfillmentPush.objects.get(shipment=loose)
    assert (push.state, push.adopted) == (State.SUCCEEDED, True)
    assert sandbox.stats("shop1")["fulfillments_created"] == created
    for shipment, order in ((own, mine), (other, theirs)):
        shipment.refresh_from_db()
        assert (shipment.order_id, shipment.source) == (order.pk, Shipment.Source.CSV)
    assert Shipment.objects.filter(tracking_number__in=[unmatched, same, elsewhere]).count() == 3


def test_a_channel_shipment_whose_push_found_the_items_fulfilled_takes_the_merchants_fulfillment(
    sandbox, store, eager_celery
):
    order = open_orders(store)[0]
    number = next(numbers_for("fedex", 1, start=751))
    fulfillment = fulfil(sandbox, order, number, "FedEx")
    orders_sweep(store=store, kind=SyncRun.Kind.INCREMENTAL)  # mirrored, no hook ran (outside any commit)
    with after_commit():
        shipment = add_shipment(store, order, number=number, carrier="fedex")  # the channel reports it too
    push = FulfillmentPush.objects.get(shipment=shipment)
    assert (push.state, push.fulfill_id) == (State.FAILED, "")  # judged on the mirror: nothing left to fulfil

    sweep(store)  # the order is unchanged: the sweep's catch-up finds the fulfillment nobody holds

    push.refresh_from_db()
    assert (push.fulfill_id, push.adopted, push.state) == (fulfillment["fulfillId"], True, State.SUCCEEDED)
    assert Shipment.objects.filter(tracking_number=number).count() == 1
    with after_commit():
        carrier_says(shipment, "out_for_delivery")
    [now] = sandbox.fulfillments("shop1", order.order_id)
    assert (now["fulfillId"], now["shipmentStatus"]) == (fulfillment["fulfillId"], "out_for_delivery")
    assert sandbox.stats("shop1")["fulfillments_created"] == 0


def test_dead_and_numberless_fulfillments_are_not_tracked(sandbox, store, eager_celery):
    orders = open_orders(store)[:3]
    fulfil(sandbox, orders[0], None)
    fulfil(sandbox, orders[1], "N/A")
    cancelled = fulfil(sandbox, orders[2], next(numbers_for("fedex", 1, start=801)), "FedEx")
    sandbox.edit_fulfillment_as_merchant("shop1", cancelled["fulfillId"], status="cancelled")

    sweep(store)

    assert not Shipment.objects.filter(order__in=orders).exists()


def test_a_changed_number_retires_the_old_shipment_and_tracks_the_new_one(sandbox, store, eager_celery):
    order = open_orders(store)[0]
    old, new = numbers_for("dhl", 2, start=901)
    fulfillment = fulfil(sandbox, order, old, "DHL")
    sweep(store)
    first = Shipment.objects.get(tracking_number=old)
    with after_commit():
        carrier_says(first, "in_transit", hours_ago=5)  # pushed: Genstore says in_transit
    before = writes(sandbox)

    sandbox.edit_fulfillment_as_merchant("shop1", fulfillment["fulfillId"], trackingNumber=new)
    sweep(store)

    first.refresh_from_db()
    assert (first.order_id, first.next_poll_at, first.status) == (None, None, "in_transit")
    assert first.events.count() == 1  # the old label's history stays readable
    retired = FulfillmentPush.objects.get(shipment=first)
    assert retired.state == State.SKIPPED
    assert f"now carries {new}" in retired.state_reason and retired.order_id == order.pk
    second = Shipment.objects.get(tracking_number=new)
    assert (second.source, second.order_id, second.carrier, second.status) == (GENSTORE, order.pk, "dhl", "pending")
    push = FulfillmentPush.objects.get(shipment=second)
    assert (push.fulfill_id, push.state, push.shipment_status) == (
        fulfillment["fulfillId"], State.SUCCEEDED, "in_transit"
    )
    assert writes(sandbox) == before
    assert [p.tracking_number for p in tracking_page_for(order).parcels] == [new]

    # The new label starts over: its first statuses do not move Genstore's fulfillment back.
    with after_commit():
        carrier_says(second, "info_received")
    assert sandbox.fulfillments("shop1", order.order_id)[0]["shipmentStatus"] == "in_transit"
    with after_commit():
        carrier_says(second, "delivered")
    [now] = sandbox.fulfillments("shop1", order.order_id)
    assert (now["fulfillId"], now["trackingNumber"], now["shipmentStatus"]) == (
        fulfillment["fulfillId"], new, "delivered"
    )

    # Genstore goes back to the first number: the retired shipment comes back, owing its status.
    sandbox.edit_fulfillment_as_merchant("shop1", fulfillment["fulfillId"], trackingNumber=old)
    sweep(store)
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.order_id, second.order_id) == (order.pk, None)
    assert FulfillmentPush.objects.get(shipment=first).state == State.SUCCEEDED


def test_a_removed_number_or_a_cancelled_fulfillment_retires_without_touching_genstore(sandbox, store, eager_celery):
    first_order, second_order, third_order = open_orders(store)[:3]
    numbers = list(numbers_for("ups", 3, start=1001))
    made = [fulfil(sandbox, order, number) for order, number in zip(
        (first_order, second_order, third_order), numbers, strict=True
    )]
    sweep(store)
    before = writes(sandbox)

    sandbox.edit_fulfillment_as_merchant("shop1", made[0]["fulfillId"], trackingNumber=None)
    sandbox.edit_fulfillment_as_merchant("shop1", made[1]["fulfillId"], status="cancelled")
    sweep(store)

    for number, order in zip(numbers[:2], (first_order, second_order), strict=True):
        shipment = Shipment.objects.get(tracking_number=number)
        assert (shipment.order_id, shipment.next_poll_at) == (None, None)
        assert FulfillmentPush.objects.get(shipment=shipment).state == State.SKIPPED
        assert tracking_page_for(order).parcels == []
        assert pushes_pending(store=store, include_queued=True) == []
        assert shipment_push(shipment_id=shipment.pk, force=True).result == PushResult.NOT_PUSHABLE
    assert writes(sandbox) == before

    # A carrier that says "cancelled" about the merchant's own parcel never cancels their fulfillment either.
    with after_commit():
        carrier_says(Shipment.objects.get(tracking_number=numbers[2]), "cancelled")
    assert sandbox.fulfillments("shop1", third_order.order_id)[0]["status"] == "success"
    assert sandbox.stats("shop1")["fulfillments_cancelled"] == 0


def test_an_existing_store_gets_its_shipments_on_the_next_sweep(sandbox, store, eager_celery):
    # The store fixture mirrored everything before this feature existed (no hook ran): nothing is tracked.
    assert not Shipment.objects.filter(store=store).exists()
    assert store_reconcile(store=store).count(Finding.UNKNOWN_TRACKING_NUMBER) > 0

    sweep(store)  # every order unchanged: no orders_changed, only the sweep's catch-up

    assert len(genstore_shipments(store)) > 10
    assert genstore_shipments(store) == live_numbers_in_genstore(sandbox)
    assert store_reconcile(store=store).count(Finding.UNKNOWN_TRACKING_NUMBER) == 0


def test_the_catch_up_retires_links_whose_change_sent_no_hook(sandbox, store, eager_celery):
    order = open_orders(store)[0]
    fulfillment = fulfil(sandbox, order, next(numbers_for("usps", 1, start=1101)), "USPS")
    sweep(store)
    sandbox.edit_fulfillment_as_merchant("shop1", fulfillment["fulfillId"], status="cancelled")
    orders_sweep(store=store, kind=SyncRun.Kind.INCREMENTAL)  # no hook ran (outside any commit)
    assert GenstoreFulfillment.objects.get(fulfill_id=fulfillment["fulfillId"]).status == "cancelled"
    # A poll that was running while it was retired wrote its next poll back.
    Shipment.objects.filter(store=store, order__isnull=True).update(next_poll_at=order.created_at)

    outcome = genstore_fulfillments_catch_up(store=store, batch=7)

    assert outcome.retired == 1
    shipment = Shipment.objects.get(tracking_number=fulfillment["trackingNumber"])
    assert (shipment.order_id, shipment.next_poll_at) == (None, None)


def test_an_orders_webhook_and_a_fulfillments_read_are_sources_too(sandbox, store, eager_celery):
    by_webhook, by_read = open_orders(store)[:2]
    first, second = numbers_for("fedex", 2, start=1201)
    fulfil(sandbox, by_webhook, first, "FedEx")
    fulfil(sandbox, by_read, second, "FedEx")

    # orders/fulfilled: the payload goes through the order mirror, as the webhook handler sends it.
    with after_commit():
        orders_upsert_page(store=store, records=[parse_order(sandbox.raw_order("shop1", by_webhook.order_id))])
    assert Shipment.objects.get(tracking_number=first).order_id == by_webhook.pk

    client = genstore_client_for(store)
    with after_commit():
        outcome = order_fulfillments_record_and_track(
            store=store, order=by_read, records=client.list_fulfillments(by_read.order_id)
        )
    assert outcome.adopted == 1
    assert Shipment.objects.get(tracking_number=second).order_id == by_read.pk
    by_read.refresh_from_db()
    assert by_read.unified_status == "awaiting_tracking"


def test_a_sweep_page_is_tracked_in_a_constant_number_of_queries(redis_client):
    sandbox = start_sandbox(orders=600, seed=5, rate_limit=None)
    try:
        store = connect(sandbox, rate_limit=(5000, 5000.0))
        assert orders_sweep(store=store, kind=SyncRun.Kind.FULL).state == SyncRun.State.SUCCEEDED  # no hooks ran
        with_fulfillments = list(
            GenstoreFulfillment.objects.filter(store=store).exclude(tracking_number="")
            .order_by("order_id").values_list("order_id", flat=True).distinct()
        )
        small, page = with_fulfillments[:5], with_fulfillments[5:255]
        assert len(page) == 250

        with CaptureQueriesContext(connection) as few:
            small_outcome = genstore_fulfillments_track(store=store, order_ids=small)
        with CaptureQueriesContext(connection) as many:
            page_outcome = genstore_fulfillments_track(store=store, order_ids=page)
    finally:
        sandbox.stop()
    assert small_outcome.adopted >= 5 and page_outcome.adopted >= 250
    assert len(many.captured_queries) == len(few.captured_queries) <= 14, [q["sql"][:80] for q in many]
