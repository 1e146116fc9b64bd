"""Privacy duties on the order mirror: erase a customer's personal data, export it, erase a whole shop.

Genstore's compliance topics (customers/redact, customers/data_request, shop/redact) call these through the webhook
processors; nothing here knows about the delivery log (only the shapes of the bodies it stores). A redaction keeps
an allow-list of what OMA reads, so personal data under a key nobody listed goes too: names, emails, phones,
addresses, the customer object, browser/client details, notes, custom attributes.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from oma.channels.inbound import CHANNEL_TOPIC
from oma.genstore.topics import CUSTOMERS_DATA_REQUEST, CUSTOMERS_REDACT, ORDER_TOPICS, REFUNDS_CREATE
from oma.orders.models import Order, Refund
from oma.stores.models import Store

logger = logging.getLogger(__name__)

# --- what a redaction keeps: allow-lists ------------------------------------------------------------------------------
#
# A redaction keeps what the mirror, the unified status, fulfillment pushes, channel matching and delivery estimates
# read (ids, order and product names, money, statuses, timestamps, tracking data) and drops everything else, known
# or not: a key Genstore adds tomorrow is dropped until someone decides it is not personal.
# An allow-list maps a key (compared without case, "_" or "-", so camelCase and snake_case alike) to None, keep the
# value when it is plain (text, number, boolean, null, or a list of those), or to the allow-list of the object(s)
# it holds.

AllowList = Mapping[str, "AllowList | None"]
_KEY_NORMALISER = re.compile(r"[_\-\s]")


def _normal(key: str) -> str:
    return _KEY_NORMALISER.sub("", key).lower()


def _allow(*plain: str, **nested: AllowList) -> dict[str, AllowList | None]:
    return {**{_normal(key): None for key in plain}, **{_normal(key): keys for key, keys in nested.items()}}


LINE_ITEM_KEYS = _allow(
    "id", "lineItemId", "productId", "variantId", "sku", "title", "name", "variantTitle", "vendor", "quantity",
    "fulfillableQuantity", "fulfillmentStatus", "requiresShipping", "price", "grams", "taxable", "totalDiscount",
    "giftCard",
)
FULFILLMENT_KEYS = _allow(
    "fulfillId", "fulfillmentId", "id", "orderId", "status", "shipmentStatus", "trackingNumber", "trackingCompany",
    "trackingUrl", "trackingNumbers", "trackingUrls", "service", "locationId", "notifyCustomer", "createdAt",
    "createTime", "updatedAt", "updateTime",
    trackingInfo=_allow("number", "company", "url", "trackingNumber", "trackingCompany", "trackingUrl"),
    lineItems=_allow("id", "lineItemId", "quantity"),
)
ORDER_KEYS = _allow(
    "orderId", "id", "name", "orderName", "orderNumber", "number", "sourceName", "sourceIdentifier",
    "financialStatus", "fulfillmentStatus", "cancelledAt", "cancelTime", "cancelledTime", "cancelReason",
    "createdAt", "createTime", "updatedAt", "updateTime", "processedAt", "closedAt", "totalPrice",
    "currentTotalPrice", "subtotalPrice", "currentSubtotalPrice", "totalDiscounts", "totalTax", "totalShippingPrice",
    "totalWeight", "currency", "shopCurrency", "presentmentCurrency", "taxesIncluded", "paymentGatewayNames", "test",
    lineItems=LINE_ITEM_KEYS,
    fulfillments=FULFILLMENT_KEYS,
    # The country alone: delivery estimates learn transit times per destination country (oma.merchant.estimates).
    shippingAddress=_allow("country", "countryCode"),
)
REFUND_KEYS = _allow(
    "refundId", "id", "orderId", "amount", "refundPrice", "totalRefundPrice", "currency", "shopCurrency",
    "rightsType", "status", "createdAt", "createTime", "updatedAt", "updateTime",
    lineItems=_allow(
        "id", "lineItemId", "quantity", "subtotal", "totalTax", "rightsReasonType", "locationId",
        lineItem=_allow("productId", "variantId", "sku", "title"),
    ),
)
# A shipment as a sales channel reported it (webhook channels, ShipStation): what matching and people read.
EXTERNAL_SHIPMENT_KEYS = _allow(
    "trackingNumber", "carrier", "shippedAt", "status", "id", "externalId", "shipmentId", "orderId", "orderNumber",
    "carrierCode", "serviceCode", "shipDate", "voidDate", "voided",
    lineItems=_allow("sku", "lineItemId", "quantity"),
)
# Stored webhook bodies, by topic. Compliance requests keep the shop and the orders they name (the customer goes).
_CUSTOMER_REQUEST_KEYS = _allow("shopId", "shopDomain", "ordersToRedact", "ordersRequested", dataRequest=_allow("id"))
_CHANNEL_REPORT_KEYS = _allow(
    "externalOrderId", "type", "timestamp",
    shipments=EXTERNAL_SHIPMENT_KEYS,
    data=_allow("externalOrderId", shipments=EXTERNAL_SHIPMENT_KEYS),  # a Standard Webhooks envelope
)
_BODY_KEYS: dict[str, AllowList] = {
    **{topic: _allow(order=ORDER_KEYS) for topic in ORDER_TOPICS},
    REFUNDS_CREATE: _allow(refund=REFUND_KEYS),
    CUSTOMERS_REDACT: _CUSTOMER_REQUEST_KEYS,
    CUSTOMERS_DATA_REQUEST: _CUSTOMER_REQUEST_KEYS,
    CHANNEL_TOPIC: _CHANNEL_REPORT_KEYS,
}


def _is_plain(value: Any) -> bool:
    if isinstance(value, list):
        return all(_is_plain(item) and not isinstance(item, list) for item in value)
    return value is None or isinstance(value, str | int | float | bool)


def _nested(value: Any, allowed: AllowList) -> Any:
    if isinstance(value, str):  # Genstore sometimes sends a list or an object as JSON text
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            return None
    if isinstance(value, Mapping):
        return keep_allowed(value, allowed)
    if isinstance(value, list):
        return [keep_allowed(item, allowed) for item in value if isinstance(item, Mapping)]
    return None


def keep_allowed(value: Any, allowed: AllowList) -> dict[str, Any]:
    """A copy of a JSON object with only the allowed keys (and, inside them, only their allowed keys); {} for
    anything but an object."""
    kept: dict[str, Any] = {}
    if not isinstance(value, Mapping):
        return kept
    for key, item in value.items():
        if not isinstance(key, str) or (normal := _normal(key)) not in allowed:
            continue
        inner = allowed[normal]
        if inner is None:
            if _is_plain(item):
                kept[key] = item
        elif item is None:
            kept[key] = None  # "no fulfillments" is a fact the mirror reads
        elif (nested := _nested(item, inner)) is not None:
            kept[key] = nested
    return kept


def order_raw_without_personal_data(raw: Any) -> dict[str, Any]:
    return keep_allowed(raw, ORDER_KEYS)


def refund_raw_without_personal_data(raw: Any) -> dict[str, Any]:
    return keep_allowed(raw, REFUND_KEYS)


def delivery_body_without_personal_data(*, topic: str, body: str) -> str:
    """A stored webhook body reduced to its topic's allow-list ("" when it is not JSON, "{}" for a topic without
    one): what replaying it needs stays, the customer goes."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return ""
    allowed = _BODY_KEYS.get(topic)
    return json.dumps(keep_allowed(payload, allowed) if allowed is not None else {}, separators=(",", ":"))


