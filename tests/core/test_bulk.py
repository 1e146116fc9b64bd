"""oma.core.bulk (rows_insert, rows_update, objects_update): many rows as one JSON parameter, read back into typed
columns (PostgreSQL, and SQLite without it)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.db import connection

from oma.core.bulk import JsonText, objects_update, rows_insert, rows_update
from oma.orders.models import LineItem, Order
from oma.stores.models import Store

pytestmark = pytest.mark.django_db

WHEN = datetime(2026, 11, 27, 12, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture
def store() -> Store:
    return Store.objects.create(domain="shop1.genmystore.com", access_token="t", client_secret="s")


def order_row(store: Store, order_id: str, **overrides: object) -> dict[str, object]:
    return {
        "store_id": store.pk, "order_id": order_id, "name": f"#{order_id} “ünïcode” \\ \"quoted\"",
        "total_price": Decimal("1234567.89"), "genstore_updated_at": WHEN, "cancelled_at": None,
        "raw": {"orderId": order_id, "nested": [1, "two", {"three": None}]}, "parse_problems": ["a", "b"],
        **overrides,
    }


def test_values_of_every_kind_come_back_as_they_went(store) -> None:
    rows = [order_row(store, "1001"), order_row(store, "1002", raw=JsonText('{"orderId":"1002","k":[true]}'))]
    returned = rows_insert(Order, rows, returning=("order_id", "id"))
    ids = dict(returned)
    assert set(ids) == {"1001", "1002"}
    first = Order.objects.get(pk=ids["1001"])
    assert first.name == "#1001 “ünïcode” \\ \"quoted\""
    assert first.total_price == Decimal("1234567.89")
    assert first.genstore_updated_at == WHEN
    assert first.cancelled_at is None
    assert first.raw == {"orderId": "1001", "nested": [1, "two", {"three": None}]}
    assert first.parse_problems == ["a", "b"]
    # Columns not given get their fields' defaults; auto_now fields the time of the write.
    assert (first.unified_status, first.currency, first.email) == ("", "", "")
    assert first.created_at is not None and first.updated_at is not None
    assert Order.objects.get(pk=ids["1002"]).raw == {"orderId": "1002", "k": [True]}  # spliced as it was


def test_conflicts_update_only_the_named_columns_or_are_skipped(store) -> None:
    (order_pk,) = rows_insert(Order, [order_row(store, "1001")], returning=("id",))[0]
    Order.objects.filter(pk=order_pk).update(unified_status="shipped")
    rows_insert(Order, [order_row(store, "1001", name="renamed", total_price=Decimal("2.50"))],
                conflict=("store_id", "order_id"), update=("name",))
    order = Order.objects.get(pk=order_pk)
    assert (order.name, order.total_price, order.unified_status) == ("renamed", Decimal("1234567.89"), "shipped")

    skipped = rows_insert(Order, [order_row(store, "1001", name="ignored"), order_row(store, "1003")],
                          conflict=("store_id", "order_id"), returning=("order_id",))
    assert skipped == [("1003",)]
    assert Order.objects.get(pk=order_pk).name == "renamed"


def test_booleans_integers_and_nulls(store) -> None:
    (order_pk,) = rows_insert(Order, [order_row(store, "1001")], returning=("id",))[0]
    rows_insert(LineItem, [
        {"order_id": order_pk, "line_item_id": "L1", "quantity": 3, "requires_shipping": True, "grams": None},
        {"order_id": order_pk, "line_item_id": "L2", "quantity": 0, "requires_shipping": False, "grams": 2**31 - 1},
    ])
    lines = {line.line_item_id: line for line in LineItem.objects.filter(order_id=order_pk)}
    assert (lines["L1"].quantity, lines["L1"].requires_shipping, lines["L1"].grams) == (3, True, None)
    assert (lines["L2"].quantity, lines["L2"].requires_shipping, lines["L2"].grams) == (0, False, 2**31 - 1)


def test_an_unknown_column_is_refused_before_anything_is_sent(store) -> None:
    with pytest.raises(ValueError, match="no column nope"):
        rows_insert(Order, [{**order_row(store, "1001"), "nope": 1}])
    assert not Order.objects.exists()


def test_datetimes_compare_in_sql_like_those_django_writes(store) -> None:
    """On SQLite datetimes are text: ours must sort and compare like Django's own, or filters would go wrong."""
    rows_insert(Order, [order_row(store, "1001")])
    Order.objects.create(store=store, order_id="1002", genstore_updated_at=WHEN)
    assert Order.objects.filter(genstore_updated_at=WHEN).count() == 2
    assert Order.objects.filter(genstore_updated_at__gte=WHEN).count() == 2
    assert connection.vendor in {"postgresql", "sqlite"}


def test_rows_update_sets_the_named_columns_of_each_row_by_primary_key(store) -> None:
    ids = dict(rows_insert(Order, [order_row(store, "1001"), order_row(store, "1002")], returning=("order_id", "id")))
    later = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    written = rows_update(Order, [
        {"id": ids["1001"], "unified_status": "shipped", "genstore_updated_at": later, "raw": {"k": [1]}},
        {"id": ids["1002"], "unified_status": "delivered", "genstore_updated_at": None, "raw": JsonText("[]")},
        {"id": 10**9, "unified_status": "ghost", "genstore_updated_at": None, "raw": {}},  # no such row: skipped
    ])
    assert written == 2
    first, second = Order.objects.get(pk=ids["1001"]), Order.objects.get(pk=ids["1002"])
    assert (first.unified_status, first.genstore_updated_at, first.raw) == ("shipped", later, {"k": [1]})
    assert (second.unified_status, second.genstore_updated_at, second.raw) == ("delivered", None, [])
    assert first.name == order_row(store, "1001")["name"] and first.total_price == Decimal("1234567.89")  # untouched


def test_rows_update_with_a_lock_order_writes_the_same(store) -> None:
    ids = dict(rows_insert(Order, [order_row(store, "b"), order_row(store, "B"), order_row(store, "a")],
                           returning=("order_id", "id")))
    rows = [{"id": pk, "unified_status": f"s-{order_id}", "unified_status_reason": "r"} for order_id, pk in ids.items()]
    assert rows_update(Order, rows, lock_order=("store_id", "order_id")) == 3
    assert dict(Order.objects.values_list("order_id", "unified_status")) == {"a": "s-a", "b": "s-b", "B": "s-B"}
    assert rows_update(Order, []) == 0


def test_rows_update_refuses_rows_without_their_key_or_an_unknown_column(store) -> None:
    with pytest.raises(ValueError, match="names Order's id"):
        rows_update(Order, [{"unified_status": "x"}])
    with pytest.raises(ValueError, match="no column nope"):
        rows_update(Order, [{"id": 1, "nope": 1}])


def test_objects_update_writes_fields_of_model_instances(store) -> None:
    from tracking.models import Shipment

    shipment = Shipment.objects.create(store=store, tracking_number="1Z999AA10123456784", carrier="ups")
    shipment.status, shipment.estimated_delivery_date, shipment.signed_by = "delivered", date(2026, 12, 3), "ME"
    shipment.carrier = "changed in memory only"
    assert objects_update([shipment], ["status", "estimated_delivery_date", "signed_by", "carrier_account"]) == 1
    shipment = Shipment.objects.get(pk=shipment.pk)
    assert (shipment.status, shipment.estimated_delivery_date, shipment.signed_by, shipment.carrier) == (
        "delivered", date(2026, 12, 3), "ME", "ups"
    )
    assert shipment.carrier_account_id is None
