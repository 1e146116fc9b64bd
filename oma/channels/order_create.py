"""Creating external orders in Genstore exactly once, cancelling them, and the store's drain that does both.

`external_order_create(external_order_id=...)` is the whole creation of one row (the drain, and nothing else, calls
it), with the care fulfillment pushes take (oma.fulfillment.services.push), since Genstore has no idempotency key:

1. **Intent.** The row exists (`pending`) before anything is sent (oma.channels.order_intake). One worker at a
   time holds it: a PostgreSQL advisory lock, which PostgreSQL drops the moment a killed worker's connection goes;
   elsewhere a lease on the row (`lease_until`).
2. **The mirror first.** An order of the store with the same sourceName (any case) and sourceIdentifier is already
   in Genstore: the row adopts it, no request (two such orders: refused, for the merchant to settle).
3. **Read before write.** A row whose create was sent (`create_sent_at`) without an answer may have been created:
   it is read back (`GET /orders?updatedAtMin=`, matched on the pair) and the order found is taken. Only when none
   is found: `create_sent_at` and `creating` are saved, then `POST /orders`.
4. **Ambiguous answers.** A timeout or a 5xx after the POST: read back at once; found, it is ours; not found, the
   row waits (backoff) and its next attempt reads back again before writing. A killed worker leaves `creating`
   with `create_sent_at`: the next drain reads back too. Never two Genstore orders for one row.
5. **Refusals.** 400/422 fail the row with Genstore's own message; 401/403 with "the store's token was refused";
   a 429 leaves it pending until the bucket has room. `external_order_retry` sends a failed row round again.
6. **Created.** The Genstore orderId, the line ids (by position, else by SKU) and the order in the mirror
   (`order_upsert`, whose orders_changed lets waiting tracking records match it).

`external_order_cancel`: a row Genstore never got is simply cancelled; a created one is read again and cancelled
once (`cancel_sent_at` first), unless something was fulfilled or shipped: then it is flagged (`needs_attention`)
for the merchant, never cancelled by OMA.

`external_orders_drain(store_id=..., slot=..., slots=...)`: a store has `slots` drains at once
(OMA_EXTERNAL_ORDER_DRAINS), each over its own share of the due rows (pk % slots == slot), oldest first, within a
time budget; one drain per (store, slot) at a time (PostgreSQL: an advisory lock; elsewhere a lease on
`ExternalOrderDrain`). Each has its own Genstore client, and all take their requests from the store's shared token
bucket, which sets the pace: one drain alone waits on each round trip, several keep the bucket busy. The rows stay
exactly once by their own locks whatever the drains do. The task re-queues a drain while its share has rows due.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from celery.exceptions import SoftTimeLimitExceeded
from django.db import connection, transaction
from django.utils import timezone

from oma.channels.models import ExternalOrder, ExternalOrderDrain, ExternalOrderLine
from oma.channels.order_intake import external_orders_drain_enqueue, log_entry, rows_lock_for_change
from oma.channels.selectors import EXTERNAL_ORDERS_DUE_PER_QUERY, external_orders_due
from oma.core.leases import advisory_lock, lease_release, lease_take
from oma.core.retry import RetryPolicy
from oma.genstore.client import GenstoreClient
from oma.genstore.errors import (
    GenstoreAuthError,
    GenstoreError,
    GenstoreNotFound,
    GenstoreRateLimited,
    GenstoreUnprocessable,
)
from oma.genstore.fulfillment_status import DEAD_FULFILLMENT_STATUSES
from oma.genstore.records import OrderDraft, OrderDraftLine, OrderRecord
from oma.orders.models import GenstoreFulfillment, LineItem, Order
from oma.orders.services import order_upsert
from oma.orders.signals import OrdersChangedBatch, orders_changed_collected
from oma.stores.models import Store
from oma.stores.services import genstore_client_for
from tracking.models import Shipment

logger = logging.getLogger(__name__)

State = ExternalOrder.State

LOG_LIMIT = 30
# A worker holds a row this long at most on SQLite (PostgreSQL: its advisory lock, for as long as it lives).
ROW_LEASE = timedelta(minutes=10)
# One drain per (store, slot); on SQLite its lease outlives the drain's budget and its last request.
DRAIN_LEASE = timedelta(minutes=5)
# A drain stops taking rows after this long (well inside the task's time limits) and is queued again if rows remain.
DRAIN_TIME_BUDGET_SECONDS = 50.0
# A create or cancel Genstore did not answer waits 10-15 s, doubling up to 30 min (oma.core.retry's one formula).
CREATE_RETRY = RetryPolicy(backoff_base=15.0, backoff_cap=30 * 60.0, jitter_floor=2 / 3)
_SHIPPED_FULFILLMENT_STATUSES = frozenset({"partial", "fulfilled"})
_PARCEL_VOIDED = "cancelled"  # tracking's status of a voided label


class CreateResult(StrEnum):
    CREATED = "created"  # a new Genstore order (or our earlier create, found by reading back)
    ADOPTED = "adopted"  # Genstore already had the order (same sourceName and sourceIdentifier)
    UNCHANGED = "unchanged"  # nothing to do: created, adopted, cancelled or failed already
    FAILED = "failed"  # Genstore refused, or something only the merchant can settle
    RETRY = "retry"  # Genstore did not answer: pending, with a backoff
    BUSY = "busy"  # another worker holds the row
    NOT_FOUND = "not_found"


class CancelResult(StrEnum):
    CANCELLED = "cancelled"  # cancelled in Genstore, or never sent there
    FLAGGED = "flagged"  # something was fulfilled: left to the merchant (`needs_attention`)
    UNCHANGED = "unchanged"
    RETRY = "retry"
    BUSY = "busy"
    NOT_FOUND = "not_found"


@dataclass(slots=True)
class CreateOutcome:
    result: CreateResult
    row: ExternalOrder | None = None
    detail: str = ""
    retry_after: float | None = None  # seconds until the row may be tried again (RETRY)
    rate_limited: bool = False
    requests: int = 0  # Genstore HTTP requests made


@dataclass(slots=True)
class CancelOutcome:
    result: CancelResult
    row: ExternalOrder | None = None
    detail: str = ""
    retry_after: float | None = None
    rate_limited: bool = False
    requests: int = 0


# --- the row, its lock and its log ------------------------------------------------------------------------------


@contextlib.contextmanager
def _row_lock(pk: int) -> Iterator[bool]:
    """Hold the row exclusively; yields False when another worker holds it (see the module docstring)."""
    if connection.vendor == "postgresql":
        with advisory_lock(ExternalOrder.lock_id_of(pk)) as locked:
            yield locked
        return
    rows = ExternalOrder.objects.filter(pk=pk)
    if not lease_take(rows, ttl=ROW_LEASE, holder_field=None, until_field="lease_until"):
        yield False
        return
    try:
        yield True
    finally:
        lease_release(rows, holder_field=None, until_field="lease_until")


@dataclass(slots=True)
class _Hold:
    row: ExternalOrder | None  # None: no such row
    held: bool  # False: another worker holds it


@contextlib.contextmanager
def _locked_row(pk: int) -> Iterator[_Hold]:
    """The row, loaded once its lock is held (loaded once: a drain reads each row once)."""
    with _row_lock(pk) as locked:
        yield _Hold(row=_load(pk), held=locked)


def _log(row: ExternalOrder, message: str) -> None:
    row.log = [*row.log, log_entry(message)][-LOG_LIMIT:]


def _save(row: ExternalOrder, *fields: str) -> None:
    """Only the fields named (never the buyer's: an erasure meanwhile must stand)."""
    row.save(update_fields=[*dict.fromkeys([*fields, "log", "updated_at"])])


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=CREATE_RETRY.backoff(max(0, attempts - 1)))


