"""Privacy duties on the order mirror: erase a customer's personal data, export it, erase a whole shop.

Genstore's compliance topics (customers/redact, customers/data_request, shop/redact) are handled here (registered
with oma.core.topic_handlers by OrdersConfig.ready); they erase the stored deliveries and exports about the customer
or shop too (webhooks' tables, which know no topic). A redaction keeps
an allow-list of what OMA reads, so personal data under a key nobody listed goes too: names, emails, phones,
addresses, the customer object, browser/client details, notes, custom attributes.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.dispatch import Signal
from django.utils import timezone

from oma.core.topic_handlers import PermanentProcessingError, TopicDelivery, register
from oma.genstore.parsing import (
    compliance_customer,
    compliance_orders_named,
    compliance_orders_requested,
    compliance_orders_to_redact,
    compliance_shop_domain,
)
from oma.genstore.topics import (
    CUSTOMER_REQUEST_TOPICS,
    CUSTOMERS_DATA_REQUEST,
    CUSTOMERS_REDACT,
    ORDER_ID_TOPICS,
    ORDER_TOPICS,
    REFUNDS_CREATE,
    SHOP_REDACT,
)
from oma.orders.models import Order, Refund
from oma.stores.models import Store
from webhooks.models import CustomerDataExport, WebhookDelivery

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


def allow(*plain: str, **nested: AllowList) -> dict[str, AllowList | None]:
    """An allow-list for keep_allowed: `plain` keys keep plain values, each `nested` key the objects it allows."""
    return {**{_normal(key): None for key in plain}, **{_normal(key): keys for key, keys in nested.items()}}


LINE_ITEM_KEYS = allow(
    "id", "lineItemId", "productId", "variantId", "sku", "title", "name", "variantTitle", "vendor", "quantity",
    "fulfillableQuantity", "fulfillmentStatus", "requiresShipping", "price", "grams", "taxable", "totalDiscount",
    "giftCard",
)
FULFILLMENT_KEYS = allow(
    "fulfillId", "fulfillmentId", "id", "orderId", "status", "shipmentStatus", "trackingNumber", "trackingCompany",
    "trackingUrl", "trackingNumbers", "trackingUrls", "service", "locationId", "notifyCustomer", "createdAt",
    "createTime", "updatedAt", "updateTime",
    trackingInfo=allow("number", "company", "url", "trackingNumber", "trackingCompany", "trackingUrl"),
    lineItems=allow("id", "lineItemId", "quantity"),
)
ORDER_KEYS = allow(
    "orderId", "id", "name", "orderName", "orderNumber", "number", "sourceName", "sourceIdentifier",
    "financialStatus", "fulfillmentStatus", "cancelledAt", "cancelTime", "cancelledTime", "cancelReason",
    "createdAt", "createTime", "updatedAt", "updateTime", "processedAt", "closedAt", "totalPrice",
    "currentTotalPrice", "subtotalPrice", "currentSubtotalPrice", "totalDiscounts", "totalTax", "totalShippingPrice",
    "totalWeight", "currency", "shopCurrency", "presentmentCurrency", "taxesIncluded", "paymentGatewayNames", "test",
    lineItems=LINE_ITEM_KEYS,
    fulfillments=FULFILLMENT_KEYS,
    # The country alone: delivery estimates learn transit times per destination country (oma.merchant.estimates).
    shippingAddress=allow("country", "countryCode"),
)
REFUND_KEYS = allow(
    "refundId", "id", "orderId", "amount", "refundPrice", "totalRefundPrice", "currency", "shopCurrency",
    "rightsType", "status", "createdAt", "createTime", "updatedAt", "updateTime",
    lineItems=allow(
        "id", "lineItemId", "quantity", "subtotal", "totalTax", "rightsReasonType", "locationId",
        lineItem=allow("productId", "variantId", "sku", "title"),
    ),
)
# A shipment as a sales channel reported it (webhook channels, ShipStation): what matching and people read.
EXTERNAL_SHIPMENT_KEYS = allow(
    "trackingNumber", "carrier", "shippedAt", "status", "id", "externalId", "shipmentId", "orderId", "orderNumber",
    "carrierCode", "serviceCode", "shipDate", "voidDate", "voided",
    lineItems=allow("sku", "lineItemId", "quantity"),
)
# Stored webhook bodies, by topic. Compliance requests keep the shop and the orders they name (the customer goes).
_CUSTOMER_REQUEST_KEYS = allow("shopId", "shopDomain", "ordersToRedact", "ordersRequested", dataRequest=allow("id"))
# A channel's shipment report (channels/shipments, registered by the channels app with body_allow_list_register).
CHANNEL_REPORT_KEYS = allow(
    "externalOrderId", "type", "timestamp",
    shipments=EXTERNAL_SHIPMENT_KEYS,
    data=allow("externalOrderId", shipments=EXTERNAL_SHIPMENT_KEYS),  # a Standard Webhooks envelope
)
_BODY_KEYS: dict[str, AllowList] = {
    **{topic: allow(order=ORDER_KEYS) for topic in ORDER_TOPICS},
    REFUNDS_CREATE: allow(refund=REFUND_KEYS),
    CUSTOMERS_REDACT: _CUSTOMER_REQUEST_KEYS,
    CUSTOMERS_DATA_REQUEST: _CUSTOMER_REQUEST_KEYS,
}


def body_allow_list_register(topic: str, keys: AllowList) -> None:
    """What a redaction keeps of the stored bodies of another app's webhook topic (channels/shipments)."""
    _BODY_KEYS[topic] = keys


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
class ParcelsRedacted:
    """What a `customer_redacted` receiver erased of the orders' parcels (tracking) and channel reports."""

    parcels: int = 0
    channel_reports: int = 0
    # The stored channel deliveries those reports came in: their bodies are the caller's to erase.
    report_delivery_ids: tuple[int, ...] = ()

    @classmethod
    def total(cls, answers: Iterable[ParcelsRedacted]) -> ParcelsRedacted:
        parts = list(answers)
        return cls(
            parcels=sum(part.parcels for part in parts),
            channel_reports=sum(part.channel_reports for part in parts),
            report_delivery_ids=tuple(sorted({pk for part in parts for pk in part.report_delivery_ids})),
        )


