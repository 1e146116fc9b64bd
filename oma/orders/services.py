"""Writing the order mirror: upserts (webhooks and sweeps share one path) and the sweeps themselves."""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Literal

from django.conf import settings
from django.db import DataError, IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

from oma.core.bulk import JsonText, rows_insert
from oma.core.locking import lost_a_lock_race
from oma.core.planner import PlannerStatistics
from oma.genstore.errors import GenstoreError
from oma.genstore.records import FulfillmentRecord, OrderRecord
from oma.orders.compliance import order_raw_without_personal_data
from oma.orders.models import GenstoreFulfillment, LineItem, Order, SyncRun
from oma.orders.signals import orders_changed_has_receivers, orders_changed_send
from oma.stores.models import Store
from oma.stores.services import (
    genstore_client_for,
    store_sweep_lease_acquire,
    store_sweep_lease_release,
    store_sweep_lease_renew,
)

if TYPE_CHECKING:
    from oma.genstore.client import GenstoreClient, OrderPage

logger = logging.getLogger(__name__)

Outcome = Literal["created", "updated", "unchanged", "stale"]

# Order columns written from a record (everything but keys and bookkeeping); an update sets these.
_ORDER_COLUMNS = (
    "genstore_id", "name", "source_name", "source_identifier", "financial_status", "fulfillment_status",
    "cancelled_at", "cancel_reason", "genstore_created_at", "genstore_updated_at", "email", "total_price",
    "subtotal_price", "currency", "raw", "payload_hash", "parse_problems", "last_synced_at", "updated_at",
)
_LINE_ITEM_COLUMNS = (
    "product_id", "variant_id", "sku", "title", "variant_title", "quantity", "fulfillable_quantity",
    "fulfillment_status", "requires_shipping", "price", "grams",
)
_FULFILLMENT_COLUMNS = (
    "order_id", "status", "shipment_status", "tracking_number", "tracking_company", "tracking_url", "line_items",
    "genstore_created_at", "genstore_updated_at", "last_synced_at",
)

@dataclass
class PageCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    stale: int = 0
    outcomes: dict[str, Outcome] = field(default_factory=dict)  # orderId -> outcome
    changed_order_ids: list[int] = field(default_factory=list)

    def add(self, other: PageCounts) -> None:
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.stale += other.stale
        self.outcomes.update(other.outcomes)
        self.changed_order_ids.extend(other.changed_order_ids)


@dataclass(frozen=True)
class UpsertResult:
    outcome: Outcome
    order: Order


# --- fitting Genstore's values into the mirror's columns ------------------------------------------------------------
# A value the parser accepted may still not fit a column (a price of 1e20, a quantity beyond 32 bits, a NUL
# character, which PostgreSQL refuses in text and jsonb). Such a value is left empty and noted in parse_problems,
# like a value that did not parse: one odd field must never keep an order, or its page, out of the mirror.

_CENT = Decimal("0.01")
_MONEY_BOUND = Decimal(10) ** 12  # numeric(14, 2)
_INT_BOUND = 2**31  # integer columns


def _text(value: object, limit: int) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return text.replace("\x00", "")[:limit] if "\x00" in text else text[:limit]


def _money(value: Decimal | None, name: str, problems: list[str]) -> Decimal | None:
    if value is None:
        return None
    if value.adjusted() < 12 and abs(rounded := value.quantize(_CENT)) < _MONEY_BOUND:
        return rounded
    problems.append(f"{name}: {value} does not fit the mirror (numeric 14,2); left empty")
    return None


def _integer(value: int | None, name: str, problems: list[str]) -> int | None:
    if value is None or -_INT_BOUND <= value < _INT_BOUND:
        return value
    problems.append(f"{name}: {value} does not fit the mirror (32-bit integer); left empty")
    return None


def _without_nul(value: object) -> object:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    return value


def _storable_raw(raw: dict) -> tuple[JsonText, str]:
    """The raw JSON as it is stored (its canonical text, also sent as is), and the SHA-256 of that text (a re-read
    of the same version is "unchanged" without a field diff). NUL characters, which jsonb refuses, are dropped from
    the stored copy; the hash is of the document as Genstore sent it."""
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    if "\\u0000" in canonical:
        canonical = json.dumps(_without_nul(raw), sort_keys=True, separators=(",", ":"), default=str)
    return JsonText(canonical), digest