def _load(external_order_id: int) -> ExternalOrder | None:
    return ExternalOrder.objects.select_related("store", "channel").filter(pk=external_order_id).first()


@dataclass(slots=True)
class _Genstore:
    client: GenstoreClient
    requests_before: int

    @property
    def requests(self) -> int:
        return self.client.stats.requests - self.requests_before


class _Refused(Exception):
    """Ends an attempt as failed without calling Genstore further."""


# --- what is already in Genstore ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Found:
    order: Order
    lines: Sequence[tuple[str, str]]  # Genstore's (line item id, sku), in its order
    via: str  # "mirror" or "read-back"


def _found_in_mirror(row: ExternalOrder) -> _Found | None:
    orders = list(
        Order.objects.filter(
            store_id=row.store_id, source_name__iexact=row.source_name, source_identifier=row.external_order_id
        ).order_by("pk")[:3]
    )
    if len(orders) > 1:
        names = ", ".join(order.name or order.order_id for order in orders)
        raise _Refused(
            f"Genstore already holds more than one order for {row.source_name} {row.external_order_id} ({names}): "
            "settle it in Genstore; nothing was created"
        )
    if not orders:
        return None
    lines = LineItem.objects.filter(order=orders[0]).order_by("pk").values_list("line_item_id", "sku")
    return _Found(order=orders[0], lines=list(lines), via="mirror")


