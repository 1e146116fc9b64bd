"""Voided labels: a channel voids a label OMA already pushed, OMA cancels that Genstore fulfillment exactly once, and
the replacement label for the same items is pushed as a new fulfillment. Against the Genstore sandbox over HTTP,
with labels reported through a channel (the real void path: withdraw_row) and PostgreSQL."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from oma.channels.connectors.base import ExternalShipmentRecord, LineRef
from oma.channels.models import Channel, ExternalShipment
from oma.channels.services import channel_create, external_shipments_receive
from oma.fulfillment.models import FulfillmentPush
from oma.fulfillment.reconciliation import Finding, reconcile_fix, store_reconcile
from oma.fulfillment.services.push import PushResult, push_row_for, shipment_push, store_pushes_drain
from oma.genstore.client import GenstoreClient
from oma.orders.models import GenstoreFulfillment, LineItem, Order
from oma.stores.models import Store
from oma.stores.services import genstore_limiter
from tests.fulfillment.conftest import add_shipment, new_number, open_orders
from tracking.models import Shipment

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

State = FulfillmentPush.State
CANCEL = "PUT /fulfillments/{id}/cancel"


def quick_client(store: Store, **options) -> GenstoreClient:
    """The store's client, retrying at once and only twice (the tests inject failures on purpose)."""
    return GenstoreClient(
        base_url=store.resolved_api_base_url, api_version=store.api_version, access_token=store.access_token,
        limiter=genstore_limiter(), limiter_key=f"genstore:{store.domain}", bucket_capacity=1000,
        bucket_refill_per_second=1000, max_retries=options.pop("max_retries", 2), sleep=lambda _: None, **options,
    )


def label_channel(store: Store) -> Channel:
    return Channel.objects.filter(store=store, name="Label tool").first() or channel_create(
        store=store, kind="webhook", name="Label tool"
    )


def report_label(store: Store, order: Order, number: str, lines: list[tuple[LineItem, int]], *,
                 voided: bool = False) -> str:
    """The channel reports a label (or its void), as its webhook or a poll would; the outcome."""
    record = ExternalShipmentRecord(
        external_order_id=order.order_id, tracking_number=number, carrier="usps",
        lines=tuple(LineRef(line_item_id=line.line_item_id, quantity=quantity) for line, quantity in lines),
        status="voided" if voided else "shipped", voided=voided,
    )
    summary = external_shipments_receive(channel=label_channel(store), records=[record])
    [outcome] = summary.outcomes
    return outcome.outcome


def all_lines(order: Order) -> list[tuple[LineItem, int]]:
    return [(line, line.quantity) for line in order.line_items.order_by("pk")]


def fulfillment(sandbox, order: Order, number: str) -> dict:
    [found] = [f for f in sandbox.fulfillments("shop1", order.order_id) if f["trackingNumber"] == number]
    return found


def cancels(sandbox) -> tuple[int, int]:
    """(PUT cancel requests received, fulfillments actually cancelled) at the sandbox."""
    stats = sandbox.stats("shop1")
    return stats["by_endpoint"].get(CANCEL, 0), stats["fulfillments_cancelled"]


def pushed_label(sandbox, store: Store, *, lines_at_least: int = 1) -> tuple[Order, Shipment]:
    """An order whose every item travels in one channel label, pushed to Genstore."""
    order = open_orders(store, lines_at_least=lines_at_least)[0]
    number = new_number()
    assert report_label(store, order, number, all_lines(order)) == "created"
    shipment = Shipment.objects.get(store=store, tracking_number=number)
    assert shipment.source == Shipment.Source.WEBHOOK
    assert shipment_push(shipment_id=shipment.pk, client=quick_client(store)).result == PushResult.CREATED
    assert fulfillment(sandbox, order, number)["status"] == "success"
    return order, shipment


def void(store: Store, order: Order, shipment: Shipment) -> Shipment:
    assert report_label(store, order, shipment.tracking_number, all_lines(order), voided=True) == "withdrawn"
    shipment.refresh_from_db()
    assert shipment.status == "cancelled"
    return shipment


