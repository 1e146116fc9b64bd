"""Channel test helpers: stores and orders made through the real order mirror service (orders_upsert_page)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest

from oma.genstore.records import LineItemRecord, OrderRecord
from oma.orders.models import Order
from oma.orders.services import orders_upsert_page
from oma.stores.models import Store

_sequence = count(1)


def order_record(
    order_id: str,
    lines: Sequence[tuple[str, str, int]] = (("L1", "SKU-A", 1),),
    *,
    source_name: str = "",
    source_identifier: str = "",
    fulfillable: dict[str, int] | None = None,
    requires_shipping: dict[str, bool] | None = None,
    cancelled: bool = False,
    created_at: datetime | None = None,
) -> OrderRecord:
    """A Genstore order as the client would parse it; lines are (line item id, sku, quantity)."""
    created_at = created_at or datetime.now(tz=UTC) - timedelta(days=1)
    return OrderRecord(
        order_id=order_id,
        id=f"gid-{order_id}",
        name=f"#{order_id}",
        source_name=source_name or None,
        source_identifier=source_identifier or None,
        financial_status="paid",
        fulfillment_status="unfulfilled",
        cancelled_at=created_at + timedelta(hours=1) if cancelled else None,
        created_at=created_at,
        updated_at=created_at + timedelta(minutes=next(_sequence) % 1000),
        line_items=tuple(
            LineItemRecord(
                id=line_id,
                sku=sku,
                title=f"item {sku}",
                quantity=quantity,
                fulfillable_quantity=(fulfillable or {}).get(line_id, quantity),
                requires_shipping=(requires_shipping or {}).get(line_id, True),
            )
            for line_id, sku, quantity in lines
        ),
        raw={"orderId": order_id, "n": next(_sequence)},
    )


def sync_orders(store: Store, records: Sequence[OrderRecord]) -> list[Order]:
    """Mirror orders the way a webhook or a sweep does (change hooks included)."""
    orders_upsert_page(store=store, records=list(records))
    return list(Order.objects.filter(store=store, order_id__in=[r.order_id for r in records]).order_by("pk"))


@pytest.fixture
def store(db: None) -> Store:
    return Store.objects.create(
        domain="shop1.genmystore.com", name="Shop 1", access_token="token", client_secret="secret"
    )


@pytest.fixture
def other_store(db: None) -> Store:
    return Store.objects.create(
        domain="shop2.genmystore.com", name="Shop 2", access_token="token2", client_secret="secret2"
    )