def _mirrored(row: ExternalOrder, record: OrderRecord, via: str) -> _Found:
    """A Genstore order we hold the full record of: into the mirror (its hooks match waiting tracking records)."""
    order = order_upsert(store=row.store, record=record).order
    return _Found(order=order, lines=[(line.id, line.sku or "") for line in record.line_items], via=via)


def _read_back(row: ExternalOrder, genstore: _Genstore) -> _Found | None:
    """The order an earlier create may have made (sent at `create_sent_at`), read from Genstore."""
    assert row.create_sent_at is not None
    found = genstore.client.orders_by_source(
        source_name=row.source_name, source_identifiers=[row.external_order_id], since=row.create_sent_at
    )
    record = found.get(row.external_order_id)
    return _mirrored(row, record, "read-back") if record is not None else None


def _existing(row: ExternalOrder, genstore: _Genstore | None) -> _Found | None:
    """The Genstore order this row already has: in the mirror, or (after a create that may have happened) read
    back. `genstore` None: the mirror only."""
    found = _found_in_mirror(row)
    if found is not None or row.create_sent_at is None or genstore is None:
        return found
    return _read_back(row, genstore)


def _take(row: ExternalOrder, found: _Found, *, adopted: bool) -> CreateResult:
    """The row has its Genstore order: ids, lines, state."""
    order = found.order
    now = timezone.now()
    row.genstore_order_id = order.order_id
    row.order = order
    row.state = State.ADOPTED if adopted else State.CREATED
    name = order.name or order.order_id
    if adopted:
        row.state_reason = (
            f"already in Genstore as order {name} (sourceName {row.source_name}, sourceIdentifier "
            f"{row.external_order_id}): adopted, not created"
        )[:512]
        _log(row, f"adopted Genstore order {name} ({found.via}): it was already there")
    else:
        row.state_reason = ""
        row.created_in_genstore_at = row.created_in_genstore_at or now
        if found.via == "created":
            _log(row, f"created Genstore order {name}")
        else:
            _log(row, f"our earlier create did reach Genstore: order {name} found ({found.via})")
    row.last_error, row.last_error_status, row.next_attempt_at, row.queued_at = "", None, None, None
    with transaction.atomic():
        _save(row, "genstore_order_id", "order", "state", "state_reason", "created_in_genstore_at", "last_error",
              "last_error_status", "next_attempt_at", "queued_at")
        _line_ids_assign(row, found.lines)
    return CreateResult.ADOPTED if adopted else CreateResult.CREATED


def _line_ids_assign(row: ExternalOrder, genstore_lines: Sequence[tuple[str, str]]) -> None:
    """Each line's Genstore line item: the one at its position when the SKUs agree, else the first unused one with
    its SKU."""
    lines = list(ExternalOrderLine.objects.filter(external_order=row).order_by("position"))
    used: set[str] = set()
    for index, line in enumerate(lines):
        line.genstore_line_item_id = ""
        if index < len(genstore_lines):
            line_id, sku = genstore_lines[index]
            if not sku or not line.sku or sku == line.sku:
                line.genstore_line_item_id = line_id
        if not line.genstore_line_item_id:
            line.genstore_line_item_id = next(
                (line_id for line_id, sku in genstore_lines if sku == line.sku and line_id not in used), ""
            )
        used.add(line.genstore_line_item_id)
    ExternalOrderLine.objects.bulk_update(lines, ["genstore_line_item_id"])


# --- creating -----------------------------------------------------------------------------------------------------


def _address(value: object) -> dict[str, str] | None:
    """A stored address (AddressInput.as_json(): OMA's neutral keys, which the draft takes as they are)."""
    if not isinstance(value, dict):
        return None
    return {str(key): str(part) for key, part in value.items() if part} or None