# --- customers/redact -------------------------------------------------------------------------------------------------


def _clean_ids(order_ids: Iterable[object]) -> list[str]:
    return [str(order_id) for order_id in order_ids if order_id not in (None, "")]


@dataclass(frozen=True)
class CustomerKeys:
    """What identifies one customer in compliance requests and exports: Genstore's id, the email, their orders.

    Not the phone: a household shares one, and another customer's request is not ours to erase.
    """

    customer_id: str
    email: str
    order_ids: frozenset[str]

    @classmethod
    def of(cls, customer: object, order_ids: Iterable[object] = ()) -> CustomerKeys:
        fields = customer if isinstance(customer, Mapping) else {}
        return cls(
            customer_id=str(fields.get("id") or "").strip(),
            email=str(fields.get("email") or "").strip().casefold(),
            order_ids=frozenset(_clean_ids(order_ids)),
        )

    def same_customer(self, other: CustomerKeys) -> bool:
        """True when the other names this customer by id or email, or names any of the same orders."""
        return bool(
            (self.customer_id and self.customer_id == other.customer_id)
            or (self.email and self.email == other.email)
            or self.order_ids & other.order_ids
        )


@dataclass(frozen=True)
class CustomerRedactResult:
    orders: int
    refunds: int
    parcels: int = 0
    channel_reports: int = 0
    # The stored channel deliveries those reports came in: their bodies are the caller's to erase.
    report_delivery_ids: tuple[int, ...] = ()


