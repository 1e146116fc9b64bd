"""One processor per topic: turn an authentic, stored delivery into changes through the owning app's services.

orders/* deliveries are read here (`order_record_for`) and upserted in batches by `webhooks.services`; every
other topic has its processor in PROCESSORS. Each one is idempotent (the same delivery processed twice changes
nothing the second time) and returns a short outcome for the delivery log, free of personal data. Reads from the
Genstore API happen before any write.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

from oma.genstore.client import GenstoreClient
from oma.genstore.errors import GenstoreNotFound
from oma.genstore.parsing import parse_order, parse_refund
from oma.genstore.records import OrderRecord
from oma.genstore.topics import (
    APP_SCOPES_UPDATE,
    APP_UNINSTALLED,
    CUSTOMERS_DATA_REQUEST,
    CUSTOMERS_REDACT,
    ORDER_TOPICS,
    ORDERS_CANCELLED,
    ORDERS_FULFILLED,
    ORDERS_PARTIALLY_FULFILLED,
    REFUNDS_CREATE,
    SHOP_REDACT,
)
from oma.orders import compliance
from oma.orders.models import Order, Refund
from oma.orders.services import order_upsert
from oma.stores.models import Store
from oma.stores.services import genstore_client_for, store_deactivate
from webhooks import services
from webhooks.models import WebhookDelivery
from webhooks.services import PermanentProcessingError

Processor = Callable[[Store, WebhookDelivery, dict[str, Any]], str]


def _order_payload_gap(*, topic: str, record: OrderRecord) -> str | None:
    """What the payload lacks for OMA to mirror the order from it alone (then the order is re-read), or None.

    Without updatedAt the version guard cannot order it; without a line item list read in full, the order's lines
    are not known (and lines are what fulfillments are made of).
    """
    if record.updated_at is None:
        return "no updatedAt"
    if not record.has_line_items:
        return "no lineItems"
    if topic in (ORDERS_FULFILLED, ORDERS_PARTIALLY_FULFILLED) and not record.has_fulfillments:
        return "no fulfillments"
    if topic == ORDERS_CANCELLED and record.cancelled_at is None:
        return "no cancelledAt"
    return None


class OrderClientCache:
    """One Genstore client per batch, built only if some delivery needs the API."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._client: GenstoreClient | None = None

    def get(self) -> GenstoreClient:
        if self._client is None:
            self._client = genstore_client_for(self.store)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def order_record_for(store: Store, delivery: WebhookDelivery, clients: OrderClientCache) -> tuple[OrderRecord, str]:
    """orders/*: the order version a delivery brings, and a note for the log when it had to be re-read.

    The payload is used as it is when it carries what OMA needs; otherwise the order is read from the API (the
    current version, which is at least as new as the delivery's). Upserting it, the newest updatedAt winning, is
    the caller's job: a late, older delivery changes nothing. orders/cancelled thereby sets the order's
    cancellation, which is what stops pushes for it (pushes skip cancelled orders), and the mirror's change hooks
    tell the other apps.
    """
    payload = load_payload(delivery)
    try:
        record = parse_order(payload["order"])
    except KeyError as exc:
        raise PermanentProcessingError(f"payload lacks {exc}") from exc
    gap = _order_payload_gap(topic=delivery.topic, record=record)
    if gap is None:
        return record, ""
    return clients.get().get_order(record.order_id), f" (re-read from Genstore: payload had {gap})"


def _refund_key(raw: dict[str, Any]) -> str:
    """Refunds without a refundId are keyed by their content, so the same refund is recorded once."""
    return "h:" + hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()[:40]


def process_refund(store: Store, delivery: WebhookDelivery, payload: dict[str, Any]) -> str:
    """refunds/create: record the refund, and re-read its order (its financial status changed with it)."""
    record = parse_refund(payload["refund"])
    if not record.order_id:
        raise PermanentProcessingError("refund without orderId")
    try:
        with genstore_client_for(store) as client:
            order_record = client.get_order(record.order_id)
    except GenstoreNotFound:
        order_record = None
    if order_record is not None:
        order_outcome = order_upsert(store=store, record=order_record).outcome
    else:
        order_outcome = "not found in Genstore"
    order = Order.objects.filter(store=store, order_id=record.order_id).first()
    refund_id = (record.refund_id or _refund_key(record.raw))[:64]
    _, created = Refund.objects.update_or_create(
        store=store,
        refund_id=refund_id,
        defaults={
            "order": order,
            "order_id_text": record.order_id[:64],
            "amount": record.amount,
            "currency": (record.currency or "")[:8],
            "genstore_created_at": record.created_at,
            # A refund that arrives after its order's customers/redact keeps only the allow-listed facts too.
            "raw": compliance.refund_raw_without_personal_data(record.raw)
            if order is not None and order.personal_data_erased_at is not None
            else record.raw,
        },
    )
    return f"refund {refund_id} {'recorded' if created else 'updated'}; order {record.order_id} {order_outcome}"


def process_app_uninstalled(store: Store, delivery: WebhookDelivery, payload: dict[str, Any]) -> str:
    if not store.is_active:
        return "store already inactive"
    store_deactivate(store=store, reason="Genstore sent app/uninstalled")
    return "store deactivated (no more sweeps, polls or pushes; data kept)"


_SCOPE_KEYS = ("current", "currentScopes", "scopes", "scope", "accessScopes", "authScope")