def order_draft_for(row: ExternalOrder) -> OrderDraft:
    """What POST /orders is asked to create for the row (its content as received; the lines as stored)."""
    lines = ExternalOrderLine.objects.filter(external_order=row).order_by("position")
    return OrderDraft(
        source_name=row.source_name,
        source_identifier=row.external_order_id,
        currency=row.currency,
        line_items=tuple(
            OrderDraftLine(
                sku=line.sku, title=line.title, quantity=line.quantity, price=line.price,
                variant_title=line.variant_title or None,
            )
            for line in lines
        ),
        email=row.email or None,
        phone=row.phone or None,
        processed_at=row.ordered_at,
        # The channel's paid orders take Genstore's default (paid); only "pending" is said (the contract's two).
        financial_status="pending" if row.financial_status == "pending" else None,
        shipping_address=_address(row.shipping_address),
        billing_address=_address(row.billing_address),
        shipping_lines=(("Shipping", row.shipping_price),) if row.shipping_price else (),
        total_tax=row.total_tax,
        note=row.note or None,
        tags=tuple(str(tag) for tag in row.tags or ()),
    )


def external_order_create(*, external_order_id: int, client: GenstoreClient | None = None) -> CreateOutcome:
    """Bring one pending row into Genstore, exactly once (see the module docstring). Safe to run any number of
    times, concurrently or after a crash."""
    with _locked_row(external_order_id) as hold:
        return _create_locked(hold, client)


def _create_locked(hold: _Hold, client: GenstoreClient | None) -> CreateOutcome:
    row = hold.row
    if row is None:
        return CreateOutcome(CreateResult.NOT_FOUND, detail="no such external order")
    if not hold.held:
        return CreateOutcome(CreateResult.BUSY, row=row, detail="another worker holds this order")
    if row.state not in (State.PENDING, State.CREATING):
        return CreateOutcome(CreateResult.UNCHANGED, row=row, detail=f"the order is {row.state}")
    genstore: _Genstore | None = None
    try:
        genstore_client = client or genstore_client_for(row.store)
        genstore = _Genstore(client=genstore_client, requests_before=genstore_client.stats.requests)
        result = _create(row, genstore)
    except _Refused as refused:
        return _finish_refused(row, str(refused), genstore)
    except GenstoreError as exc:
        return _finish_error(row, exc, genstore)
    except BaseException as exc:
        # Our own bug or a killed task: pending again; with a create sent, the next attempt reads back first.
        _after_crash(row, exc)
        raise
    finally:
        if client is None and genstore is not None:
            genstore.client.close()
    return CreateOutcome(result, row=row, requests=genstore.requests)


def _create(row: ExternalOrder, genstore: _Genstore) -> CreateResult:
    if row.create_sent_at is not None:
        _log(row, "an earlier create may have reached Genstore: reading it back before writing")
    found = _existing(row, genstore)
    if found is not None:
        # Found in the mirror with no create of ours sent: it was there before us.
        return _take(row, found, adopted=found.via == "mirror" and row.create_sent_at is None)
    draft = order_draft_for(row)
    now = timezone.now()
    # The first send time stays: a create Genstore applies late must still fall in every later read-back's window.
    earlier_send = row.create_sent_at
    row.create_sent_at, row.state, row.last_attempt_at, row.queued_at = earlier_send or now, State.CREATING, now, None
    row.attempts += 1
    _log(row, f"creating in Genstore (attempt {row.attempts})")
    _save(row, "create_sent_at", "state", "last_attempt_at", "queued_at", "attempts")
    try:
        record = genstore.client.create_order(draft)
    except ValueError as exc:  # refused by the client before sending: nothing reached Genstore
        row.create_sent_at = earlier_send
        raise _Refused(f"OMA cannot send this order to Genstore: {exc}") from exc
    except GenstoreError as exc:
        if not exc.ambiguous:
            # Genstore did not act on this attempt (a refusal, a 429, no connection); an earlier unanswered attempt
            # may still land late, so its send time is kept and the next attempt reads back again.
            row.create_sent_at = earlier_send
            raise
        _log(row, f"create unanswered ({exc}): reading back")
        try:
            found = _read_back(row, genstore)
        except GenstoreError:
            raise exc from None
        if found is None:
            raise
        return _take(row, found, adopted=False)
    return _take(row, _mirrored(row, record, "created"), adopted=False)