def test_a_voided_label_cancels_its_fulfillment_once_and_the_replacement_is_created(sandbox, store):
    order, first = pushed_label(sandbox, store, lines_at_least=2)
    void(store, order, first)

    outcome = shipment_push(shipment_id=first.pk, client=quick_client(store))

    assert outcome.result == PushResult.CANCELLED
    assert outcome.requests == 1  # the mirror knew the fulfillment was live: no read before the PUT
    assert cancels(sandbox) == (1, 1)
    assert fulfillment(sandbox, order, first.tracking_number)["status"] == "cancelled"
    push = FulfillmentPush.objects.get(shipment=first)
    assert push.state == State.CANCELLED and push.cancelled_at and push.cancel_sent_at
    assert GenstoreFulfillment.objects.get(store=store, fulfill_id=push.fulfill_id).status == "cancelled"

    # The same void delivered again changes nothing; pushing again sends nothing.
    assert report_label(store, order, first.tracking_number, all_lines(order), voided=True) == "duplicate"
    again = shipment_push(shipment_id=first.pk, client=quick_client(store))
    assert (again.result, again.requests) == (PushResult.CANCELLED, 0)
    forced = shipment_push(shipment_id=first.pk, client=quick_client(store), force=True)
    assert forced.result == PushResult.CANCELLED and forced.requests == 1  # read back, nothing written
    assert cancels(sandbox) == (1, 1)

    # The replacement label for the same items: a new fulfillment, within fulfillableQuantity again.
    number = new_number()
    assert report_label(store, order, number, all_lines(order)) == "created"
    replacement = Shipment.objects.get(store=store, tracking_number=number)
    assert shipment_push(shipment_id=replacement.pk, client=quick_client(store)).result == PushResult.CREATED
    created = fulfillment(sandbox, order, number)
    assert created["status"] == "success"
    assert created["lineItems"] == [{"id": line.line_item_id, "quantity": qty} for line, qty in all_lines(order)]
    assert cancels(sandbox) == (1, 1)


def test_a_reissue_reported_while_the_voided_fulfillment_is_live_is_matched_at_once(sandbox, store):
    order, first = pushed_label(sandbox, store)
    void(store, order, first)
    number = new_number()
    # The voided label's still-live Genstore fulfillment ships nothing (its cancel is owed): the reissue matches.
    assert report_label(store, order, number, all_lines(order)) == "created"

    assert shipment_push(shipment_id=first.pk, client=quick_client(store)).result == PushResult.CANCELLED

    record = ExternalShipment.objects.get(tracking_number=number)
    assert record.state == ExternalShipment.State.MATCHED
    replacement = Shipment.objects.get(store=store, tracking_number=number)
    assert shipment_push(shipment_id=replacement.pk, client=quick_client(store)).result == PushResult.CREATED
    assert fulfillment(sandbox, order, number)["status"] == "success"
    assert cancels(sandbox) == (1, 1)


def test_the_replacement_pushed_first_runs_the_cancel_it_needs_before_creating(sandbox, store):
    order, first = pushed_label(sandbox, store)
    void(store, order, first)
    replacement = add_shipment(store, order)  # a new shipment on the same lines (entered by hand, say)
    number = replacement.tracking_number

    # Both are owed; the replacement happens to be taken first (another lane, a forced push...).
    outcome = shipment_push(shipment_id=replacement.pk, client=quick_client(store))

    assert outcome.result == PushResult.CREATED
    assert cancels(sandbox) == (1, 1)
    assert fulfillment(sandbox, order, first.tracking_number)["status"] == "cancelled"
    assert fulfillment(sandbox, order, number)["status"] == "success"
    assert FulfillmentPush.objects.get(shipment=first).state == State.CANCELLED
    # The voided label's own push finds its work done.
    later = shipment_push(shipment_id=first.pk, client=quick_client(store))
    assert (later.result, later.requests) == (PushResult.CANCELLED, 0)
    assert cancels(sandbox) == (1, 1)


def test_a_store_drain_cancels_and_creates_whatever_order_it_takes_them_in(sandbox, store):
    orders = open_orders(store)[:3]
    firsts = []
    for order in orders:
        number = new_number()
        assert report_label(store, order, number, all_lines(order)) == "created"
        firsts.append(Shipment.objects.get(store=store, tracking_number=number))
    assert store_pushes_drain(store=store, client=quick_client(store)).results == {"created": 3}
    replacements = []
    for order, first in zip(orders, firsts, strict=True):
        void(store, order, first)
        replacements.append(add_shipment(store, order).tracking_number)

    drained = store_pushes_drain(store=store, client=quick_client(store))

    assert drained.results == {"cancelled": 3, "created": 3}
    assert cancels(sandbox) == (3, 3)
    for order, first, number in zip(orders, firsts, replacements, strict=True):
        assert fulfillment(sandbox, order, first.tracking_number)["status"] == "cancelled"
        assert fulfillment(sandbox, order, number)["status"] == "success"
    assert store_pushes_drain(store=store, client=quick_client(store)).pushed == 0