def _order_row(
    *, store: Store, record: OrderRecord, raw: JsonText, digest: str, now: datetime, problems: list[str]
) -> dict[str, object]:
    """The order's columns (see oma.core.bulk: one dict per row, written many to a statement)."""
    return {
        "store_id": store.pk,
        "order_id": record.order_id,
        "genstore_id": _text(record.id, 64),
        "name": _text(record.name, 64),
        "source_name": _text(record.source_name, 64),
        "source_identifier": _text(record.source_identifier, 128),
        "financial_status": _text(record.financial_status, 32),
        "fulfillment_status": _text(record.fulfillment_status, 32),
        "cancelled_at": record.cancelled_at,
        "cancel_reason": _text(record.cancel_reason, 255),
        "genstore_created_at": record.created_at,
        "genstore_updated_at": record.updated_at,
        "email": _text(record.email, 254),
        "total_price": _money(record.total_price, "totalPrice", problems),
        "subtotal_price": _money(record.subtotal_price, "subtotalPrice", problems),
        "currency": _text(record.currency, 8),
        "raw": raw,
        "payload_hash": digest,
        "parse_problems": problems,
        "last_synced_at": now,
        "updated_at": now,
    }


def _without_personal_data(order: dict[str, object], record: OrderRecord) -> None:
    """The customer of this order was erased (customers/redact): a later version is stored without them too, since
    Genstore redacts on its own schedule. The hash stays that of what Genstore sent: reading that version again
    is "unchanged", and writes nothing."""
    order["email"] = ""
    order["raw"], _ = _storable_raw(order_raw_without_personal_data(record.raw))


def _line_item_rows(record: OrderRecord, problems: list[str]) -> list[dict[str, object]]:
    """The order's lines as rows, their order_id still to be set (a new order has no id yet)."""
    rows = []
    for index, item in enumerate({li.id: li for li in record.line_items}.values()):  # a repeated id breaks a batch
        label = f"lineItems[{index}]"
        rows.append({
            "line_item_id": item.id,  # an id is never cut short: one too long is refused, and reported
            "product_id": _text(item.product_id, 64),
            "variant_id": _text(item.variant_id, 64),
            "sku": _text(item.sku, 128),
            "title": _text(item.title, 512),
            "variant_title": _text(item.variant_title, 512),
            "quantity": _integer(item.quantity, f"{label}.quantity", problems) or 0,
            "fulfillable_quantity": _integer(item.fulfillable_quantity, f"{label}.fulfillableQuantity", problems),
            "fulfillment_status": _text(item.fulfillment_status, 32),
            "requires_shipping": item.requires_shipping,
            "price": _money(item.price, f"{label}.price", problems),
            "grams": _integer(item.grams, f"{label}.grams", problems),
        })
    return rows


def _fulfillment_row(*, store: Store, order_pk: int, record: FulfillmentRecord, now: datetime) -> dict[str, object]:
    return {
        "store_id": store.pk,
        "order_id": order_pk,
        "fulfill_id": record.fulfill_id,
        "status": _text(record.status, 32),
        "shipment_status": _text(record.shipment_status, 32),
        "tracking_number": _text(record.tracking_number, 128),
        "tracking_company": _text(record.tracking_company, 128),
        "tracking_url": _text(record.tracking_url, 1024),
        "line_items": [{"id": line.id, "quantity": line.quantity} for line in record.line_items],
        "genstore_created_at": record.created_at,
        "genstore_updated_at": record.updated_at,
        "last_synced_at": now,
    }


# --- the upsert -----------------------------------------------------------------------------------------------------


def _is_stale(*, incoming: datetime | None, current: datetime | None) -> bool:
    """An older version never overwrites a newer one. Without both timestamps we cannot tell: not stale."""
    return incoming is not None and current is not None and incoming < current


def _newest_per_order(records: Iterable[OrderRecord]) -> list[OrderRecord]:
    """One record per orderId (the newest), sorted by orderId: concurrent upserts of overlapping pages then lock
    and insert rows in the same order, so they wait for each other instead of deadlocking."""
    newest: dict[str, OrderRecord] = {}
    for record in records:
        kept = newest.get(record.order_id)
        if kept is None or not _is_stale(incoming=record.updated_at, current=kept.updated_at):
            newest[record.order_id] = record
    return [newest[order_id] for order_id in sorted(newest)]