def _finish_refused(
    row: ExternalOrder, reason: str, genstore: _Genstore | None, *, error: str = "", status: int | None = None
) -> CreateOutcome:
    """Failed: `reason` for people; `error` and `status` Genstore's own message and status, when it answered."""
    row.state = State.FAILED
    row.state_reason = reason[:512]
    row.last_error, row.last_error_status, row.next_attempt_at = (error or reason)[:2000], status, None
    _log(row, f"failed: {reason}")
    _save(row, "state", "state_reason", "last_error", "last_error_status", "next_attempt_at", "create_sent_at")
    return CreateOutcome(CreateResult.FAILED, row=row, detail=reason, requests=genstore.requests if genstore else 0)


def _refusal_reason(exc: GenstoreError, *, what: str) -> str:
    if isinstance(exc, GenstoreAuthError):
        return "the store's token was refused (reconnect the store)"
    if isinstance(exc, GenstoreUnprocessable):
        return f"Genstore refused {what}: {exc.error_text or exc}"
    if isinstance(exc, GenstoreNotFound):
        return f"Genstore does not know {what}: {exc.error_text or exc}"
    return f"Genstore refused {what}: {exc.error_text or exc}"


def _retry_delay(exc: GenstoreError, attempts: int) -> timedelta:
    if isinstance(exc, GenstoreRateLimited) and exc.retry_after:
        return timedelta(seconds=exc.retry_after)
    return _backoff(attempts)


def _finish_error(row: ExternalOrder, exc: GenstoreError, genstore: _Genstore | None) -> CreateOutcome:
    requests = genstore.requests if genstore else 0
    row.last_error = (exc.error_text or str(exc))[:2000]
    row.last_error_status = exc.status
    if exc.transient or exc.ambiguous:
        delay = _retry_delay(exc, row.attempts)
        row.state = State.PENDING
        row.state_reason = f"Genstore did not answer: trying again after {int(delay.total_seconds())} s"
        if row.create_sent_at is not None:
            row.state_reason += " (reading back first)"
        row.next_attempt_at = timezone.now() + delay
        _log(row, f"will retry: {exc}")
        _save(row, "state", "state_reason", "next_attempt_at", "last_error", "last_error_status", "create_sent_at")
        return CreateOutcome(
            CreateResult.RETRY, row=row, detail=str(exc), retry_after=delay.total_seconds(),
            rate_limited=isinstance(exc, GenstoreRateLimited), requests=requests,
        )
    return _finish_refused(
        row, _refusal_reason(exc, what="the order"), genstore, error=row.last_error, status=row.last_error_status
    )


def _after_crash(row: ExternalOrder, exc: BaseException) -> None:
    try:
        row.state = State.PENDING
        row.last_error = f"{type(exc).__name__}: {exc}"[:2000]
        row.next_attempt_at = timezone.now() + _backoff(row.attempts)
        _save(row, "state", "last_error", "next_attempt_at")
    except Exception:  # the database went with it: the row stays creating, and the next drain reads back
        logger.warning("external order %s: could not record the interrupted attempt", row.pk)


# --- cancelling ---------------------------------------------------------------------------------------------------


def external_order_cancel(*, external_order_id: int, client: GenstoreClient | None = None) -> CancelOutcome:
    """Cancel the row's Genstore order once (see the module docstring); a row Genstore never got is cancelled with
    no request. A repeat does nothing."""
    with _locked_row(external_order_id) as hold:
        return _cancel_locked(hold, client)


def _cancel_locked(hold: _Hold, client: GenstoreClient | None) -> CancelOutcome:
    row = hold.row
    if row is None:
        return CancelOutcome(CancelResult.NOT_FOUND, detail="no such external order")
    if not hold.held:
        return CancelOutcome(CancelResult.BUSY, row=row, detail="another worker holds this order")
    if row.state == State.CANCELLED:
        return CancelOutcome(CancelResult.UNCHANGED, row=row, detail="cancelled already")
    if not row.genstore_order_id and row.create_sent_at is None:
        return _cancelled_unsent(row, "cancelled before it was sent to Genstore: nothing was created")
    genstore: _Genstore | None = None
    try:
        genstore_client = client or genstore_client_for(row.store)
        genstore = _Genstore(client=genstore_client, requests_before=genstore_client.stats.requests)
        outcome = _cancel(row, genstore)
    except GenstoreError as exc:
        return _finish_cancel_error(row, exc, genstore)
    except _Refused as refused:  # two Genstore orders for the pair: the merchant settles it
        _flag(row, str(refused))
        return CancelOutcome(CancelResult.FLAGGED, row=row, detail=str(refused),
                             requests=genstore.requests if genstore else 0)
    finally:
        if client is None and genstore is not None:
            genstore.client.close()
    outcome.requests = genstore.requests
    return outcome


