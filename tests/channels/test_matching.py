"""Matching records to orders and line items: lookup order, ties, Genstore's own fulfillments, concurrency."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from django.db import close_old_connections

from oma.channels.connectors.base import ExternalShipmentRecord, LineRef
from oma.channels.models import ExternalShipment
from oma.channels.services import (
    channel_create,
    external_shipment_rematch,
    external_shipments_match_all_waiting,
    external_shipments_receive,
)
from oma.orders.models import GenstoreFulfillment, LineItem, Order
from tests.channels.conftest import order_record, sync_orders
from tracking.models import Shipment, ShipmentLine


def record(order: str, number: str, *lines: LineRef, voided: bool = False) -> ExternalShipmentRecord:
    return ExternalShipmentRecord(external_order_id=order, tracking_number=number, lines=tuple(lines), voided=voided)


@pytest.mark.django_db
def test_source_identifier_wins_over_order_id(store):
    sync_orders(store, [order_record("555"), order_record("9001", source_identifier="555")])
    channel = channel_create(store=store, kind="webhook", name="Hook")
    outcome = external_shipments_receive(channel=channel, records=[record("555", "PARCEL000001")]).outcomes[0]
    assert outcome.outcome == "created"
    assert Shipment.objects.get().order.order_id == "9001"


@pytest.mark.django_db
def test_a_shared_source_identifier_is_settled_by_the_channels_source_names_or_refused(store):
    sync_orders(store, [
        order_record("1", source_name="amazon", source_identifier="X-1"),
        order_record("2", source_name="ebay", source_identifier="X-1"),
    ])
    amazon = channel_create(store=store, kind="webhook", name="Amazon", source_names=["amazon"])
    assert external_shipments_receive(channel=amazon, records=[record("X-1", "PARCEL000002")]).outcomes[0].outcome == (
        "created"
    )
    assert Shipment.objects.get().order.order_id == "1"
    anyone = channel_create(store=store, kind="webhook", name="Any")
    outcome = external_shipments_receive(channel=anyone, records=[record("X-1", "PARCEL000003")]).outcomes[0]
    assert outcome.outcome == "rejected" and "orders 1, 2 all have sourceIdentifier 'X-1'" in outcome.problem
    assert ExternalShipment.objects.get(tracking_number="PARCEL000003").state == "rejected"


@pytest.mark.django_db
def test_items_fulfilled_on_genstore_under_another_number_are_not_shipped_twice(store):
    (order,) = sync_orders(store, [order_record("77", [("L1", "SKU-A", 3)], fulfillable={"L1": 2})])
    GenstoreFulfillment.objects.create(store=store, order=order, fulfill_id="F1", status="success",
                                       tracking_number="elsewhere-1", line_items=[{"id": "L1", "quantity": 1}])
    channel = channel_create(store=store, kind="webhook", name="Hook")
    too_many = external_shipments_receive(channel=channel, records=[
        record("77", "PARCEL000010", LineRef(sku="SKU-A", quantity=3))]).outcomes[0]
    assert too_many.outcome == "rejected" and "(2 left of 3 ordered)" in too_many.problem
    ok = external_shipments_receive(channel=channel, records=[record("77", "PARCEL000011")]).outcomes[0]
    assert ok.outcome == "created" and Shipment.objects.get().lines.get().quantity == 2
    # Our own parcel pushed to Genstore shows up as a fulfillment too: counted once, not twice.
    GenstoreFulfillment.objects.create(store=store, order=order, fulfill_id="F2", status="success",
                                       tracking_number="PARCEL000011", line_items=[{"id": "L1", "quantity": 2}])
    LineItem.objects.filter(order=order).update(fulfillable_quantity=0)
    again = external_shipments_receive(channel=channel, records=[
        record("77", "PARCEL000011", LineRef(sku="SKU-A", quantity=2))]).outcomes[0]
    assert again.outcome == "already"


@pytest.mark.django_db
def test_safety_net_matches_records_whose_order_came_in_without_the_hook(store):
    channel = channel_create(store=store, kind="webhook", name="Hook")
    external_shipments_receive(channel=channel, records=[record("LATE-1", "PARCEL000020")])
    order = Order.objects.create(store=store, order_id="LATE-1")  # written behind the mirror's back: no hook
    LineItem.objects.create(order=order, line_item_id="L1", sku="S", quantity=1)
    assert ExternalShipment.objects.get().state == "unmatched"
    assert external_shipments_match_all_waiting().describe() == "1 created"
    assert ExternalShipment.objects.get().state == "matched"


@pytest.mark.django_db
def test_a_rejected_record_can_be_matched_again_once_the_order_allows_it(store):
    sync_orders(store, [order_record("88", [("L1", "SKU-A", 1)])])
    channel = channel_create(store=store, kind="webhook", name="Hook")
    rejected = external_shipments_receive(channel=channel, records=[
        record("88", "PARCEL000030", LineRef(sku="SKU-A", quantity=2))]).outcomes[0]
    assert rejected.outcome == "rejected"
    sync_orders(store, [order_record("88", [("L1", "SKU-A", 2)])])  # the merchant edited the order
    row = ExternalShipment.objects.get()
    assert external_shipment_rematch(record_id=row.pk).outcome == "skipped"  # rejected ones only when asked
    assert external_shipment_rematch(record_id=row.pk, include_rejected=True).outcome == "created"
    assert Shipment.objects.get().lines.get().quantity == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_channels_racing_for_the_last_items_never_ship_more_than_ordered(store):
    sync_orders(store, [order_record(f"R{i}", [("L1", "SKU-A", 1)]) for i in range(20)])
    channels = [channel_create(store=store, kind="webhook", name=f"C{n}") for n in range(2)]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def report(n: int) -> None:
        try:
            barrier.wait()
            for i in range(20):
                external_shipments_receive(channel=channels[n], records=[record(f"R{i}", f"RACE{n}{i:08d}")])
        except BaseException as exc:
            errors.append(exc)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=report, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    for line in LineItem.objects.all():
        assert ShipmentLine.objects.filter(line_item=line).count() == 1, line.order.order_id
    assert Shipment.objects.count() == 20
    assert ExternalShipment.objects.filter(state="rejected").count() == 20
    assert all("nothing left to ship" in p for p in ExternalShipment.objects.filter(
        state="rejected").values_list("problem", flat=True))


@pytest.mark.django_db
def test_voided_record_for_a_number_never_seen_is_kept_with_nothing_to_undo(store):
    channel = channel_create(store=store, kind="webhook", name="Hook")
    outcome = external_shipments_receive(channel=channel, records=[record("1", "PARCEL000040", voided=True)])
    assert outcome.outcomes[0].outcome == "withdrawn"
    assert ExternalShipment.objects.get().state == "withdrawn" and not Shipment.objects.exists()


@pytest.mark.django_db
def test_same_report_twice_is_stored_once(store):
    sync_orders(store, [order_record("99")])
    channel = channel_create(store=store, kind="webhook", name="Hook")
    first = external_shipments_receive(channel=channel, records=[record("99", "PARCEL000050")])
    second = external_shipments_receive(channel=channel, records=[record("99", "PARCEL000050")])
    assert [o.outcome for o in first.outcomes] == ["created"]
    assert [o.outcome for o in second.outcomes] == ["duplicate"]
    assert ExternalShipment.objects.count() == 1
    assert ExternalShipment.objects.get().channel.last_activity_at <= datetime.now(tz=UTC)