def orders_upsert_page(*, store: Store, records: Sequence[OrderRecord], defer_hooks: bool = False) -> PageCounts:
    """Upsert a batch of orders in a constant number of queries, newest `updatedAt` winning.

    Existing rows are locked (SELECT ... FOR UPDATE) so a webhook and a sweep touching the same order serialize;
    two transactions inserting the same new order collide on the unique constraint and the loser retries,
    then sees the row and compares versions like any other; so does the victim of a deadlock with a writer that
    locks orders in another order (rows are locked and inserted in orderId order here). After the commit,
    `oma.orders.signals.orders_changed` is sent with the ids of the orders created or changed (a failing receiver
    is logged; it never undoes or breaks the upsert), here or, with `defer_hooks`, in a Celery task (see
    orders_sweep).
    """
    records = _newest_per_order(records)
    if not records:
        return PageCounts()
    for attempt in range(1, _UPSERT_ATTEMPTS + 1):
        try:
            with transaction.atomic():
                counts = _upsert_locked(store=store, records=records)
        except (IntegrityError, OperationalError) as exc:
            if attempt == _UPSERT_ATTEMPTS or not _lost_a_race(exc):
                raise
            logger.info("orders of %s: %s; retrying the page (attempt %d)", store.domain, exc, attempt + 1)
            time.sleep(random.uniform(0, 0.05 * attempt))  # out of step with whoever we collided with
            continue
        if counts.changed_order_ids and orders_changed_has_receivers():
            after = _orders_changed_enqueue if defer_hooks else orders_changed_send
            transaction.on_commit(partial(after, store=store, order_ids=list(counts.changed_order_ids)), robust=True)
        return counts
    raise AssertionError("unreachable")


_UPSERT_ATTEMPTS = 5


def _lost_a_race(exc: Exception) -> bool:
    """True for the errors another writer causes and a retry of the whole (rolled back) page cures: the same new
    order inserted twice at once, or a deadlock with a writer that locks orders in another order than ours."""
    return isinstance(exc, IntegrityError) or lost_a_lock_race(exc)


def _orders_changed_enqueue(*, store: Store, order_ids: list[int]) -> None:
    """Send orders_changed from a Celery task (a sweep page): the sweep does not wait for the receivers."""
    from oma.orders.tasks import orders_changed_run_hooks  # why: oma.orders.tasks imports this module

    try:
        orders_changed_run_hooks.delay(store.pk, order_ids)
    except Exception:  # the broker is unreachable: do the work here rather than lose it
        logger.warning("could not enqueue the orders-changed signal for %s; sending it now", store.domain)
        orders_changed_send(store=store, order_ids=order_ids)


def _upsert_locked(*, store: Store, records: list[OrderRecord]) -> PageCounts:
    now = timezone.now()
    existing = {
        row["order_id"]: row
        for row in Order.objects.select_for_update()
        .filter(store=store, order_id__in=[r.order_id for r in records])
        .order_by("order_id")
        .values("id", "order_id", "genstore_updated_at", "payload_hash", "personal_data_erased_at")
    }
    counts = PageCounts()
    to_create: list[dict[str, object]] = []
    to_update: list[dict[str, object]] = []
    unchanged_ids: list[int] = []
    replace_lines_of: list[int] = []
    written: list[tuple[OrderRecord, list[dict[str, object]]]] = []
    for record in records:
        row = existing.get(record.order_id)
        if row is not None and _is_stale(incoming=record.updated_at, current=row["genstore_updated_at"]):
            counts.outcomes[record.order_id] = "stale"
            continue
        raw, digest = _storable_raw(record.raw)
        if row is not None and row["payload_hash"] == digest:
            unchanged_ids.append(row["id"])
            counts.outcomes[record.order_id] = "unchanged"
            continue
        problems = list(record.problems)
        lines = _line_item_rows(record, problems)  # may add problems: before the order row is built
        order = _order_row(store=store, record=record, raw=raw, digest=digest, now=now, problems=problems)
        if row is not None and row["personal_data_erased_at"] is not None:
            _without_personal_data(order, record)
        if row is None:
            to_create.append(order)
            counts.outcomes[record.order_id] = "created"
        else:
            if record.updated_at is None:  # keep the version we know rather than forgetting it
                order["genstore_updated_at"] = row["genstore_updated_at"]
            to_update.append(order)
            if record.has_line_items:
                replace_lines_of.append(row["id"])
            counts.outcomes[record.order_id] = "updated"
        written.append((record, lines))

    order_pks = {order_id: row["id"] for order_id, row in existing.items()}
    # New orders: a plain INSERT, so a concurrent insert of the same order fails here and the page is retried
    # (then compared like any existing row) instead of overwriting a version it never compared against.
    order_pks.update(rows_insert(Order, to_create, returning=("order_id", "id")))
    if to_update:
        # The rows exist and are locked by this transaction: the conflict always happens, and updates them.
        rows_insert(Order, to_update, conflict=("store_id", "order_id"), update=_ORDER_COLUMNS)
    if unchanged_ids:
        Order.objects.filter(pk__in=unchanged_ids).update(last_synced_at=now)
    if written:
        # Lines that disappeared from an edited order go, but only when the payload listed its lines in full: a
        # missing or unreadable list says nothing about them (and deleting a line deletes which parcels carried it).
        items = []
        for record, lines in written:
            order_pk = order_pks[record.order_id]
            for line in lines:
                line["order_id"] = order_pk
                items.append(line)
        _write_line_items(items, replace_lines_of=replace_lines_of)
        _fulfillments_upsert(store=store, rows=[
            _fulfillment_row(store=store, order_pk=order_pks[record.order_id], record=fulfillment, now=now)
            for record, _ in written
            if record.has_fulfillments
            for fulfillment in {f.fulfill_id: f for f in record.fulfillments}.values()
        ])

    outcomes = list(counts.outcomes.values())
    counts.created = outcomes.count("created")
    counts.updated = outcomes.count("updated")
    counts.unchanged = outcomes.count("unchanged")
    counts.stale = outcomes.count("stale")
    counts.changed_order_ids = [order_pks[record.order_id] for record, _ in written]
    return counts