def _cancelled_unsent(row: ExternalOrder, reason: str) -> CancelOutcome:
    row.state, row.state_reason, row.next_attempt_at, row.queued_at = State.CANCELLED, reason[:512], None, None
    _log(row, reason)
    _save(row, "state", "state_reason", "next_attempt_at", "queued_at")
    return CancelOutcome(CancelResult.CANCELLED, row=row, detail=reason)


def _cancel(row: ExternalOrder, genstore: _Genstore) -> CancelOutcome:
    if not row.genstore_order_id:
        found = _existing(row, genstore)
        if found is None:
            return _cancelled_unsent(row, "cancelled; the earlier create never reached Genstore: nothing was created")
        _take(row, found, adopted=False)
    fresh = genstore.client.get_order(row.genstore_order_id)
    order = order_upsert(store=row.store, record=fresh).order
    row.order = order
    if fresh.cancelled:
        return _cancelled_in_genstore(row, fresh, "cancelled in Genstore already")
    shipped = _shipped(order, fresh)
    if shipped:
        channel = row.channel.name
        _flag(row, f"cancelled on {channel} after something shipped ({shipped}): settle it in Genstore")
        return CancelOutcome(CancelResult.FLAGGED, row=row, detail=row.needs_attention)
    row.cancel_sent_at = timezone.now()
    _log(row, f"cancelling Genstore order {order.name or order.order_id}")
    _save(row, "cancel_sent_at", "order")
    record = genstore.client.cancel_order(row.genstore_order_id, reason="other")
    order_upsert(store=row.store, record=record)
    return _cancelled_in_genstore(row, record, f"cancelled in Genstore (cancelled on {row.channel.name})")


def _cancelled_in_genstore(row: ExternalOrder, record: OrderRecord, reason: str) -> CancelOutcome:
    row.state, row.state_reason = State.CANCELLED, reason[:512]
    row.cancelled_in_genstore_at = record.cancelled_at or timezone.now()
    row.next_attempt_at, row.queued_at, row.last_error, row.last_error_status = None, None, "", None
    _log(row, reason)
    _save(row, "state", "state_reason", "cancelled_in_genstore_at", "next_attempt_at", "queued_at", "last_error",
          "last_error_status", "order")
    return CancelOutcome(CancelResult.CANCELLED, row=row, detail=reason)


def _shipped(order: Order, fresh: OrderRecord) -> str:
    """What was fulfilled or shipped of the order ("" when nothing): Genstore's statuses and fulfillments, the
    mirror's fulfillments (OMA's pushes land there) and the parcels OMA tracks for it."""
    if (fresh.fulfillment_status or "") in _SHIPPED_FULFILLMENT_STATUSES:
        return f"Genstore says {fresh.fulfillment_status}"
    live = [f for f in fresh.fulfillments if (f.status or "") not in DEAD_FULFILLMENT_STATUSES]
    if live:
        return f"fulfillment {live[0].fulfill_id}"
    mirrored = (
        GenstoreFulfillment.objects.filter(order=order).exclude(status__in=DEAD_FULFILLMENT_STATUSES)
        .values_list("fulfill_id", flat=True).first()
    )
    if mirrored:
        return f"fulfillment {mirrored}"
    parcel = (
        Shipment.objects.filter(order=order).exclude(status=_PARCEL_VOIDED).values_list("tracking_number", flat=True)
        .first()
    )
    return f"parcel {parcel}" if parcel else ""


def _flag(row: ExternalOrder, reason: str) -> None:
    row.needs_attention = reason[:512]
    row.next_attempt_at, row.queued_at = None, None
    _log(row, reason)
    _save(row, "needs_attention", "next_attempt_at", "queued_at", "order")