def customer_redact(*, store: Store, customer: Mapping[str, Any], order_ids: Sequence[object]) -> CustomerRedactResult:
    """Erase the customer's personal data on the listed orders, their refunds and their parcels; order facts stay.

    Only the listed orders are touched: Genstore names the orders the erasure covers. Running it again changes
    nothing. The orders are marked, so that later versions of them (webhooks, sweeps) are stored without the
    customer too (oma.orders.services).
    """
    order_ids = _clean_ids(order_ids)
    now = timezone.now()
    with transaction.atomic():
        # Locked in orderId order, as the mirror's upserts lock them: the two wait for each other, never deadlock.
        orders = list(
            Order.objects.select_for_update().filter(store=store, order_id__in=order_ids).order_by("order_id")
        )
        for order in orders:
            order.email = ""
            order.raw = order_raw_without_personal_data(order.raw)
            order.personal_data_erased_at = order.personal_data_erased_at or now
        # payload_hash stays the hash of the version Genstore sent: reading that version again is "unchanged".
        Order.objects.bulk_update(orders, ["email", "raw", "personal_data_erased_at"])
        refunds = list(Refund.objects.select_for_update().filter(store=store, order_id_text__in=order_ids))
        for refund in refunds:
            refund.raw = refund_raw_without_personal_data(refund.raw)
        Refund.objects.bulk_update(refunds, ["raw"])
        parcels = _parcels_redact(store=store, orders=orders)
    logger.info(
        "customer %s redacted at %s: %d orders, %d refunds, %d parcels, %d channel reports", customer.get("id"),
        store.domain, len(orders), len(refunds), parcels.parcels, parcels.channel_reports,
    )
    return CustomerRedactResult(
        orders=len(orders),
        refunds=len(refunds),
        parcels=parcels.parcels,
        channel_reports=parcels.channel_reports,
        report_delivery_ids=parcels.report_delivery_ids,
    )


@dataclass(frozen=True)
class _ParcelsRedacted:
    parcels: int
    channel_reports: int
    report_delivery_ids: tuple[int, ...]


def _parcels_redact(*, store: Store, orders: Sequence[Order]) -> _ParcelsRedacted:
    """Who signed for the orders' parcels, what the carriers' scans said and where, and what sales channels reported.

    A scan keeps its time, status and key: the carrier's next answer repeats it, and the key (a hash of the scan as
    the carrier wrote it) is what keeps it from being stored again.
    """
    from oma.channels.models import ExternalShipment
    from tracking.models import Shipment, TrackingEvent

    shipment_ids = list(Shipment.objects.filter(store=store, order__in=orders).values_list("pk", flat=True))
    Shipment.objects.filter(pk__in=shipment_ids).update(signed_by="", raw_text="")
    TrackingEvent.objects.filter(shipment_id__in=shipment_ids).update(raw_text="", location="")
    reports = list(
        ExternalShipment.objects.filter(store=store).filter(Q(order__in=orders) | Q(shipment_id__in=shipment_ids))
    )
    for report in reports:
        report.raw = keep_allowed(report.raw, EXTERNAL_SHIPMENT_KEYS)
    ExternalShipment.objects.bulk_update(reports, ["raw"])
    return _ParcelsRedacted(
        parcels=len(shipment_ids),
        channel_reports=len(reports),
        report_delivery_ids=tuple(sorted({r.delivery_id for r in reports if r.delivery_id is not None})),
    )