def _write_line_items(items: list[dict[str, object]], *, replace_lines_of: list[int]) -> None:
    """Upsert the lines; for the orders in `replace_lines_of`, delete the lines not among them. A new order has no
    old lines, so it never needs the delete."""
    kept = rows_insert(
        LineItem, items, conflict=("order_id", "line_item_id"), update=_LINE_ITEM_COLUMNS, returning=("id",)
    )
    if replace_lines_of:
        # Through the ORM: deleting a line deletes (in Python) what refers to it, e.g. which parcels carried it.
        LineItem.objects.filter(order_id__in=replace_lines_of).exclude(pk__in=[pk for (pk,) in kept]).delete()


def _fulfillments_upsert(*, store: Store, rows: list[dict[str, object]]) -> None:
    """Insert or update mirrored fulfillments, newest `updatedAt` winning (pushes and order payloads both write
    here, and a late order payload must not move a fulfillment back)."""
    if not rows:
        return
    rows.sort(key=lambda row: str(row["fulfill_id"]))
    current = dict(
        GenstoreFulfillment.objects.select_for_update()
        .filter(store=store, fulfill_id__in=[row["fulfill_id"] for row in rows])
        .order_by("fulfill_id")
        .values_list("fulfill_id", "genstore_updated_at")
    )
    fresh = [
        row for row in rows
        if not _is_stale(incoming=row["genstore_updated_at"], current=current.get(row["fulfill_id"]))  # type: ignore[arg-type]
    ]
    rows_insert(GenstoreFulfillment, fresh, conflict=("store_id", "fulfill_id"), update=_FULFILLMENT_COLUMNS)


def order_upsert(*, store: Store, record: OrderRecord) -> UpsertResult:
    """Upsert one order (webhooks, re-reads): same rules as the sweep."""
    counts = orders_upsert_page(store=store, records=[record])
    order = Order.objects.get(store=store, order_id=record.order_id)
    return UpsertResult(outcome=counts.outcomes[record.order_id], order=order)


def order_fulfillment_record(*, store: Store, order: Order, record: FulfillmentRecord) -> GenstoreFulfillment:
    """Mirror one fulfillment that Genstore returned (e.g. after a push); an older version never wins."""
    with transaction.atomic():
        _fulfillments_upsert(
            store=store, rows=[_fulfillment_row(store=store, order_pk=order.pk, record=record, now=timezone.now())]
        )
    return GenstoreFulfillment.objects.get(store=store, fulfill_id=record.fulfill_id)


# --- sweeps ---------------------------------------------------------------------------------------------------------

# A sweep renews its lease after every page, so the lease outlives any one page (retries and rate-limit waits
# included) and a sweep whose process died frees its store within this long.
SWEEP_LEASE_TTL = timedelta(minutes=10)