def scopes_from(value: Any) -> list[str] | None:
    """["a", "b"], "a,b" or "[a,b]" -> ["a", "b"]; None when the value holds no scope list."""
    if isinstance(value, list):
        return sorted({str(item).strip() for item in value if str(item).strip()})
    if isinstance(value, str):
        return sorted({part for part in (p.strip() for p in re.split(r"[,\s]+", value.strip("[] "))) if part})
    return None


def process_scopes_update(store: Store, delivery: WebhookDelivery, payload: dict[str, Any]) -> str:
    """app/scopesUpdate: record the scopes the app now holds."""
    inner = payload.get("authScope") if isinstance(payload.get("authScope"), dict) else payload.get("app") or {}
    for key in _SCOPE_KEYS:
        scopes = scopes_from(inner.get(key)) if key in inner else None
        if scopes is not None:
            Store.objects.filter(pk=store.pk).update(scopes=scopes)
            return f"scopes recorded: {', '.join(scopes) or 'none'}"
    raise PermanentProcessingError("scopesUpdate payload names no current scopes")


def _check_shop(store: Store, payload: dict[str, Any]) -> None:
    """Compliance payloads name their shop: refuse to erase anything if it is not the store that signed it."""
    named = str(payload.get("shopDomain") or "").strip().lower()
    if named and named != store.domain:
        raise PermanentProcessingError("payload names another shop than the one that signed it")


def _customer(payload: dict[str, Any]) -> dict[str, Any]:
    """The customer object; empty once a redaction erased it (a replayed request still names its orders)."""
    customer = payload.get("customer")
    return customer if isinstance(customer, dict) else {}


def _order_list(payload: dict[str, Any], key: str) -> list[str]:
    value = payload.get(key) or []
    if not isinstance(value, list):
        raise PermanentProcessingError(f"{key} is not a list")
    return [str(order_id) for order_id in value if order_id not in (None, "")]


def process_customer_redact(store: Store, delivery: WebhookDelivery, payload: dict[str, Any]) -> str:
    """customers/redact: erase the customer's personal data on the listed orders and their parcels, in the stored
    deliveries about them, and the customer's data exports."""
    _check_shop(store, payload)
    order_ids = _order_list(payload, "ordersToRedact")
    customer = _customer(payload)
    result = compliance.customer_redact(store=store, customer=customer, order_ids=order_ids)
    # This delivery's own body names the customer: it is erased too, as are the channel deliveries of the parcels.
    erased = services.customer_deliveries_erase(
        store=store, customer=customer, order_ids=order_ids, also=[delivery.pk, *result.report_delivery_ids]
    )
    outcome = f"redacted {result.orders} orders, {result.refunds} refunds, {erased.deliveries} delivery bodies"
    if result.parcels:
        outcome += f", {result.parcels} parcels"
    if erased.exports:
        outcome += f"; {erased.exports} data exports deleted"
    return outcome


def process_customer_data_request(store: Store, delivery: WebhookDelivery, payload: dict[str, Any]) -> str:
    """customers/data_request: build the export of what OMA holds on the customer, downloadable in admin."""
    _check_shop(store, payload)
    order_ids = _order_list(payload, "ordersRequested")
    customer = _customer(payload)
    data = compliance.customer_data_export(store=store, customer=customer, order_ids=order_ids)
    export = services.customer_data_export_save(
        store=store,
        delivery=delivery,
        customer_id=str(customer.get("id") or ""),
        orders_requested=order_ids,
        data=data,
    )
    return f"customer data export {export.pk} ready ({export.orders_found} orders)"


def process_shop_redact(store: Store, delivery: WebhookDelivery, payload: dict[str, Any]) -> str:
    """shop/redact: delete the store and all its data; this delivery stays (without its store) as the record."""
    _check_shop(store, payload)
    deliveries = services.deliveries_erase_for_store(store=store, keep=[delivery.pk])
    result = compliance.shop_redact(store=store)
    return f"shop erased: {sum(result.deleted.values())} rows and {deliveries} deliveries deleted"


# Every handled topic but orders/*, which are processed in batches (order_record_for, then one upsert per store).
PROCESSORS: dict[str, Processor] = {
    REFUNDS_CREATE: process_refund,
    APP_UNINSTALLED: process_app_uninstalled,
    APP_SCOPES_UPDATE: process_scopes_update,
    CUSTOMERS_REDACT: process_customer_redact,
    CUSTOMERS_DATA_REQUEST: process_customer_data_request,
    SHOP_REDACT: process_shop_redact,
}


def load_payload(delivery: WebhookDelivery) -> dict[str, Any]:
    try:
        payload = json.loads(delivery.body)
    except (ValueError, RecursionError) as exc:
        raise PermanentProcessingError("stored body is not JSON") from exc
    if not isinstance(payload, dict):
        raise PermanentProcessingError("stored body is not a JSON object")
    return payload


def process_payload(delivery: WebhookDelivery) -> str:
    """Run the processor of a delivery's topic (any but orders/*); raises PermanentProcessingError when it can
    never succeed."""
    if delivery.store is None:
        raise PermanentProcessingError("the store was erased")
    if delivery.topic in ORDER_TOPICS:
        raise ValueError("orders/* deliveries are processed in batches: use order_record_for")
    processor = PROCESSORS.get(delivery.topic)
    if processor is None:
        return "topic not handled by OMA"
    payload = load_payload(delivery)
    try:
        return processor(delivery.store, delivery, payload)
    except KeyError as exc:  # the shape was checked on receipt; a redacted body may no longer fit
        raise PermanentProcessingError(f"payload lacks {exc}") from exc
