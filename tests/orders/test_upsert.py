"""The one upsert path shared by webhooks and sweeps: newest updatedAt wins, constant queries per page."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from oma.genstore.records import FulfillmentLineRecord, FulfillmentRecord, LineItemRecord, OrderRecord
from oma.orders.models import GenstoreFulfillment, LineItem, Order
from oma.orders.services import order_upsert, orders_upsert_page
from oma.stores.models import Store

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def store() -> Store:
    return Store.objects.create(domain="up.genmystore.com", access_token="t", client_secret="s")


def record(order_id: str, *, updated: datetime = T0, status: str = "paid", lines: int = 2, **extra) -> OrderRecord:
    raw = {"orderId": order_id, "updatedAt": updated.isoformat(), "financialStatus": status, **extra}
    return OrderRecord(
        order_id=order_id,
        financial_status=status,
        updated_at=updated,
        created_at=T0 - timedelta(days=1),
        source_name="amazon",
        source_identifier=f"112-{order_id}",
        total_price=Decimal("12.50"),
        currency="USD",
        line_items=tuple(
            LineItemRecord(id=f"{order_id}-{n}", sku=f"SKU{n}", quantity=n + 1, fulfillable_quantity=n + 1)
            for n in range(lines)
        ),
        has_line_items=True,
        raw=raw,
    )


def test_create_then_unchanged_then_update(store):
    assert order_upsert(store=store, record=record("1001")).outcome == "created"
    assert order_upsert(store=store, record=record("1001")).outcome == "unchanged"
    result = order_upsert(store=store, record=record("1001", updated=T0 + timedelta(minutes=5), status="refunded"))
    assert result.outcome == "updated"
    assert result.order.financial_status == "refunded"
    assert result.order.source_identifier == "112-1001"
    assert list(result.order.line_items.values_list("line_item_id", "quantity")) == [("1001-0", 1), ("1001-1", 2)]


def test_an_older_version_never_overwrites_a_newer_one(store):
    order_upsert(store=store, record=record("1002", updated=T0 + timedelta(hours=1), status="refunded"))
    late = order_upsert(store=store, record=record("1002", updated=T0, status="paid"))
    assert late.outcome == "stale"
    assert Order.objects.get(order_id="1002").financial_status == "refunded"


def test_within_one_page_the_newest_duplicate_wins(store):
    counts = orders_upsert_page(
        store=store,
        records=[record("1003", updated=T0 + timedelta(hours=2), status="voided"), record("1003", updated=T0)],
    )
    assert counts.created == 1
    assert Order.objects.get(order_id="1003").financial_status == "voided"


def test_edited_order_drops_removed_lines_and_keeps_line_ids_stable(store):
    order_upsert(store=store, record=record("1004", lines=3))
    kept_pk = LineItem.objects.get(line_item_id="1004-0").pk
    order_upsert(store=store, record=record("1004", updated=T0 + timedelta(minutes=1), lines=1))
    assert list(LineItem.objects.filter(order__order_id="1004").values_list("pk", flat=True)) == [kept_pk]


def test_fulfillments_are_mirrored_when_the_payload_carries_them(store):
    fulfillment = FulfillmentRecord(
        fulfill_id="F1",
        order_id="1005",
        status="success",
        tracking_number="1Z999AA10123456784",
        line_items=(FulfillmentLineRecord(id="1005-0", quantity=1),),
    )
    base = record("1005")
    with_fulfillment = OrderRecord(
        **{**{f: getattr(base, f) for f in base.__dataclass_fields__}, "fulfillments": (fulfillment,),
           "has_fulfillments": True, "updated_at": T0 + timedelta(minutes=1), "raw": {**base.raw, "f": 1}}
    )
    order_upsert(store=store, record=with_fulfillment)
    mirrored = GenstoreFulfillment.objects.get(fulfill_id="F1")
    assert mirrored.tracking_number == "1Z999AA10123456784"
    assert mirrored.line_items == [{"id": "1005-0", "quantity": 1}]


@pytest.mark.postgres  # SQLite splits bulk statements by its variable limit, so there it grows in steps
def test_queries_per_page_do_not_grow_with_the_page(store):
    def queries_for(ids: range, updated: datetime) -> int:
        with CaptureQueriesContext(connection) as ctx:
            orders_upsert_page(store=store, records=[record(str(i), updated=updated) for i in ids])
        return len(ctx)

    small_create = queries_for(range(0, 5), T0)
    large_create = queries_for(range(100, 350), T0)
    small_update = queries_for(range(0, 5), T0 + timedelta(minutes=1))
    large_update = queries_for(range(100, 350), T0 + timedelta(minutes=1))
    assert small_create == large_create
    assert small_update == large_update
    assert large_update <= 10
