"""External orders in: the one intake for orders sold on other channels (the channel webhook's "order" object, order
files), and the queueing of the Genstore work it makes due.

`external_orders_receive` stores each order as an `ExternalOrder` row keyed by (channel, external order id), with its
lines, before anything is sent to Genstore. Set-based: a batch of up to BATCH_SIZE orders costs the same few
statements whatever its size (one read of the known rows, one insert of the new ones and one of their lines, and for
changed rows one lock, one read, one update and the lines replaced). What happens to an input:

- new: a `pending` row (or `cancelled` at once when it arrives cancelled: nothing is ever created for it);
- the same content again (SHA-256 of `ExternalOrderInput.content_json()`): nothing;
- changed before it was sent to Genstore (`pending`, `failed`): the row and its lines take the new content and the
  row is `pending` again;
- changed once Genstore has (or may have) the order: the change is appended to `later_changes` (recorded and shown,
  never pushed), except a newly set `cancelledAt`, which asks for the Genstore order's cancellation;
- cancelled before it was ever sent: `cancelled`, no request.

Genstore work is never done here: one drain task per store (`channels.create_external_orders`, oma.channels.tasks) is
queued after the commit and works through the store's due rows at the bucket's pace (oma.channels.order_create);
beat queues drains for stores with rows still due, so a lost message or a killed worker never drops work.

A change to a row a drain is working on waits for that step to finish (on PostgreSQL, the row's advisory lock,
taken for the transaction: `rows_lock_for_change`), so neither overwrites the other.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import connection, transaction
from django.db.models.functions import Mod
from django.utils import timezone

from oma.channels.compliance import content_without_personal_data, order_values_without_personal_data
from oma.channels.connectors.base import ExternalOrderInput
from oma.channels.models import Channel, ExternalOrder, ExternalOrderDrain, ExternalOrderLine, OrderImport
from oma.channels.selectors import external_orders_due_q
from oma.channels.services import ChannelInvalid
from oma.core.bulk import objects_update, rows_insert
from oma.core.outbox import enqueue_each_on_commit, publish

logger = logging.getLogger(__name__)

State = ExternalOrder.State

# The drain task's name (oma.channels.tasks defines it; published by name: that module imports this one).
DRAIN_TASK = "channels.create_external_orders"
BATCH_SIZE = 500
LOG_LIMIT = 30
LATER_CHANGES_LIMIT = 50
# A row Genstore has (or may have) an order for: its content is what was sent.
_NOT_SENT = (State.PENDING, State.FAILED)


@dataclass
class OrderReceipt:
    """What one intake call did, by external order (an id repeated within the call counts once: the last wins).

    new: rows written (a new order arriving cancelled included); unchanged: the same content again; changed: the
    content changed (applied before creation, recorded after); cancel_requested: a known order newly cancelled
    (cancelled at once before creation, else its Genstore cancel is owed)."""

    new_ids: list[int] = field(default_factory=list)
    unchanged_ids: list[int] = field(default_factory=list)
    changed_ids: list[int] = field(default_factory=list)
    cancel_requested_ids: list[int] = field(default_factory=list)
    due: bool = False  # work for Genstore was made due (a drain is queued after the commit)

    @property
    def new(self) -> int:
        return len(self.new_ids)

    @property
    def unchanged(self) -> int:
        return len(self.unchanged_ids)

    @property
    def changed(self) -> int:
        return len(self.changed_ids)

    @property
    def cancel_requested(self) -> int:
        return len(self.cancel_requested_ids)

    @property
    def row_ids(self) -> list[int]:
        return [*self.new_ids, *self.unchanged_ids, *self.changed_ids, *self.cancel_requested_ids]

    def describe(self) -> str:
        counts = (
            (self.new, "new"), (self.unchanged, "unchanged"), (self.changed, "changed"),
            (self.cancel_requested, "cancel requested"),
        )
        text = ", ".join(f"{count} {label}" for count, label in counts if count)
        return f"orders: {text}" if text else "orders: none"


def channel_source_name(channel: Channel) -> str:
    """The sourceName the channel's orders get in Genstore: its first source name, lower-cased."""
    names = [name.strip().lower() for name in channel.source_names or [] if name and name.strip()]
    if not names:
        raise ChannelInvalid(
            f"channel {channel.slug} has no source names, so its orders have no sourceName to be created under in "
            "Genstore: set the channel's source names (--source-names when adding it, or in admin), e.g. amazon"
        )
    return names[0][:64]