def test_a_replacement_waits_while_another_worker_is_cancelling_then_goes(sandbox, store):
    order, first = pushed_label(sandbox, store)
    void(store, order, first)
    replacement = add_shipment(store, order)
    first_push = FulfillmentPush.objects.get(shipment=first)
    settings = connection.settings_dict
    other = psycopg.connect(host=settings["HOST"], port=settings["PORT"] or 5432, user=settings["USER"],
                            dbname=settings["NAME"], autocommit=True)
    try:
        other.execute("SELECT pg_advisory_lock(%s)", [first_push.lock_id])  # that worker holds the cancel
        waiting = shipment_push(shipment_id=replacement.pk, client=quick_client(store))
    finally:
        other.close()

    assert waiting.result == PushResult.RETRY  # not failed on fulfillableQuantity, not given up
    row = FulfillmentPush.objects.get(shipment=replacement)
    assert row.state == State.PENDING and row.next_attempt_at and "being cancelled" in row.state_reason
    assert cancels(sandbox) == (0, 0)
    assert [f["trackingNumber"] for f in sandbox.fulfillments("shop1", order.order_id)] == [first.tracking_number]

    # The cancel's own push goes through and makes the waiting replacement due at once.
    assert shipment_push(shipment_id=first.pk, client=quick_client(store)).result == PushResult.CANCELLED
    row.refresh_from_db()
    assert row.state == State.PENDING and row.next_attempt_at is None
    assert shipment_push(shipment_id=replacement.pk, client=quick_client(store)).result == PushResult.CREATED
    assert cancels(sandbox) == (1, 1)


def test_a_cancel_answered_502_after_it_was_applied_is_recorded_once(sandbox, store):
    order, first = pushed_label(sandbox, store)
    void(store, order, first)
    sandbox.set_faults(write_error_rate=1.0)  # every write is applied, then answered 502
    try:
        outcome = shipment_push(shipment_id=first.pk, client=quick_client(store))
    finally:
        sandbox.clear_faults()

    # The client retried the idempotent PUT; Genstore said "already cancelled" (422); the push read it back.
    assert outcome.result == PushResult.CANCELLED
    assert cancels(sandbox) == (2, 1)
    push = FulfillmentPush.objects.get(shipment=first)
    assert push.state == State.CANCELLED and push.last_error == ""
    assert any("reading the fulfillment back" in step["message"] for step in push.log)


def test_a_retry_after_an_unanswered_cancel_reads_the_fulfillment_before_sending_again(sandbox, store):
    order, first = pushed_label(sandbox, store)
    void(store, order, first)
    sandbox.set_faults(slow_rate=1.0, slow_seconds=1.5)  # applied, answered after the client gave up
    try:
        outcome = shipment_push(shipment_id=first.pk, client=quick_client(store, read_timeout=0.3, max_retries=0))
    finally:
        sandbox.clear_faults()
    assert outcome.result == PushResult.RETRY
    push = FulfillmentPush.objects.get(shipment=first)
    assert push.state == State.PENDING and push.cancel_sent_at is not None and push.next_attempt_at
    assert cancels(sandbox) == (1, 1)  # it did happen

    retried = shipment_push(shipment_id=first.pk, client=quick_client(store))

    assert retried.result == PushResult.CANCELLED
    assert retried.requests == 1  # the order's fulfillments read, no second PUT
    assert cancels(sandbox) == (1, 1)


def test_a_worker_killed_between_the_cancel_and_its_record_does_not_cancel_twice(sandbox, store):
    order, first = pushed_label(sandbox, store)
    void(store, order, first)
    push = FulfillmentPush.objects.get(shipment=first)
    # The dead worker's footprint: the intent stamped, the PUT applied at Genstore, nothing recorded after it.
    FulfillmentPush.objects.filter(pk=push.pk).update(state=State.IN_PROGRESS, cancel_sent_at=timezone.now())
    quick_client(store).cancel_fulfillment(push.fulfill_id)
    assert cancels(sandbox) == (1, 1)

    outcome = shipment_push(shipment_id=first.pk, client=quick_client(store))

    assert outcome.result == PushResult.CANCELLED and outcome.requests == 1
    assert cancels(sandbox) == (1, 1)