class SweepLeaseLost(Exception):
    """Another sweep took this store's lease (ours expired): this one stops, so that only one runs."""


@dataclass(frozen=True)
class SweepProgress:
    pages: int
    seen: int
    total: int | None


def _incremental_since(store: Store) -> datetime | None:
    """updatedAtMin for an incremental sweep, or None when the store needs a full one.

    It is the start of the last sweep up to which every order was read without a gap, minus an overlap (clock skew,
    late commits): the last good full sweep, then each good incremental sweep that began reading at or before where
    the previous ones had reached. An incremental sweep started from a later time (`sync_orders --since`) left a gap
    behind it, so it does not move the mark.
    """
    good = SyncRun.objects.filter(store=store, state=SyncRun.State.SUCCEEDED)
    last_full = good.filter(kind=SyncRun.Kind.FULL).order_by("-started_at").values_list("started_at", flat=True)
    reached = last_full.first()
    if reached is None:
        return None
    for started_at, updated_at_min in (
        good.filter(kind=SyncRun.Kind.INCREMENTAL, started_at__gt=reached)
        .order_by("started_at")
        .values_list("started_at", "updated_at_min")
    ):
        if updated_at_min is not None and updated_at_min <= reached:
            reached = started_at
    return reached - timedelta(minutes=settings.OMA_SWEEP_OVERLAP_MINUTES)


def _abandoned_runs_close(store: Store) -> None:
    """Runs still marked running when we hold the lease belong to a process that died mid-sweep: say so."""
    SyncRun.objects.filter(store=store, state=SyncRun.State.RUNNING).update(
        state=SyncRun.State.FAILED,
        finished_at=timezone.now(),
        error_message="abandoned: the process running this sweep stopped before it finished",
    )


def orders_sweep(
    *,
    store: Store,
    kind: str = SyncRun.Kind.INCREMENTAL,
    since: datetime | None = None,
    progress: Callable[[SweepProgress], None] | None = None,
    client: GenstoreClient | None = None,
    count_first: bool = False,
    defer_hooks: bool = False,
) -> SyncRun:
    """Walk the store's orders page by page and upsert them; one SyncRun records what it saw and changed.

    Incremental sweeps send `updatedAtMin` (from `since`, else from `_incremental_since`); a store never fully
    swept gets a full sweep. One sweep per store at a time (a lease on the store row): a second one is recorded as
    skipped. Memory stays flat: a page is written while the next is read (see _PageWriter), never more.
    A Genstore failure ends the run as failed (returned, not raised); anything else is recorded and raised.

    The orders_changed receivers (unified status, channel matching: on an import, about as much work as the upsert
    itself) run after each page's commit; with `defer_hooks` they run instead in one Celery task per page, so a
    sweep in a worker spends its time (and its lease) on the mirror and other workers share the rest.
    """
    if kind == SyncRun.Kind.FULL:
        since = None
    elif since is None:
        since = _incremental_since(store)
        if since is None:
            kind = SyncRun.Kind.FULL

    token = store_sweep_lease_acquire(store=store, ttl=SWEEP_LEASE_TTL)
    if token is None:
        logger.info("sweep of %s skipped: another sweep holds the lease", store.domain)
        now = timezone.now()
        return SyncRun.objects.create(
            store=store, kind=kind, state=SyncRun.State.SKIPPED, updated_at_min=since, started_at=now, finished_at=now
        )

    genstore = client or genstore_client_for(store)
    try:
        _abandoned_runs_close(store)
        run = SyncRun.objects.create(store=store, kind=kind, updated_at_min=since)
        try:
            total = genstore.count_orders(updated_at_min=since) if count_first and progress else None
            writer = _PageWriter(store=store, run=run, defer_hooks=defer_hooks)
            try:
                for page in genstore.iter_order_pages(limit=settings.OMA_SWEEP_PAGE_SIZE, updated_at_min=since):
                    writer.write(page)
                    if not store_sweep_lease_renew(store=store, token=token, ttl=SWEEP_LEASE_TTL):
                        raise SweepLeaseLost(f"the sweep lease of {store.domain} expired and another sweep took it")
                    if progress:
                        progress(SweepProgress(pages=run.pages, seen=run.seen, total=total))
                writer.wait()
            finally:
                writer.close()
            if progress:
                progress(SweepProgress(pages=run.pages, seen=run.seen, total=total))
            run.state = SyncRun.State.SUCCEEDED
        except (GenstoreError, SweepLeaseLost) as exc:
            run.state = SyncRun.State.FAILED
            run.error_message = str(exc)[:2000]
            logger.warning("sweep of %s failed after %d pages: %s", store.domain, run.pages, exc)
        except BaseException as exc:
            run.state = SyncRun.State.FAILED
            run.error_message = f"{type(exc).__name__}: {exc}"[:2000]
            raise
        finally:
            run.finished_at = timezone.now()
            run.rate_limited = genstore.stats.rate_limited
            run.save()
    finally:
        store_sweep_lease_release(store=store, token=token)
        if client is None:
            genstore.close()
    logger.info(
        "sweep of %s (%s): %d pages, %d seen, %d created, %d updated, %d unchanged, %d errors",
        store.domain, run.kind, run.pages, run.seen, run.created, run.updated, run.unchanged, run.errors,
    )
    return run