# Sent by customer_redact inside its transaction, with the store, the pks of the orders whose customer was erased
# (`order_pks`), the orderIds Genstore named (`order_ids`, mirrored or not) and the customer object (`customer`: its
# id and email): the apps above that keep data about those orders or that customer (who signed for the parcels,
# scan texts, channel reports, external orders bought with the same email) erase it and answer with a
# ParcelsRedacted (receivers connected in their AppConfig.ready; oma.channels.compliance).
customer_redacted = Signal()


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
        answers: list[object] = [
            answer
            for _, answer in customer_redacted.send(
                sender=Order, store=store, order_pks=[order.pk for order in orders], order_ids=order_ids,
                customer=customer,
            )
        ]
        parcels = ParcelsRedacted.total(answer for answer in answers if isinstance(answer, ParcelsRedacted))
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
    orders = list(
        Order.objects.filter(store=store)
        .filter(matching)
        .prefetch_related("line_items", "genstore_fulfillments")
        .order_by("genstore_created_at", "order_id")
    )
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


# --- erasing the stored webhook deliveries and exports (webhooks' tables, erased for their data owner) ---------


def deliveries_redact(*, store: Store, order_ids: Iterable[str], also: Sequence[int] = ()) -> int:
    """Erase personal data from the stored bodies of a store's deliveries about these orders (and `also` ids).

    The row stays (id, topic, time, dedupe key) for the dedupe audit; the body keeps its topic's allow-list.
    """
    order_ids = [str(order_id) for order_id in order_ids]
    # Only ORDER_ID_TOPICS carry a Genstore orderId as resource_id (a channel delivery's is the platform's own).
    rows = WebhookDelivery.objects.filter(store=store).filter(
        Q(resource_id__in=order_ids, topic__in=ORDER_ID_TOPICS) | Q(pk__in=list(also))
    )
    now = timezone.now()
    count = 0
    for delivery in rows.only("pk", "topic", "body").iterator(chunk_size=200):
        redacted_body = delivery_body_without_personal_data(topic=delivery.topic, body=delivery.body)
        WebhookDelivery.objects.filter(pk=delivery.pk).update(body=redacted_body, redacted_at=now)
        count += 1
    return count


@dataclass(frozen=True)
class CustomerErasure:
    deliveries: int
    exports: int


def customer_deliveries_erase(
    *, store: Store, customer: Mapping[str, Any], order_ids: Sequence[str], also: Sequence[int] = ()
) -> CustomerErasure:
    """customers/redact: delete the customer's data exports and erase the personal data of every stored delivery
    about the customer: those about the orders (and `also` ids), and the customer's earlier compliance requests.

    A customers/data_request delivery names no order in resource_id: it is found by the customer (id or email) or
    the orders its body names. Running it again finds nothing new.
    """
    wanted = CustomerKeys.of(customer, order_ids)
    requests = []
    candidates = WebhookDelivery.objects.filter(store=store, topic__in=CUSTOMER_REQUEST_TOPICS, redacted_at=None)
    for delivery_id, body in candidates.values_list("pk", "body").iterator(chunk_size=200):
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            continue
        if isinstance(payload, dict) and wanted.same_customer(_customer_named_in(payload)):
            requests.append(delivery_id)
    exports = [
        export.pk
        for export in CustomerDataExport.objects.filter(store=store).only(
            "pk", "delivery", "customer_id", "orders_requested", "data"
        )
        if export.delivery_id in requests or wanted.same_customer(_customer_of_export(export))
    ]
    if exports:
        CustomerDataExport.objects.filter(pk__in=exports).delete()
    deliveries = deliveries_redact(store=store, order_ids=order_ids, also=[*also, *requests])
    return CustomerErasure(deliveries=deliveries, exports=len(exports))