def content_sha256(content: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def log_entry(message: str, *, now: datetime | None = None) -> dict[str, str]:
    return {"at": (now or timezone.now()).isoformat(timespec="seconds"), "message": message[:500]}


def _logged(log: list[Any], message: str, now: datetime) -> list[Any]:
    return [*log, log_entry(message, now=now)][-LOG_LIMIT:]


# --- what an input sets -----------------------------------------------------------------------------------------


def _content_values(order: ExternalOrderInput, content: dict[str, Any]) -> dict[str, Any]:
    """The row's columns that say what the order is (all but its identity and its Genstore state)."""
    return {
        "ordered_at": order.created_at,
        "currency": order.currency[:8],
        "email": order.email[:254],
        "phone": order.phone[:64],
        "customer_name": order.name[:255],
        "shipping_address": order.shipping_address.as_json() if order.shipping_address else None,
        "billing_address": order.billing_address.as_json() if order.billing_address else None,
        "shipping_price": order.shipping_price,
        "total_tax": order.total_tax,
        "financial_status": order.financial_status[:32],
        "note": order.note,
        "tags": list(order.tags),
        "channel_cancelled_at": order.cancelled_at,
        "content": content,
        "raw": dict(order.raw),
    }


def _line_rows(row_id: int, order: ExternalOrderInput) -> list[dict[str, object]]:
    return [
        {
            "external_order_id": row_id,
            "position": position,
            "external_line_id": line.external_line_id[:128],
            "sku": line.sku[:128],
            "title": line.title[:512],
            "variant_title": line.variant_title[:512],
            "quantity": line.quantity,
            "price": line.price,
            "tax": line.tax,
            "genstore_line_item_id": "",
        }
        for position, line in enumerate(order.lines, 1)
    ]


@dataclass(slots=True)
class _Batch:
    channel: Channel
    source_name: str
    order_import: OrderImport | None
    delivery_id: int | None
    now: datetime
    receipt: OrderReceipt
    # rows whose lines are replaced by the input's (changed before creation): row id -> input
    relined: dict[int, ExternalOrderInput] = field(default_factory=dict)


def external_orders_receive(
    *,
    channel: Channel,
    orders: Sequence[ExternalOrderInput],
    order_import: OrderImport | None = None,
    delivery_id: int | None = None,
    now: datetime | None = None,
) -> OrderReceipt:
    """Store the channel's orders (see the module docstring) and queue the store's drain after the commit when any
    Genstore work became due. ChannelInvalid for a channel without source names (nothing is stored)."""
    source_name = channel_source_name(channel)
    now = now or timezone.now()
    receipt = OrderReceipt()
    latest = list({order.external_order_id: order for order in orders}.values())
    for start in range(0, len(latest), BATCH_SIZE):
        batch = _Batch(
            channel=channel, source_name=source_name, order_import=order_import, delivery_id=delivery_id, now=now,
            receipt=receipt,
        )
        with transaction.atomic():
            _receive_batch(batch, latest[start : start + BATCH_SIZE])
    if receipt.due:
        external_orders_drain_enqueue(store_id=channel.store_id)
    if latest:
        logger.info("channel %s: %s", channel.slug, receipt.describe())
    return receipt


def _receive_batch(batch: _Batch, orders: list[ExternalOrderInput]) -> None:
    contents = {order.external_order_id: order.content_json() for order in orders}
    hashes = {external_id: content_sha256(content) for external_id, content in contents.items()}
    known = {
        external_id: (pk, sha)
        for external_id, pk, sha in ExternalOrder.objects.filter(
            channel=batch.channel, external_order_id__in=list(contents)
        ).values_list("external_order_id", "pk", "content_sha256")
    }
    inserted = _insert_new(batch, [order for order in orders if order.external_order_id not in known], contents, hashes)
    changed = []
    for order in orders:
        external_id = order.external_order_id
        if external_id in inserted:
            continue
        pk, sha = known.get(external_id, (None, None))
        if pk is not None and sha == hashes[external_id]:
            batch.receipt.unchanged_ids.append(pk)
            continue
        # Changed, or inserted by a concurrent intake first (the insert skipped it): read again under the lock.
        changed.append(order)
    if changed:
        _apply_changes(batch, changed, contents, hashes)


def _insert_new(
    batch: _Batch, orders: list[ExternalOrderInput], contents: dict[str, dict[str, Any]], hashes: dict[str, str]
) -> set[str]:
    """Insert the new orders and their lines; the external ids inserted (one a concurrent intake took is not)."""
    if not orders:
        return set()
    rows = []
    for order in orders:
        cancelled = order.cancelled_at is not None
        message = "received" + (f" ({order.source_ref})" if order.source_ref else "")
        if cancelled:
            message += "; cancelled on the channel before it was created: nothing is created in Genstore"
        rows.append(
            {
                "store_id": batch.channel.store_id,
                "channel_id": batch.channel.pk,
                "external_order_id": order.external_order_id[:128],
                "source_name": batch.source_name,
                "state": State.CANCELLED if cancelled else State.PENDING,
                "state_reason": "cancelled on the channel before it was created" if cancelled else "",
                **_content_values(order, contents[order.external_order_id]),
                "content_sha256": hashes[order.external_order_id],
                "later_changes": [],
                "genstore_order_id": "",
                "next_attempt_at": None,
                "queued_at": None if cancelled else batch.now,
                "source_ref": order.source_ref[:255],
                "order_import_id": batch.order_import.pk if batch.order_import else None,
                "delivery_id": batch.delivery_id,
                "log": [log_entry(message, now=batch.now)],
                "received_at": batch.now,
                "updated_at": batch.now,
            }
        )
    written = rows_insert(
        ExternalOrder, rows, conflict=("channel_id", "external_order_id"), returning=("id", "external_order_id")
    )
    ids = {external_id: pk for pk, external_id in written}
    by_id = {order.external_order_id: order for order in orders}
    rows_insert(
        ExternalOrderLine, [line for external_id, pk in ids.items() for line in _line_rows(pk, by_id[external_id])]
    )
    for order in orders:
        if order.external_order_id in ids:
            batch.receipt.new_ids.append(ids[order.external_order_id])
            batch.receipt.due |= order.cancelled_at is None
    return set(ids)


def rows_lock_for_change(pks: Iterable[int]) -> None:
    """Inside a transaction, before changing these rows: wait until no drain works on them, and keep drains off them
    until the commit (PostgreSQL: each row's advisory lock, for the transaction, taken in one order so that two
    intakes never deadlock). Elsewhere (SQLite: one writer at a time) nothing to do."""
    keys = sorted(ExternalOrder.lock_id_of(pk) for pk in pks)
    if not keys or connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        # unnest yields the keys in the array's (sorted) order; count() makes every lock call run.
        cursor.execute("SELECT count(pg_advisory_xact_lock(k)) FROM unnest(%s::bigint[]) AS k", [keys])


_CHANGED_FIELDS = (
    "ordered_at", "currency", "email", "phone", "customer_name", "shipping_address", "billing_address",
    "shipping_price", "total_tax", "financial_status", "note", "tags", "channel_cancelled_at", "content", "raw",
    "content_sha256", "state", "state_reason", "next_attempt_at", "queued_at", "later_changes",
    "cancel_requested_at", "source_ref", "order_import", "delivery", "log", "updated_at",
)


def _apply_changes(
    batch: _Batch, orders: list[ExternalOrderInput], contents: dict[str, dict[str, Any]], hashes: dict[str, str]
) -> None:
    """Known orders whose content changed: lock their rows, read them again, and apply each change."""
    targets = ExternalOrder.objects.filter(
        channel=batch.channel, external_order_id__in=[order.external_order_id for order in orders]
    )
    rows_lock_for_change(targets.values_list("pk", flat=True))
    rows = {row.external_order_id: row for row in targets.select_for_update().order_by("pk")}
    written = []
    for order in orders:
        row = rows.get(order.external_order_id)
        if row is None:
            continue
        external_id = order.external_order_id
        if row.content_sha256 == hashes[external_id]:  # the same change arrived meanwhile
            batch.receipt.unchanged_ids.append(row.pk)
            continue
        _apply_change(batch, row, order, contents[external_id], hashes[external_id])
        row.updated_at = batch.now
        written.append(row)
    objects_update(written, _CHANGED_FIELDS)
    if batch.relined:
        ExternalOrderLine.objects.filter(external_order_id__in=list(batch.relined)).delete()
        rows_insert(ExternalOrderLine, [line for pk, order in batch.relined.items() for line in _line_rows(pk, order)])


def _apply_change(
    batch: _Batch, row: ExternalOrder, order: ExternalOrderInput, content: dict[str, Any], sha: str
) -> None:
    """One changed input onto its (locked) row; records the outcome in the receipt."""
    newly_cancelled = order.cancelled_at is not None and row.channel_cancelled_at is None
    row.source_ref = order.source_ref[:255]
    row.order_import = batch.order_import or row.order_import
    row.delivery_id = batch.delivery_id or row.delivery_id
    if row.state in _NOT_SENT and row.create_sent_at is None and not row.genstore_order_id:
        _replace_content(batch, row, order, content, sha)
        if order.cancelled_at is not None:
            row.state, row.state_reason, row.next_attempt_at, row.queued_at = (
                State.CANCELLED, "cancelled on the channel before it was created", None, None,
            )
            row.log = _logged(row.log, "cancelled on the channel before it was created: nothing is created", batch.now)
            batch.receipt.cancel_requested_ids.append(row.pk)
            return
        was_failed = row.state == State.FAILED
        row.state, row.state_reason, row.next_attempt_at, row.queued_at = State.PENDING, "", None, batch.now
        row.log = _logged(
            row.log, "changed on the channel before it was created" + (": trying again" if was_failed else ""),
            batch.now,
        )
        batch.relined[row.pk] = order
        batch.receipt.changed_ids.append(row.pk)
        batch.receipt.due = True
        return
    # Genstore has the order, may have it (a create was sent), or it was cancelled before creation: the content that
    # was sent stays; the change is recorded.
    previous = row.later_changes[-1]["content"] if row.later_changes else row.content
    recorded = content_without_personal_data(content) if row.personal_data_erased_at else content
    changes = [
        key for key in recorded
        if recorded.get(key) != previous.get(key) and not (key == "cancelledAt" and newly_cancelled)
    ]
    if changes:
        entry = {"at": batch.now.isoformat(timespec="seconds"), "changes": changes, "content": recorded}
        row.later_changes = [*row.later_changes, entry][-LATER_CHANGES_LIMIT:]
        row.log = _logged(row.log, f"changed on the channel after creation ({', '.join(changes)}): recorded, "
                                   "not sent to Genstore", batch.now)
    row.content_sha256 = sha
    if not row.personal_data_erased_at:
        row.raw = dict(order.raw)
    if newly_cancelled and row.state != State.CANCELLED:
        row.channel_cancelled_at = order.cancelled_at
        row.cancel_requested_at = batch.now
        row.next_attempt_at, row.queued_at = None, batch.now
        if row.state == State.FAILED:  # a create that may have happened: the drain reads back, then cancels
            row.state = State.PENDING
        row.log = _logged(row.log, f"cancelled on {batch.channel.name}: cancelling the Genstore order", batch.now)
        batch.receipt.cancel_requested_ids.append(row.pk)
        batch.receipt.due = True
        return
    batch.receipt.changed_ids.append(row.pk)


def _replace_content(
    batch: _Batch, row: ExternalOrder, order: ExternalOrderInput, content: dict[str, Any], sha: str
) -> None:
    values = _content_values(order, content)
    if row.personal_data_erased_at:  # an erased buyer stays erased
        values = order_values_without_personal_data(values)
    for name, value in values.items():
        setattr(row, name, value)
    row.content_sha256 = sha


# --- queueing the drain ---------------------------------------------------------------------------------------


def external_order_drains() -> int:
    """How many drains a store has at once (OMA_EXTERNAL_ORDER_DRAINS, within 1..ExternalOrderDrain.SLOTS_MAX)."""
    return max(1, min(int(settings.OMA_EXTERNAL_ORDER_DRAINS), ExternalOrderDrain.SLOTS_MAX))


def external_orders_drain_enqueue(*, store_id: int, slot: int | None = None, countdown: float | None = None) -> None:
    """Queue the store's drains once the current transaction commits (outside one: at once): drain `slot`, or (None)
    one drain per slot whose share has rows due. A broker that is down only delays the work: beat queues drains for
    every store with rows due."""
    task = current_app.tasks[DRAIN_TASK]
    due = [slot] if slot is not None else _slots_due(store_id=store_id, slots=external_order_drains())
    calls = [(store_id, due_slot) for due_slot in due]
    if countdown is None:
        enqueue_each_on_commit(task, calls)
        return
    for call in calls:  # a later start (the drain was rate limited): published now, it runs outside any transaction
        publish(task, *call, countdown=countdown)


def _slots_due(*, store_id: int, slots: int) -> list[int]:
    """The drain slots whose share of the store's rows has work due (what this transaction wrote included)."""
    rows = ExternalOrder.objects.filter(store_id=store_id).filter(external_orders_due_q(now=timezone.now()))
    if slots == 1:
        return [0] if rows.exists() else []
    shares = rows.alias(drain_slot=Mod("pk", slots))
    return [slot for slot in range(slots) if shares.filter(drain_slot=slot).exists()]