# --- customers/data_request -------------------------------------------------------------------------------------------


def _money(value: object) -> str | None:
    return None if value is None else str(value)


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def customer_data_export(*, store: Store, customer: Mapping[str, Any], order_ids: Sequence[object]) -> dict[str, Any]:
    """Everything OMA holds on the customer: the requested orders, plus any other order under the same email."""
    order_ids = _clean_ids(order_ids)
    email = str(customer.get("email") or "").strip()
    matching = Q(order_id__in=order_ids)
    if email:
        matching |= Q(email__iexact=email)
    orders = (
        Order.objects.filter(store=store)
        .filter(matching)
        .prefetch_related("line_items", "genstore_fulfillments")
        .order_by("genstore_created_at", "order_id")
    )
    orders = list(orders)
    # Refunds are matched by orderId: one can arrive before its order was mirrored (no foreign key yet).
    refunds_by_order: dict[str, list[Refund]] = {}
    for refund in Refund.objects.filter(store=store, order_id_text__in=[o.order_id for o in orders]):
        refunds_by_order.setdefault(refund.order_id_text, []).append(refund)
    exported = []
    for order in orders:
        exported.append(
            {
                "orderId": order.order_id,
                "name": order.name or None,
                "email": order.email or None,
                "createdAt": _when(order.genstore_created_at),
                "updatedAt": _when(order.genstore_updated_at),
                "financialStatus": order.financial_status or None,
                "fulfillmentStatus": order.fulfillment_status or None,
                "cancelledAt": _when(order.cancelled_at),
                "totalPrice": _money(order.total_price),
                "currency": order.currency or None,
                "sourceName": order.source_name or None,
                "lineItems": [
                    {"id": line.line_item_id, "sku": line.sku or None, "title": line.title or None,
                     "quantity": line.quantity, "price": _money(line.price)}
                    for line in order.line_items.all()
                ],
                "fulfillments": [
                    {"fulfillId": f.fulfill_id, "status": f.status or None, "trackingNumber": f.tracking_number or None,
                     "trackingCompany": f.tracking_company or None, "trackingUrl": f.tracking_url or None}
                    for f in order.genstore_fulfillments.all()
                ],
                "refunds": [
                    {"refundId": r.refund_id, "amount": _money(r.amount), "currency": r.currency or None,
                     "createdAt": _when(r.genstore_created_at)}
                    for r in sorted(refunds_by_order.get(order.order_id, []), key=lambda r: r.refund_id)
                ],
                # The order as Genstore last sent it: addresses and contact details included.
                "genstoreOrder": order.raw,
            }
        )
    found = {entry["orderId"] for entry in exported}
    return {
        "store": store.domain,
        "generatedAt": timezone.now().isoformat(),
        "customer": {"id": customer.get("id"), "email": customer.get("email"), "phone": customer.get("phone")},
        "ordersRequested": order_ids,
        "ordersNotHeld": [order_id for order_id in order_ids if order_id not in found],
        "orders": exported,
    }


@dataclass(frozen=True)
class ShopRedactResult:
    domain: str
    deleted: dict[str, int]


def shop_redact(*, store: Store) -> ShopRedactResult:
    """Delete the store and everything OMA holds for it (orders, fulfillments, refunds, sweeps, shipments...).

    The cascade follows every foreign key to the store, so data other apps keep per store goes with it.
    """
    domain = store.domain
    with transaction.atomic():
        _, deleted = store.delete()
    deleted = {label: count for label, count in deleted.items() if count}
    logger.warning("shop %s erased (shop/redact): %s", domain, deleted)
    return ShopRedactResult(domain=domain, deleted=deleted)
