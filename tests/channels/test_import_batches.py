"""Imports and channel deliveries in batches: a constant number of queries per batch whatever its size (hooks
included), the same outcomes as one row at a time, hooks once per batch, and the bulk shipment writer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from oma.channels import csv_import
from oma.channels.connectors.base import ExternalShipmentRecord, LineRef
from oma.channels.csv_import import tracking_csv_import
from oma.channels.models import ExternalShipment
from oma.channels.services import channel_create, external_shipments_receive
from oma.core.bulk import AnyOf
from oma.fulfillment.models import FulfillmentPush
from oma.orders.models import LineItem, Order
from oma.stores.models import Store
from tests.channels.conftest import order_record, sync_orders
from tests.channels.test_csv_import import assert_never_over_shipped, row, to_csv
from tracking.models import Shipment, ShipmentLine
from tracking.services import ShipmentAdd, ShipmentAdded, ShipmentConflict, shipment_add, shipments_add_many
from tracking.signals import shipments_changed

pytestmark = pytest.mark.django_db

GOOD_ROWS_PER_BLOCK = 8  # batches are of the rows that pass the file's own checks (the duplicate does not)


@pytest.fixture(autouse=True)
def csv_channel(store: Store) -> None:
    """The store's CSV channel exists before the first import (its creation is not a batch's cost)."""
    channel_create(store=store, kind="csv", name="CSV import")


def block(store: Store, k: int) -> list[dict[str, str]]:
    """The orders of block `k` (mirrored here) and its 9 rows, every block of the same shape: a parcel of two
    rows (created, added), a second parcel, a row asking for more than is left, rows keyed by the order's name
    and by its sourceIdentifier, one for an order not mirrored (waiting), one for a cancelled order, one
    duplicate."""
    sync_orders(store, [
        order_record(f"A{k}", [("L1", "SKU-A", 2), ("L2", "SKU-B", 1)]),
        order_record(f"B{k}"),
        order_record(f"C{k}", source_name="amazon", source_identifier=f"AMZ-{k}"),
        order_record(f"D{k}", cancelled=True),
    ])
    first = row(f"A{k}", f"PA{k:09d}", sku="SKU-A", quantity="1")
    return [
        first,
        row(f"A{k}", f"PA{k:09d}", sku="SKU-B"),
        row(f"A{k}", f"PB{k:09d}", line_item_id="L1", quantity="1"),
        row(f"A{k}", f"PC{k:09d}", sku="SKU-A", quantity="1"),
        row(f"#B{k}", f"PD{k:09d}"),
        row(f"AMZ-{k}", f"PE{k:09d}"),
        row(f"NOPE-{k}", f"PF{k:09d}"),
        row(f"D{k}", f"PG{k:09d}"),
        dict(first),
    ]


BLOCK_OUTCOMES = ["created", "added", "created", "rejected", "created", "created", "waiting", "rejected", "rejected"]


@contextmanager
def rows_per_batch(size: int) -> Iterator[None]:
    saved = csv_import.ROWS_PER_BATCH
    csv_import.ROWS_PER_BATCH = size
    try:
        yield
    finally:
        csv_import.ROWS_PER_BATCH = saved


def import_queries(store: Store, rows: list[dict[str, str]], capture_hooks) -> tuple[int, list[str]]:
    """Queries of one import, its after-commit hooks (unified status, push intents, e-mails, events) included."""
    with CaptureQueriesContext(connection) as queries, capture_hooks(execute=True):
        report = tracking_csv_import(store=store, data=to_csv(rows), file_name="batch.csv")
    return len(queries), [result.outcome for result in report.results]


# PostgreSQL: on SQLite the push-intent hook's bulk_create splits its INSERT by SQLite's limit on parameters.
@pytest.mark.postgres
def test_a_batch_costs_the_same_queries_whatever_its_size(store, django_capture_on_commit_callbacks):
    small = block(store, 0)
    large = [r for k in range(1, 21) for r in block(store, k)]
    small_queries, small_outcomes = import_queries(store, small, django_capture_on_commit_callbacks)
    large_queries, large_outcomes = import_queries(store, large, django_capture_on_commit_callbacks)
    assert small_outcomes == BLOCK_OUTCOMES and large_outcomes == BLOCK_OUTCOMES * 20
    assert small_queries == large_queries, (small_queries, large_queries)
    assert Shipment.objects.count() == 4 * 21
    # Importing it all again: every row is known, nothing is written, still the same queries.
    again_queries, again = import_queries(store, large, django_capture_on_commit_callbacks)
    assert again_queries <= large_queries
    assert [outcome for outcome in again if outcome not in ("already", "waiting", "rejected")] == []
    assert Shipment.objects.count() == 4 * 21


@pytest.mark.postgres
def test_queries_grow_with_the_batches_not_the_rows(store, django_capture_on_commit_callbacks):
    counts = {}
    with rows_per_batch(GOOD_ROWS_PER_BLOCK):
        for start, blocks in ((0, 1), (1, 2), (3, 4)):
            rows = [r for k in range(start, start + blocks) for r in block(store, k)]
            counts[blocks], outcomes = import_queries(store, rows, django_capture_on_commit_callbacks)
            assert outcomes == BLOCK_OUTCOMES * blocks
    per_batch = counts[2] - counts[1]
    assert counts[4] - counts[2] == 2 * per_batch, counts
    assert per_batch <= 40, counts


def test_a_parcel_split_across_batches_is_completed_and_never_over_shipped(store):
    sync_orders(store, [order_record("S1", [("L1", "SKU-A", 3), ("L2", "SKU-B", 1)])])
    rows = [
        row("S1", "SPLIT0000001", sku="SKU-A", quantity="1"),
        row("S1", "SPLIT0000002", sku="SKU-A", quantity="1"),
        row("S1", "SPLIT0000001", line_item_id="L1", quantity="2"),  # the next batch: the parcel holds two now
        row("S1", "SPLIT0000003", sku="SKU-A", quantity="1"),  # none left of SKU-A
        row("S1", "SPLIT0000003"),  # whole order: what is left (SKU-B)
    ]
    with rows_per_batch(2):
        report = tracking_csv_import(store=store, data=to_csv(rows), file_name="split.csv")
    assert [(r.outcome, r.reason) for r in report.results] == [
        ("created", ""), ("created", ""), ("added", "items added to the shipment of line 2"),
        ("rejected", "quantity 1 of sku SKU-A is more than is left to ship on order S1 (0 left of 3 ordered)"),
        ("created", ""),
    ]
    held = {
        (number, sku): quantity for number, sku, quantity in ShipmentLine.objects.values_list(
            "shipment__tracking_number", "line_item__sku", "quantity")
    }
    assert held == {("SPLIT0000001", "SKU-A"): 2, ("SPLIT0000002", "SKU-A"): 1, ("SPLIT0000003", "SKU-B"): 1}
    assert_never_over_shipped()


def test_hooks_run_once_per_batch_and_every_shipment_gets_its_push_intent(store, django_capture_on_commit_callbacks):
    sent: list[list[int]] = []

    def listen(sender: object, *, shipment_ids: list[int], **kwargs: object) -> None:
        sent.append(list(shipment_ids))

    shipments_changed.connect(listen, dispatch_uid="test_import_batches.listen")
    try:
        rows = [r for k in range(3) for r in block(store, k)]
        with rows_per_batch(GOOD_ROWS_PER_BLOCK), django_capture_on_commit_callbacks(execute=True):
            tracking_csv_import(store=store, data=to_csv(rows), file_name="hooks.csv")
    finally:
        shipments_changed.disconnect(dispatch_uid="test_import_batches.listen")
    assert len(sent) == 3, sent
    assert {pk for ids in sent for pk in ids} == set(Shipment.objects.values_list("pk", flat=True)), sent
    assert sorted(FulfillmentPush.objects.values_list("shipment_id", flat=True)) == sorted(
        Shipment.objects.values_list("pk", flat=True)
    )
    assert {state for state in FulfillmentPush.objects.values_list("state", flat=True)} == {"pending"}


def test_a_dry_run_matches_in_batches_and_saves_nothing(store, django_capture_on_commit_callbacks):
    rows = [r for k in range(2) for r in block(store, k)]
    with rows_per_batch(GOOD_ROWS_PER_BLOCK), django_capture_on_commit_callbacks(execute=True) as callbacks:
        report = tracking_csv_import(store=store, data=to_csv(rows), file_name="dry.csv", dry_run=True)
    assert [r.outcome for r in report.results] == BLOCK_OUTCOMES * 2
    assert not callbacks
    assert not Shipment.objects.exists() and not ExternalShipment.objects.exists()


@pytest.mark.postgres
def test_a_channel_delivery_of_many_records_costs_the_queries_of_one(store):
    channel = channel_create(store=store, kind="webhook", name="Hook")
    sync_orders(store, [order_record(f"W{i}", [("L1", "SKU-A", 2)]) for i in range(60)])

    def deliver(orders: range) -> tuple[int, list[str]]:
        records = [
            ExternalShipmentRecord(external_order_id=f"W{i}", tracking_number=f"WEB{i:09d}",
                                   lines=(LineRef(sku="SKU-A", quantity=1),))
            for i in orders
        ]
        with CaptureQueriesContext(connection) as queries:
            summary = external_shipments_receive(channel=channel, records=records)
        return len(queries), [outcome.outcome for outcome in summary.outcomes]

    few, few_outcomes = deliver(range(2))
    many, many_outcomes = deliver(range(2, 60))
    assert few_outcomes == ["created"] * 2 and many_outcomes == ["created"] * 58
    assert few == many, (few, many)
    assert ExternalShipment.objects.filter(state="matched", shipment__isnull=False).count() == 60
    again, again_outcomes = deliver(range(60))
    assert again_outcomes == ["duplicate"] * 60 and again <= many


def test_shipments_add_many_does_what_shipment_add_does_one_by_one(store):
    first, second = sync_orders(store, [order_record("M1", [("L1", "SKU-A", 2)]),
                                         order_record("M2", [("L1", "SKU-A", 1)])])
    line_1, line_2 = LineItem.objects.get(order=first), LineItem.objects.get(order=second)
    unlinked = shipment_add(store=store, tracking_number="1Z999AA10123456784")  # no order yet
    results = shipments_add_many(store=store, adds=[
        ShipmentAdd(tracking_number="1z 999 aa1 0123456784", order=first, lines=[(line_1, 1)]),  # links it
        ShipmentAdd(tracking_number="NEW000000001", order=first, lines=[(line_1, 1)]),
        ShipmentAdd(tracking_number="NEW-000000001", carrier="fedex", order=first, lines=[(line_1, 2)]),  # same
        ShipmentAdd(tracking_number="NEW000000001", order=second, lines=[(line_2, 1)]),  # another order's
    ])
    assert isinstance(results[0], ShipmentAdded) and results[0].shipment_id == unlinked.pk
    assert not results[0].created
    assert isinstance(results[1], ShipmentAdded) and results[1].created
    assert isinstance(results[2], ShipmentAdded) and not results[2].created
    assert results[2].shipment_id == results[1].shipment_id
    assert isinstance(results[3], ShipmentConflict)
    unlinked.refresh_from_db()
    assert unlinked.order_id == first.pk and unlinked.lines.get().quantity == 1
    new = Shipment.objects.get(tracking_number="NEW000000001")
    assert new.order_id == first.pk and new.carrier == "fedex" and new.source == Shipment.Source.MANUAL
    assert new.lines.get().quantity == 2  # the last add of a number sets its lines
    assert Order.objects.count() == 2 and Shipment.objects.count() == 2


def test_any_of_filters_like_in_with_one_parameter(store, django_assert_num_queries):
    orders = sync_orders(store, [order_record(f"Q{i}") for i in range(5)])
    wanted = [orders[1].order_id, orders[3].order_id, "missing"]
    with django_assert_num_queries(1) as queries:
        found = set(Order.objects.filter(AnyOf(F("order_id"), wanted), store=store).values_list("order_id", flat=True))
    assert found == {orders[1].order_id, orders[3].order_id}
    sql = queries.captured_queries[0]["sql"]
    assert ("= ANY(" if connection.vendor == "postgresql" else "json_each(") in sql  # one parameter for all values
    by_join = LineItem.objects.filter(AnyOf(F("order__order_id"), wanted)).values_list("order_id", flat=True)
    assert sorted(by_join) == sorted([orders[1].pk, orders[3].pk])
    assert list(Order.objects.filter(AnyOf(F("pk"), []))) == []
    assert Order.objects.exclude(AnyOf(F("pk"), [orders[0].pk])).count() == 4


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's plans")
def test_any_of_sends_an_array_of_the_columns_type_so_postgresql_can_hash_it(store):
    """psycopg would send these small ids as smallint[]; PostgreSQL hashes `= ANY` (instead of comparing each row
    with every value) only for an array of the column's own type, which matters when an import outgrows the
    table's statistics and the plan is a sequential scan."""
    orders = sync_orders(store, [order_record(f"H{i}") for i in range(12)])
    for queryset, array_type in (
        (Shipment.objects.filter(AnyOf(F("order_id"), [order.pk for order in orders])), "bigint[]"),
        (Order.objects.filter(AnyOf(F("pk"), [order.pk for order in orders])), "bigint[]"),
        (Order.objects.filter(AnyOf(F("order_id"), [order.order_id for order in orders])), "text[]"),
    ):
        sql, params = queryset.values_list("pk").query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
            plan = json.dumps(cursor.fetchone()[0])
        assert f"::{array_type}" in plan, plan
    assert Shipment.objects.filter(AnyOf(F("order_id"), [order.pk for order in orders])).count() == 0
    # A value longer than the column is compared whole, never cut down to the column's length.
    assert not Order.objects.filter(AnyOf(F("order_id"), [orders[0].order_id + "x" * 300])).exists()