def _finish_cancel_error(row: ExternalOrder, exc: GenstoreError, genstore: _Genstore | None) -> CancelOutcome:
    requests = genstore.requests if genstore else 0
    row.last_error = (exc.error_text or str(exc))[:2000]
    row.last_error_status = exc.status
    if exc.transient or exc.ambiguous:
        row.attempts += 1  # each unanswered cancel waits longer
        delay = _retry_delay(exc, row.attempts)
        row.next_attempt_at = timezone.now() + delay
        _log(row, f"cancel will retry: {exc}")
        _save(row, "next_attempt_at", "last_error", "last_error_status", "attempts")
        return CancelOutcome(
            CancelResult.RETRY, row=row, detail=str(exc), retry_after=delay.total_seconds(),
            rate_limited=isinstance(exc, GenstoreRateLimited), requests=requests,
        )
    _flag(row, f"could not cancel it in Genstore: {_refusal_reason(exc, what='the cancel')}")
    _save(row, "last_error", "last_error_status")
    return CancelOutcome(CancelResult.FLAGGED, row=row, detail=row.needs_attention, requests=requests)


# --- what people ask for (admin) ------------------------------------------------------------------------------


def external_order_retry(*, external_order_id: int) -> None:
    """A failed row goes round again: pending, due now, the store's drain queued after the commit."""
    now = timezone.now()
    with transaction.atomic():
        rows_lock_for_change([external_order_id])
        row = ExternalOrder.objects.select_for_update().filter(pk=external_order_id, state=State.FAILED).first()
        if row is None:
            return
        row.state, row.state_reason, row.next_attempt_at, row.queued_at = State.PENDING, "retry requested", None, now
        _log(row, "retry requested")
        _save(row, "state", "state_reason", "next_attempt_at", "queued_at")
        external_orders_drain_enqueue(store_id=row.store_id)


def external_order_cancel_request(*, external_order_id: int) -> None:
    """The merchant cancels the order (admin): the same path as a cancel from the channel. A flagged row is
    looked at again (the merchant may have settled what shipped)."""
    now = timezone.now()
    with transaction.atomic():
        rows_lock_for_change([external_order_id])
        row = ExternalOrder.objects.select_for_update().filter(pk=external_order_id).exclude(
            state=State.CANCELLED
        ).first()
        if row is None:
            return
        if not row.genstore_order_id and row.create_sent_at is None:
            _cancelled_unsent(row, "cancelled by the merchant before it was sent to Genstore: nothing was created")
            return
        row.cancel_requested_at, row.needs_attention, row.next_attempt_at, row.queued_at = now, "", None, now
        if row.state == State.FAILED:  # a create that may have happened: the drain reads back, then cancels
            row.state = State.PENDING
        _log(row, "cancel requested by the merchant")
        _save(row, "cancel_requested_at", "needs_attention", "next_attempt_at", "queued_at", "state")
        external_orders_drain_enqueue(store_id=row.store_id)


# --- the drain ------------------------------------------------------------------------------------------------


def external_order_work(
    *, external_order_id: int, client: GenstoreClient | None = None
) -> CreateOutcome | CancelOutcome:
    """The due work of one row, under one hold of its lock: its cancel when one is owed, else its creation."""
    with _locked_row(external_order_id) as hold:
        row = hold.row
        if row is not None and row.cancel_requested_at is not None and row.state != State.CANCELLED:
            return _cancel_locked(hold, client)
        return _create_locked(hold, client)


@dataclass
class DrainResult:
    store_id: int
    slot: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    busy: bool = False  # another drain holds the store
    stopped: str = ""  # why it ended with rows left
    more_due: bool = False  # rows are due still: queue the drain again
    retry_after: float | None = None  # Genstore asked to wait this long (rate limited)
    requests: int = 0

    @property
    def progressed(self) -> bool:
        return any(count for result, count in self.outcomes.items() if result not in ("busy", "error"))

    def describe(self) -> str:
        if self.busy:
            return f"busy: another drain works on share {self.slot} of this store"
        text = ", ".join(f"{count} {result}" for result, count in sorted(self.outcomes.items())) or "nothing due"
        text += f" in {self.requests} requests"
        return f"{text}; stopped: {self.stopped}" if self.stopped else text


@contextlib.contextmanager
def _drain_lock(store_id: int, slot: int) -> Iterator[bool]:
    if connection.vendor == "postgresql":
        with advisory_lock(ExternalOrderDrain.lock_id_of(store_id, slot)) as locked:
            yield locked
        return
    ExternalOrderDrain.objects.get_or_create(store_id=store_id, slot=slot)
    rows = ExternalOrderDrain.objects.filter(store_id=store_id, slot=slot)
    if not lease_take(rows, ttl=DRAIN_LEASE, holder_field=None, until_field="lease_until"):
        yield False
        return
    try:
        yield True
    finally:
        lease_release(rows, holder_field=None, until_field="lease_until")