class _PageWriter:
    """Stores a sweep's pages, on PostgreSQL in a thread of its own so the next page is fetched and parsed while
    this one is written (the database and Genstore then work at the same time instead of in turn).

    At most one page is being written while the next is read: memory stays flat (two pages). A page's error is
    raised by the next `write` or by `wait`. Inside a transaction (tests), or on SQLite, pages are written inline:
    another thread's connection would not see the transaction, or would contend for SQLite's single writer.
    """

    def __init__(self, *, store: Store, run: SyncRun, defer_hooks: bool) -> None:
        self._store, self._run, self._defer_hooks = store, run, defer_hooks
        # A store's first full sweep fills the mirror's tables: their lookups need fresh statistics.
        self._statistics = PlannerStatistics({
            Order: ("store", "order_id"),
            LineItem: ("order", "line_item_id"),
            GenstoreFulfillment: ("store", "fulfill_id"),
        })
        pipelined = connection.vendor == "postgresql" and not connection.in_atomic_block
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sweep-writer") if pipelined else None
        self._pending: Future[None] | None = None

    def write(self, page: OrderPage) -> None:
        """Store this page: once the previous one is stored, hand it to the writer thread (or store it now)."""
        self.wait()
        if self._executor is None:
            self._write(page)
        else:
            self._pending = self._executor.submit(self._write, page)

    def wait(self) -> None:
        """Until the page being written is stored; its error, if it failed, is raised here."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        """Wait for the page being written (a failure now can only be logged: the sweep is already ending on
        another error) and close the writer thread's database connection."""
        try:
            self.wait()
        except Exception:
            logger.exception("sweep of %s: the last page could not be stored", self._store.domain)
        if self._executor is not None:
            self._executor.submit(_close_this_threads_connection).result()
            self._executor.shutdown()

    def _write(self, page: OrderPage) -> None:
        _sweep_page(store=self._store, run=self._run, page=page, defer_hooks=self._defer_hooks)
        self._statistics.after_batch(written=self._run.created)


def _close_this_threads_connection() -> None:
    connection.close()  # looked up in the calling thread: each thread has its own connection


def _sweep_page(*, store: Store, run: SyncRun, page: OrderPage, defer_hooks: bool) -> None:
    """Store one page and add it to the run. An order the database refuses (a value no check foresaw) must not
    keep the rest of its page out: the page is then stored order by order, and the refused ones are counted and
    logged as errors (the next full sweep, or the order's next change, tries them again)."""
    errors = list(page.errors)
    try:
        counts = orders_upsert_page(store=store, records=page.records, defer_hooks=defer_hooks)
    except DataError as exc:
        logger.warning("sweep of %s: page %d refused (%s); storing it order by order", store.domain, run.pages + 1, exc)
        counts = PageCounts()
        for record in page.records:
            try:
                counts.add(orders_upsert_page(store=store, records=[record], defer_hooks=defer_hooks))
            except DataError as order_exc:
                errors.append(f"order {record.order_id}: the database refused it: {order_exc}")
    for error in errors:
        logger.warning("sweep of %s: order not mirrored: %s", store.domain, error)
    run.pages += 1
    run.seen += len(page.records) + len(page.errors)
    run.created += counts.created
    run.updated += counts.updated
    run.unchanged += counts.unchanged + counts.stale
    run.errors += len(errors) + sum(1 for r in page.records if r.problems)
    run.save(update_fields=["pages", "seen", "created", "updated", "unchanged", "errors"])
