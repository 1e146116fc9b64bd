"""The order export (`export_orders`): each mirrored order with its line items and its shipments.

In oma.merchant because it reads two apps that do not know each other: the order mirror and tracking."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.db.models import Prefetch

from oma.orders.models import LineItem, Order
from oma.stores.models import Store
from tracking.models import Shipment, ShipmentLine


def _shipments_of(order: Order) -> list[dict[str, Any]]:
    shipments = getattr(order, "prefetched_shipments", None)
    if shipments is None:
        return []
    rows = []
    for shipment in shipments:
        lines = getattr(shipment, "prefetched_lines", [])
        rows.append(
            {
                "trackingNumber": shipment.tracking_number,
                "carrier": shipment.carrier,
                "status": shipment.status,
                "substatus": shipment.substatus,
                "lastEventAt": shipment.last_event_at.isoformat() if shipment.last_event_at else None,
                "lineItems": [{"id": line.line_item.line_item_id, "quantity": line.quantity} for line in lines],
                "genstoreFulfillmentId": getattr(shipment, "genstore_fulfillment_id", "") or None,
            }
        )
    return rows


def _shipment_prefetch() -> list[Prefetch]:
    return [
        Prefetch(
            "shipments",
            queryset=Shipment.objects.order_by("created_at", "pk").prefetch_related(
                Prefetch(
                    "lines",
                    queryset=ShipmentLine.objects.select_related("line_item").order_by("pk"),
                    to_attr="prefetched_lines",
                )
            ),
            to_attr="prefetched_shipments",
        )
    ]


def orders_export_rows(
    *, store: Store, updated_since: datetime | None = None, chunk_size: int = 500
) -> Iterator[dict[str, Any]]:
    """One plain dict per order, in orderId order, in bounded memory (chunks with prefetches); with
    `updated_since`, only the orders Genstore last updated at or after it."""
    orders = Order.objects.filter(store=store)
    if updated_since is not None:
        orders = orders.filter(genstore_updated_at__gte=updated_since)
    queryset = (
        orders.order_by("order_id")
        .prefetch_related(
            Prefetch("line_items", queryset=LineItem.objects.order_by("pk"), to_attr="prefetched_lines"),
            *_shipment_prefetch(),
        )
    )
    for order in queryset.iterator(chunk_size=chunk_size):
        yield {
            "orderId": order.order_id,
            "sourceName": order.source_name or None,
            "sourceIdentifier": order.source_identifier or None,
            "financialStatus": order.financial_status or None,
            "fulfillmentStatus": order.fulfillment_status or None,
            "cancelled": order.is_cancelled,
            "unifiedStatus": order.unified_status or None,
            "lineItems": [
                {
                    "id": line.line_item_id,
                    "sku": line.sku or None,
                    "quantity": line.quantity,
                    "fulfillableQuantity": line.fulfillable_quantity,
                    "requiresShipping": line.requires_shipping,
                }
                for line in order.prefetched_lines
            ],
            "shipments": _shipments_of(order),
        }
