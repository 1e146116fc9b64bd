"""The unified order status, stored: gather each order's facts, ask `unified_status_for` (status.py, pure), and
write what changed in one UPDATE per chunk.

`orders_unified_status_refresh(order_ids=...)` is the one writer. It runs when orders change (the
oma.orders.signals.orders_changed receiver), when shipments change (tracking.signals.shipments_changed), after a
push (the push's receiver), from the beat's backfill and from reconciliation.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence

from django.db import OperationalError, connection
from django.db.models import F

from oma.core.bulk import AnyOf, rows_update
from oma.core.locking import lost_a_lock_race
from oma.core.retry import RetryPolicy
from oma.fulfillment.status import (
    FulfillmentFacts,
    LineFacts,
    OrderFacts,
    ShipmentFacts,
    unified_status_for,
)
from oma.orders.models import GenstoreFulfillment, LineItem, Order
from oma.stores.models import Store
from tracking.models import Shipment, ShipmentLine

logger = logging.getLogger(__name__)

_STATUS_WRITE_ATTEMPTS = 5
# A lost lock race is retried after a short random wait (the one backoff formula, oma.core.retry).
_STATUS_WRITE_RETRY = RetryPolicy(max_attempts=_STATUS_WRITE_ATTEMPTS, backoff_base=0.05, backoff_cap=0.2)


def order_facts(order: Order) -> OrderFacts:
    return OrderFacts(
        financial_status=order.financial_status,
        fulfillment_status=order.fulfillment_status,
        cancelled=order.cancelled_at is not None,
        cancel_reason=order.cancel_reason,
        lines=tuple(
            LineFacts(line.line_item_id, line.quantity, line.fulfillable_quantity, line.requires_shipping)
            for line in order.line_items.all()
        ),
    )


def shipment_facts(shipment: Shipment) -> ShipmentFacts:
    return ShipmentFacts(
        tracking_number=shipment.tracking_number,
        status=shipment.status,
        substatus=shipment.substatus,
        carrier=shipment.carrier,
        lines=tuple((line.line_item.line_item_id, line.quantity) for line in shipment.lines.all()),
    )


def fulfillment_facts(fulfillment: GenstoreFulfillment) -> FulfillmentFacts:
    return FulfillmentFacts(
        tracking_number=fulfillment.tracking_number,
        status=fulfillment.status,
        shipment_status=fulfillment.shipment_status,
        lines=_fulfillment_lines(fulfillment.line_items),
    )


def orders_unified_status_refresh(*, order_ids: Sequence[int], chunk_size: int = 500) -> int:
    """Recompute the unified status of these orders; returns how many changed.

    Runs after every order upsert (a sweep page of 250 orders included), so it reads plain tuples in six queries
    per chunk, and writes one UPDATE per chunk rather than one per order. A write that loses a lock race with
    another writer (PostgreSQL aborts one of two deadlocked statements) is computed and written again."""
    changed = 0
    ids = list(dict.fromkeys(order_ids))
    for start in range(0, len(ids), chunk_size):
        chunk = ids[start : start + chunk_size]
        for attempt in range(1, _STATUS_WRITE_ATTEMPTS + 1):
            try:
                changed += _write_unified_statuses(_unified_status_changes(chunk))
                break
            except OperationalError as exc:
                # Inside a caller's transaction the statement cannot be retried alone: the caller decides.
                if connection.in_atomic_block or attempt == _STATUS_WRITE_ATTEMPTS or not lost_a_lock_race(exc):
                    raise
                logger.info("unified status of %d orders: %s; computing again (attempt %d)", len(chunk), exc,
                            attempt + 1)
                time.sleep(_STATUS_WRITE_RETRY.backoff(attempt - 1))  # out of step with whoever we collided with
    return changed


def _unified_status_changes(chunk: Sequence[int]) -> dict[tuple[str, str], list[int]]:
    """(status, reason) -> ids of the orders of `chunk` whose unified status is now that and was not."""
    orders = {
        pk: (financial, fulfillment, cancelled_at, cancel_reason, current, current_reason)
        for pk, financial, fulfillment, cancelled_at, cancel_reason, current, current_reason
        in Order.objects.filter(AnyOf(F("pk"), list(chunk))).values_list(
            "pk", "financial_status", "fulfillment_status", "cancelled_at", "cancel_reason", "unified_status",
            "unified_status_reason",
        )
    }
    lines: dict[int, list[LineFacts]] = defaultdict(list)
    for order_id, line_item_id, quantity, fulfillable, requires_shipping in LineItem.objects.filter(
        AnyOf(F("order_id"), list(chunk))
    ).order_by("pk").values_list("order_id", "line_item_id", "quantity", "fulfillable_quantity", "requires_shipping"):
        lines[order_id].append(LineFacts(line_item_id, quantity, fulfillable, requires_shipping))
    fulfillments: dict[int, list[FulfillmentFacts]] = defaultdict(list)
    for order_id, number, status, shipment_status, items in GenstoreFulfillment.objects.filter(
        AnyOf(F("order_id"), list(chunk))
    ).values_list("order_id", "tracking_number", "status", "shipment_status", "line_items"):
        fulfillments[order_id].append(
            FulfillmentFacts(number, status, shipment_status, _fulfillment_lines(items))
        )
    shipment_rows = list(
        Shipment.objects.filter(AnyOf(F("order_id"), list(chunk))).values_list(
            "pk", "order_id", "tracking_number", "status", "substatus", "carrier"
        )
    )
    shipment_lines: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for shipment_id, line_item_id, quantity in ShipmentLine.objects.filter(
        AnyOf(F("shipment_id"), [row[0] for row in shipment_rows])
    ).order_by("pk").values_list("shipment_id", "line_item__line_item_id", "quantity"):
        shipment_lines[shipment_id].append((line_item_id, quantity))
    shipments: dict[int, list[ShipmentFacts]] = defaultdict(list)
    for pk, order_id, number, status, substatus, carrier in shipment_rows:
        shipments[order_id].append(
            ShipmentFacts(number, status, substatus, carrier, tuple(shipment_lines.get(pk, ())))
        )

    by_answer: dict[tuple[str, str], list[int]] = defaultdict(list)
    for pk, (financial, fulfillment, cancelled_at, cancel_reason, current, current_reason) in orders.items():
        facts = OrderFacts(
            financial_status=financial,
            fulfillment_status=fulfillment,
            cancelled=cancelled_at is not None,
            cancel_reason=cancel_reason,
            lines=tuple(lines.get(pk, ())),
        )
        answer = unified_status_for(
            order=facts, shipments=shipments.get(pk, ()), fulfillments=fulfillments.get(pk, ())
        )
        if answer != (current, current_reason):
            by_answer[answer].append(pk)
    return by_answer


def _write_unified_statuses(by_answer: dict[tuple[str, str], list[int]]) -> int:
    """One UPDATE for the whole chunk (oma.core.bulk).

    On PostgreSQL the rows are locked first in the order the order upsert locks them (store, then orderId in
    code-point order, as Python sorts), so the two wait for each other instead of deadlocking."""
    rows = [
        {"id": pk, "unified_status": status, "unified_status_reason": reason}
        for (status, reason), pks in by_answer.items()
        for pk in pks
    ]
    return rows_update(Order, rows, lock_order=("store_id", "order_id"))


def _fulfillment_lines(items: object) -> tuple[tuple[str, int], ...]:
    lines = []
    for line in items if isinstance(items, list) else []:
        if isinstance(line, dict) and line.get("id") is not None:
            try:
                lines.append((str(line["id"]), int(line.get("quantity") or 0)))
            except (TypeError, ValueError):
                continue
    return tuple(lines)


def orders_unified_status_backfill(*, limit: int = 5000) -> int:
    """Orders that have no unified status yet (mirrored before this app, or a hook that failed) get one."""
    ids = list(Order.objects.filter(unified_status="").order_by("pk").values_list("pk", flat=True)[:limit])
    return orders_unified_status_refresh(order_ids=ids)


def store_unified_status_refresh(*, store: Store) -> int:
    """Recompute every order of a store (after a deploy that changed the table, or on demand)."""
    ids = list(Order.objects.filter(store=store).values_list("pk", flat=True))
    return orders_unified_status_refresh(order_ids=ids)