def test_a_voided_label_whose_create_may_have_happened_is_looked_for_and_cancelled(sandbox, store):
    order = open_orders(store)[0]
    number = new_number()
    assert report_label(store, order, number, all_lines(order)) == "created"
    shipment = Shipment.objects.get(store=store, tracking_number=number)
    # A worker created the fulfillment and died before saving its id.
    created = quick_client(store).create_fulfillment(
        order_id=order.order_id, line_items=[(line.line_item_id, qty) for line, qty in all_lines(order)],
        tracking_number=number, tracking_company="USPS", tracking_url=None, notify_customer=False,
    )
    push = push_row_for(shipment=shipment, order=order)
    FulfillmentPush.objects.filter(pk=push.pk).update(state=State.IN_PROGRESS, create_sent_at=timezone.now())
    void(store, order, shipment)

    assert shipment_push(shipment_id=shipment.pk, client=quick_client(store)).result == PushResult.CANCELLED
    assert fulfillment(sandbox, order, number)["status"] == "cancelled"
    assert FulfillmentPush.objects.get(pk=push.pk).fulfill_id == created.fulfill_id
    assert cancels(sandbox) == (1, 1)


def test_a_voided_label_never_pushed_costs_nothing(sandbox, store):
    order = open_orders(store)[0]
    number = new_number()
    assert report_label(store, order, number, all_lines(order)) == "created"
    shipment = void(store, order, Shipment.objects.get(store=store, tracking_number=number))
    before = sandbox.stats("shop1")["requests"]
    outcome = shipment_push(shipment_id=shipment.pk, client=quick_client(store))
    assert outcome.result == PushResult.SKIPPED and "voided" in outcome.detail
    assert sandbox.stats("shop1")["requests"] == before


def test_a_genstore_shipment_marked_cancelled_never_cancels_the_merchants_fulfillment(sandbox, store):
    order = open_orders(store)[0]
    shipment = add_shipment(store, order)
    # Pushed, then a `genstore` shipment (OMA never creates a fulfillment for one).
    assert shipment_push(shipment_id=shipment.pk, client=quick_client(store)).result == PushResult.CREATED
    Shipment.objects.filter(pk=shipment.pk).update(source=Shipment.Source.GENSTORE)
    Shipment.objects.filter(pk=shipment.pk).update(status="cancelled", next_poll_at=None)

    outcome = shipment_push(shipment_id=shipment.pk, client=quick_client(store))

    assert outcome.result == PushResult.SKIPPED
    assert cancels(sandbox) == (0, 0)
    assert fulfillment(sandbox, order, shipment.tracking_number)["status"] == "success"
    assert not [d for d in store_reconcile(store=store).disagreements
                if d.kind == Finding.FULFILLMENT_OF_VOIDED_LABEL]


def test_reconciliation_reports_a_live_fulfillment_of_a_voided_label_and_fix_cancels_it_once(sandbox, store):
    order, first = pushed_label(sandbox, store)
    # What an older OMA left: the label voided, the push skipped ("Genstore not updated"), the fulfillment live.
    Shipment.objects.filter(pk=first.pk).update(status="cancelled", next_poll_at=None)
    FulfillmentPush.objects.filter(shipment=first).update(
        state=State.SKIPPED, source_status="cancelled", state_reason="Genstore not updated: label voided"
    )
    assert shipment_push(shipment_id=first.pk, client=quick_client(store)).requests == 0  # settled: left alone

    report = store_reconcile(store=store)
    [finding] = [d for d in report.disagreements if d.kind == Finding.FULFILLMENT_OF_VOIDED_LABEL]
    assert finding.fixable and finding.shipment_id == first.pk and finding.order_ids == (order.order_id,)
    assert "push skipped" in finding.detail

    fixed = reconcile_fix(report=report, client=quick_client(store))

    assert fixed.by_result.get("cancelled") == 1
    assert cancels(sandbox) == (1, 1)
    after = store_reconcile(store=store)
    assert not [d for d in after.disagreements if d.kind == Finding.FULFILLMENT_OF_VOIDED_LABEL]
    # A second fix finds nothing to do.
    assert reconcile_fix(report=after, client=quick_client(store)).by_result.get("cancelled") is None
    assert cancels(sandbox) == (1, 1)