def _customer_named_in(payload: dict[str, Any]) -> CustomerKeys:
    return CustomerKeys.of(compliance_customer(payload), compliance_orders_named(payload))


def _customer_of_export(export: CustomerDataExport) -> CustomerKeys:
    data = export.data if isinstance(export.data, dict) else {}
    named = data.get("customer")
    customer: dict[str, Any] = named if isinstance(named, dict) else {}
    found = [order.get("orderId") for order in data.get("orders") or [] if isinstance(order, dict)]
    requested = export.orders_requested if isinstance(export.orders_requested, list) else []
    return CustomerKeys.of({**customer, "id": export.customer_id or customer.get("id")}, [*requested, *found])


def deliveries_erase_for_store(*, store: Store, keep: Sequence[int] = ()) -> int:
    """Delete every delivery and export of a store (shop/redact), except the `keep` deliveries."""
    CustomerDataExport.objects.filter(store=store).delete()
    deleted, _ = WebhookDelivery.objects.filter(store=store).exclude(pk__in=list(keep)).delete()
    return deleted


def customer_data_export_save(
    *,
    store: Store,
    delivery_id: int | None,
    customer_id: str,
    orders_requested: list[str],
    data: dict[str, Any],
) -> CustomerDataExport:
    values = {
        "store": store,
        "customer_id": customer_id[:64],
        "orders_requested": orders_requested,
        "orders_found": len(data.get("orders", [])),
        "data": data,
    }
    if delivery_id is None:
        return CustomerDataExport.objects.create(**values)
    export, _ = CustomerDataExport.objects.update_or_create(delivery_id=delivery_id, defaults=values)
    return export


# --- the compliance topics' webhook handlers (registered by OrdersConfig.ready) -------------------------------------


def _store_named(delivery: TopicDelivery) -> Store:
    """The delivery's store; compliance payloads name their shop: refuse to erase anything if it is not the store
    that signed it."""
    store = Store.objects.get(pk=delivery.store_id)
    named = compliance_shop_domain(delivery.payload)
    if named and named != store.domain:
        raise PermanentProcessingError("payload names another shop than the one that signed it")
    return store


def _order_ids(parse: Callable[[Mapping[str, Any]], list[str]], payload: Mapping[str, Any]) -> list[str]:
    try:
        return parse(payload)
    except ValueError as exc:
        raise PermanentProcessingError(str(exc)) from exc


def process_customer_redact(delivery: TopicDelivery) -> str:
    """customers/redact: erase the customer's personal data on the listed orders and their parcels, in the stored
    deliveries about them, and the customer's data exports."""
    store = _store_named(delivery)
    order_ids = _order_ids(compliance_orders_to_redact, delivery.payload)
    customer = compliance_customer(delivery.payload)
    result = customer_redact(store=store, customer=customer, order_ids=order_ids)
    # This delivery's own body names the customer: it is erased too, as are the channel deliveries of the parcels.
    erased = customer_deliveries_erase(
        store=store, customer=customer, order_ids=order_ids, also=[delivery.delivery_id, *result.report_delivery_ids]
    )
    outcome = f"redacted {result.orders} orders, {result.refunds} refunds, {erased.deliveries} delivery bodies"
    if result.parcels:
        outcome += f", {result.parcels} parcels"
    if erased.exports:
        outcome += f"; {erased.exports} data exports deleted"
    return outcome


def process_customer_data_request(delivery: TopicDelivery) -> str:
    """customers/data_request: build the export of what OMA holds on the customer, downloadable in admin."""
    store = _store_named(delivery)
    order_ids = _order_ids(compliance_orders_requested, delivery.payload)
    customer = compliance_customer(delivery.payload)
    data = customer_data_export(store=store, customer=customer, order_ids=order_ids)
    export = customer_data_export_save(
        store=store,
        delivery_id=delivery.delivery_id,
        customer_id=str(customer.get("id") or ""),
        orders_requested=order_ids,
        data=data,
    )
    return f"customer data export {export.pk} ready ({export.orders_found} orders)"


def process_shop_redact(delivery: TopicDelivery) -> str:
    """shop/redact: delete the store and all its data; this delivery stays (without its store) as the record."""
    store = _store_named(delivery)
    deliveries = deliveries_erase_for_store(store=store, keep=[delivery.delivery_id])
    result = shop_redact(store=store)
    return f"shop erased: {sum(result.deleted.values())} rows and {deliveries} deliveries deleted"


def register_webhook_handlers() -> None:
    register(CUSTOMERS_REDACT, process_customer_redact)
    register(CUSTOMERS_DATA_REQUEST, process_customer_data_request)
    register(SHOP_REDACT, process_shop_redact)
