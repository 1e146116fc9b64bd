"""customers/redact reaches parcels and external orders: the receiver of oma.orders.compliance.customer_redacted.

Channels sit above both tracking and orders, so the erasure of the orders' parcels (tracking), of what sales
channels reported about them (ExternalShipment) and of the external orders OMA created them from (ExternalOrder) is
wired here (connected by inbound.register_webhook_handlers). An erased external order stays erased: a later input
for it is stored without its personal data (`order_values_without_personal_data`, used by the intake).

Also the allow-list of a stored channel delivery's body (`CHANNEL_DELIVERY_KEYS`): what a redaction keeps of a
delivery that carried shipments, an order, or both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from oma.channels.connectors.webhook import CHANNEL_TOPIC
from oma.channels.models import ExternalOrder, ExternalShipment
from oma.orders.compliance import (
    CHANNEL_REPORT_KEYS,
    EXTERNAL_SHIPMENT_KEYS,
    AllowList,
    ParcelsRedacted,
    allow,
    keep_allowed,
)
from oma.orders.models import Order
from oma.stores.models import Store
from tracking.redaction import shipments_redact
from webhooks.models import WebhookDelivery

# --- what an external order keeps -----------------------------------------------------------------------------

# ExternalOrderInput.content_json() keys holding the buyer: erased with the row's own personal columns.
PERSONAL_CONTENT_KEYS: tuple[str, ...] = ("email", "phone", "name", "shippingAddress", "billingAddress", "note")
# What an erased address keeps: the country (delivery estimates and people read it; it names nobody).
_ADDRESS_KEPT = ("country_code",)
# The ExternalOrder columns that hold the buyer, and their erased values.
PERSONAL_COLUMNS: Mapping[str, object] = {
    "email": "", "phone": "", "customer_name": "", "shipping_address": None, "billing_address": None, "note": "",
}


def _address_kept(address: object) -> dict[str, Any] | None:
    if not isinstance(address, Mapping):
        return None
    kept = {key: address[key] for key in _ADDRESS_KEPT if address.get(key)}
    return kept or None


def content_without_personal_data(content: Mapping[str, Any]) -> dict[str, Any]:
    """An external order's content (ExternalOrderInput.content_json()) without the buyer: emptied keys, the
    addresses reduced to their country."""
    erased = dict(content)
    for key in PERSONAL_CONTENT_KEYS:
        if key in erased:
            erased[key] = "" if isinstance(erased[key], str) else None
    for key in ("shippingAddress", "billingAddress"):
        original = content.get(key)
        if isinstance(original, Mapping):
            erased[key] = _address_kept(original)
    return erased


def order_values_without_personal_data(values: Mapping[str, Any]) -> dict[str, Any]:
    """ExternalOrder column values (the intake's) with the buyer erased: personal columns emptied, the content and
    every later change's content reduced, the raw input dropped (it is the channel's text, personal keys and all)."""
    erased = dict(values)
    for column, empty in PERSONAL_COLUMNS.items():
        if column in erased:
            erased[column] = empty
    if "shipping_address" in values:
        erased["shipping_address"] = _address_kept(values["shipping_address"])
    if isinstance(values.get("content"), Mapping):
        erased["content"] = content_without_personal_data(values["content"])
    if isinstance(values.get("later_changes"), list):
        erased["later_changes"] = [_change_without_personal_data(change) for change in values["later_changes"]]
    if "raw" in values:
        erased["raw"] = {}
    return erased


def _change_without_personal_data(change: object) -> object:
    if isinstance(change, Mapping) and isinstance(change.get("content"), Mapping):
        return {**change, "content": content_without_personal_data(change["content"])}
    return change


# --- the stored channel delivery's body ---------------------------------------------------------------------------

# What an order object in a channel delivery keeps: what the order is, never who bought it or where it goes (the
# country aside).
EXTERNAL_ORDER_KEYS = allow(
    "createdAt", "currency", "shippingPrice", "totalTax", "financialStatus", "cancelledAt", "tags",
    lineItems=allow("sku", "title", "variantTitle", "quantity", "price", "lineItemId"),
    shippingAddress=allow("countryCode", "country"),
)
CHANNEL_DELIVERY_KEYS: dict[str, AllowList | None] = {
    **CHANNEL_REPORT_KEYS,
    **allow(
        order=EXTERNAL_ORDER_KEYS,
        # a Standard Webhooks envelope
        data=allow("externalOrderId", shipments=EXTERNAL_SHIPMENT_KEYS, order=EXTERNAL_ORDER_KEYS),
    ),
}


# --- customers/redact -------------------------------------------------------------------------------------------


def external_orders_redact(
    *, store: Store, order_pks: Sequence[int] = (), genstore_order_ids: Sequence[str] = (), email: str = ""
) -> list[ExternalOrder]:
    """Erase the buyer from the store's external orders that became these Genstore orders (by the mirror's pk or
    Genstore's orderId) or were bought with this email. Returns the rows erased (their deliveries are the caller's
    to erase). Running it again erases nothing new."""
    matching = Q(order_id__in=list(order_pks)) | Q(genstore_order_id__in=[i for i in genstore_order_ids if i])
    if email.strip():
        matching |= Q(email__iexact=email.strip())
    now = timezone.now()
    with transaction.atomic():
        rows = list(ExternalOrder.objects.select_for_update().filter(store=store).filter(matching).order_by("pk"))
        for row in rows:
            values = order_values_without_personal_data(
                {
                    **{column: getattr(row, column) for column in PERSONAL_COLUMNS},
                    "content": row.content, "later_changes": row.later_changes, "raw": row.raw,
                }
            )
            for column, value in values.items():
                setattr(row, column, value)
            row.personal_data_erased_at = row.personal_data_erased_at or now
        ExternalOrder.objects.bulk_update(
            rows, [*PERSONAL_COLUMNS, "content", "later_changes", "raw", "personal_data_erased_at"]
        )
    return rows


def on_customer_redacted(
    sender: object, *, store: Store, order_pks: Sequence[int], **kwargs: object
) -> ParcelsRedacted:
    """Who signed for the orders' parcels, what the carriers' scans said and where, what sales channels reported
    (a report keeps its allow-list: what matching and people read), and the buyer of the external orders they were
    created from. The signal may also name the Genstore orderIds (`order_ids`, for orders never mirrored) and the
    customer (`customer`: external orders bought with the same email are erased too)."""
    shipment_ids = shipments_redact(store_id=store.pk, order_pks=order_pks)
    reports = list(
        ExternalShipment.objects.filter(store=store).filter(
            Q(order_id__in=list(order_pks)) | Q(shipment_id__in=shipment_ids)
        )
    )
    for report in reports:
        report.raw = keep_allowed(report.raw, EXTERNAL_SHIPMENT_KEYS)
    ExternalShipment.objects.bulk_update(reports, ["raw"])
    customer = kwargs.get("customer")
    email = str(customer.get("email") or "") if isinstance(customer, Mapping) else ""
    named = kwargs.get("order_ids")
    genstore_order_ids = [str(i) for i in named] if isinstance(named, list | tuple) else []
    genstore_order_ids += list(Order.objects.filter(pk__in=list(order_pks)).values_list("order_id", flat=True))
    orders = external_orders_redact(
        store=store, order_pks=order_pks, genstore_order_ids=genstore_order_ids, email=email
    )
    deliveries = {r.delivery_id for r in reports if r.delivery_id is not None}
    deliveries |= {row.delivery_id for row in orders if row.delivery_id is not None}
    # A row keeps its latest delivery only; every earlier delivery of the same order carried the buyer too.
    if orders:
        deliveries |= set(
            WebhookDelivery.objects.filter(
                store=store, topic=CHANNEL_TOPIC, resource_id__in={row.external_order_id[:64] for row in orders}
            ).values_list("pk", flat=True)
        )
    return ParcelsRedacted(
        parcels=len(shipment_ids),
        channel_reports=len(reports) + len(orders),
        report_delivery_ids=tuple(sorted(deliveries)),
    )