def external_orders_drain(
    *,
    store_id: int,
    slot: int = 0,
    slots: int = 1,
    time_budget_seconds: float = DRAIN_TIME_BUDGET_SECONDS,
    client: GenstoreClient | None = None,
) -> DrainResult:
    """Work through drain `slot`'s share of the store's due rows (all of them when `slots` is 1), oldest first, until
    none is left or the budget is used (see the module docstring). `more_due` says whether to queue it again."""
    if not 0 <= slot < slots <= ExternalOrderDrain.SLOTS_MAX:
        raise ValueError(f"drain slot {slot} of {slots}: 0 <= slot < slots <= {ExternalOrderDrain.SLOTS_MAX}")
    share = _Share(store_id=store_id, slot=slot, slots=slots)
    result = DrainResult(store_id=store_id, slot=slot)
    store = Store.objects.filter(pk=store_id).first()
    if store is None or not store.is_active:
        result.stopped = "the store is gone or inactive"
        return result
    started = timezone.now()
    with _drain_lock(store_id, slot) as held:
        if not held:
            result.busy = True
            return result
        genstore_client = client or genstore_client_for(store)
        requests_before = genstore_client.stats.requests
        try:
            # The receivers of orders_changed (tracking records waiting for these orders, unified statuses...) run
            # once per chunk of created orders, not once per order: they were most of a create's CPU.
            with orders_changed_collected() as changed:
                _drain_rows(
                    share, result, genstore_client, deadline=time.monotonic() + time_budget_seconds, changed=changed
                )
        finally:
            result.requests = genstore_client.stats.requests - requests_before
            if client is None:
                genstore_client.close()
            _drain_record(share, started=started, result=result)
    # After the lock is let go: a drain queued while this one held it found it busy; this answer covers its rows.
    result.more_due = bool(share.due(after_pk=0, limit=1))
    log = logger.info if result.outcomes else logger.debug
    log("external orders of store %s (drain %s of %s): %s", store.domain, slot, slots, result.describe())
    return result


# Created orders whose orders_changed is sent together (a chunk takes about a second at Genstore's pace).
CHANGED_CHUNK = 50


@dataclass(frozen=True, slots=True)
class _Share:
    """The rows one drain works: the store's with pk % slots == slot."""

    store_id: int
    slot: int
    slots: int

    def due(self, *, after_pk: int, limit: int = EXTERNAL_ORDERS_DUE_PER_QUERY) -> list[int]:
        return external_orders_due(
            store_id=self.store_id, now=timezone.now(), after_pk=after_pk, limit=limit, slot=self.slot,
            slots=self.slots,
        )


def _drain_rows(
    share: _Share, result: DrainResult, client: GenstoreClient, *, deadline: float, changed: OrdersChangedBatch
) -> None:
    last_pk = 0
    worked = 0
    while True:
        ids = share.due(after_pk=last_pk)
        if not ids:
            return
        for pk in ids:
            if time.monotonic() >= deadline:
                result.stopped = "time budget used up"
                return
            last_pk = pk
            try:
                outcome = external_order_work(external_order_id=pk, client=client)
            except SoftTimeLimitExceeded:
                raise  # the task's time is up: the row is pending again (or creating: read back first)
            except Exception:
                # One row's trouble (our bug, a database hiccup) does not hold the store's other orders back.
                logger.exception("external order %s: the attempt failed; it is pending again", pk)
                result.outcomes["error"] += 1
                continue
            result.outcomes[outcome.result.value] += 1
            worked += 1
            if worked % CHANGED_CHUNK == 0:
                changed.flush()
            if outcome.rate_limited:
                result.stopped = "rate limited"
                result.retry_after = outcome.retry_after
                return


def _drain_record(share: _Share, *, started: datetime, result: DrainResult) -> None:
    ExternalOrderDrain.objects.update_or_create(
        store_id=share.store_id, slot=share.slot,
        defaults={
            "last_started_at": started, "last_finished_at": timezone.now(), "last_outcome": result.describe()[:512],
        },
    )
