"""The orders app's webhook topics: orders/* (in batches, one upsert per store) and refunds/create.

Registered in OrdersConfig.ready through oma.core.topic_handlers; the receiver (webhooks/) stores, claims and
retries the deliveries and calls these. Each one is idempotent and returns a short outcome for the delivery log,
free of personal data. Reads from the Genstore API happen before any write.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from typing import Any

from oma.core.topic_handlers import PermanentProcessingError, TopicDelivery, register, register_batch
from oma.genstore.client import GenstoreClient
from oma.genstore.errors import GenstoreNotFound
from oma.genstore.parsing import parse_order, parse_refund
from oma.genstore.records import OrderRecord
from oma.genstore.topics import (
    ORDER_TOPICS,
    ORDERS_CANCELLED,
    ORDERS_FULFILLED,
    ORDERS_PARTIALLY_FULFILLED,
    REFUNDS_CREATE,
)
from oma.orders import compliance
from oma.orders.models import Order, Refund
from oma.orders.services import order_upsert, orders_upsert_page
from oma.stores.models import Store
from oma.stores.services import genstore_client_for


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


def order_record_for(delivery: TopicDelivery, clients: OrderClientCache) -> tuple[OrderRecord, str]:
    """orders/*: the order version a delivery brings, and a note for the log when it had to be re-read.

    The payload is used as it is when it carries what OMA needs; otherwise the order is read from the API (the
    current version, which is at least as new as the delivery's). Upserting it, the newest updatedAt winning, is
    the batch's job: a late, older delivery changes nothing. orders/cancelled thereby sets the order's
    cancellation, which is what stops pushes for it (pushes skip cancelled orders), and the mirror's change hooks
    tell the other apps.
    """
    try:
        record = parse_order(delivery.payload["order"])
    except KeyError as exc:
        raise PermanentProcessingError(f"payload lacks {exc}") from exc
    gap = _order_payload_gap(topic=delivery.topic, record=record)
    if gap is None:
        return record, ""
    return clients.get().get_order(record.order_id), f" (re-read from Genstore: payload had {gap})"


class OrderDeliveries:
    """orders/* deliveries of one store (oma.core.topic_handlers.TopicBatch): each one's order is read from the
    payload or the API, then they are upserted together as one page (a constant number of queries; the newest
    updatedAt wins inside the batch as it does across batches)."""

    def __init__(self, store_id: int) -> None:
        self.store = Store.objects.get(pk=store_id)
        self._clients = OrderClientCache(self.store)
        # In the order of receipt: of two versions with the same updatedAt, the later one wins.
        self._read: dict[int, tuple[TopicDelivery, OrderRecord, str]] = {}

    def read(self, delivery: TopicDelivery) -> None:
        record, note = order_record_for(delivery, self._clients)
        self._read[delivery.delivery_id] = (delivery, record, note)

    def apply(self, delivery_ids: Collection[int]) -> dict[int, str]:
        live = [item for delivery_id, item in self._read.items() if delivery_id in delivery_ids]
        newest = _newest_delivery_per_order(live)
        counts = orders_upsert_page(store=self.store, records=[record for _, record, _ in newest.values()])
        outcomes: dict[int, str] = {}
        for delivery, record, note in live:
            applied = newest[record.order_id][0] is delivery
            outcome = counts.outcomes.get(record.order_id, "stale") if applied else "stale"
            text = f"order {record.order_id} {outcome}{note}"
            if delivery.topic == ORDERS_CANCELLED and record.cancelled_at is None:
                text += "; Genstore does not show it cancelled"
            outcomes[delivery.delivery_id] = text
        return outcomes

    def close(self) -> None:
        self._clients.close()


def _newest_delivery_per_order(
    items: list[tuple[TopicDelivery, OrderRecord, str]],
) -> dict[str, tuple[TopicDelivery, OrderRecord, str]]:
    """The delivery carrying each order's newest version (a later one wins a tie, like the upsert itself)."""
    newest: dict[str, tuple[TopicDelivery, OrderRecord, str]] = {}
    for item in items:
        record = item[1]
        kept = newest.get(record.order_id)
        older = (
            kept is not None
            and record.updated_at is not None
            and kept[1].updated_at is not None
            and record.updated_at < kept[1].updated_at
        )
        if not older:
            newest[record.order_id] = item
    return newest


def _refund_key(raw: dict[str, Any]) -> str:
    """Refunds without a refundId are keyed by their content, so the same refund is recorded once."""
    return "h:" + hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()[:40]


def process_refund(delivery: TopicDelivery) -> str:
    """refunds/create: record the refund, and re-read its order (its financial status changed with it)."""
    record = parse_refund(delivery.payload["refund"])
    if not record.order_id:
        raise PermanentProcessingError("refund without orderId")
    store = Store.objects.get(pk=delivery.store_id)
    try:
        with genstore_client_for(store) as client:
            order_record = client.get_order(record.order_id)
    except GenstoreNotFound:
        order_record = None
    order_outcome: str
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


def register_webhook_handlers() -> None:
    """OrdersConfig.ready: the topics whose data the orders app owns (compliance topics: oma.orders.compliance)."""
    register_batch(ORDER_TOPICS, OrderDeliveries)
    register(REFUNDS_CREATE, process_refund)
    compliance.register_webhook_handlers()
