"""Writing the order mirror: upserts (webhooks and sweeps share one path) and the sweeps themselves."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from oma.genstore.errors import GenstoreError
from oma.genstore.records import FulfillmentRecord, OrderRecord
from oma.orders.models import GenstoreFulfillment, LineItem, Order, SyncRun
from oma.stores.models import Store

logger = logging.getLogger(__name__)

Outcome = Literal["created", "updated", "unchanged", "stale"]

# Order columns written from a record (everything but keys and bookkeeping).
_ORDER_FIELDS = [
    "genstore_id",
    "name",
    "source_name",
    "source_identifier",
    "financial_status",
    "fulfillment_status",
    "cancelled_at",
    "cancel_reason",
    "genstore_created_at",
    "genstore_updated_at",
    "email",
    "total_price",
    "subtotal_price",
    "currency",
    "raw",
    "payload_hash",
    "parse_problems",
    "last_synced_at",
]
_LINE_ITEM_FIELDS = [
    "product_id",
    "variant_id",
    "sku",
    "title",
    "variant_title",
    "quantity",
    "fulfillable_quantity",
    "fulfillment_status",
    "requires_shipping",
    "price",
    "grams",
]
_FULFILLMENT_FIELDS = [
    "order",
    "status",
    "shipment_status",
    "tracking_number",
    "tracking_company",
    "tracking_url",
    "line_items",
    "genstore_created_at",
    "genstore_updated_at",
]

# Called with the ids of orders that were created or changed, after the transaction commits.
# Other apps (unified status, channel matching) register here instead of being imported by this module.
OrdersChangedHook = Callable[[Store, list[int]], None]
orders_changed_hooks: list[OrdersChangedHook] = []


@dataclass
class PageCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    stale: int = 0
    outcomes: dict[str, Outcome] = field(default_factory=dict)  # orderId -> outcome
    changed_order_ids: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class UpsertResult:
    outcome: Outcome
    order: Order


def payload_hash(raw: dict) -> str:
    return hashlib.sha256(json.dumps(raw, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def _text(value: object, limit: int) -> str:
    return "" if value is None else str(value)[:limit]


def _order_from_record(*, store: Store, record: OrderRecord, digest: str, now: datetime, pk: int | None) -> Order:
    return Order(
        pk=pk,
        store=store,
        order_id=record.order_id,
        genstore_id=_text(record.id, 64),
        name=_text(record.name, 64),
        source_name=_text(record.source_name, 64),
        source_identifier=_text(record.source_identifier, 128),
        financial_status=_text(record.financial_status, 32),
        # Genstore writes null for an unfulfilled order: store the word, so filters and exports read plainly.
        fulfillment_status=_text(record.fulfillment_status, 32) or "unfulfilled",
        cancelled_at=record.cancelled_at,
        cancel_reason=_text(record.cancel_reason, 255),
        genstore_created_at=record.created_at,
        genstore_updated_at=record.updated_at,
        email=_text(record.email, 254),
        total_price=record.total_price,
        subtotal_price=record.subtotal_price,
        currency=_text(record.currency, 8),
        raw=record.raw,
        payload_hash=digest,
        parse_problems=list(record.problems),
        last_synced_at=now,
    )


def _is_stale(*, incoming: datetime | None, current: datetime | None) -> bool:
    """An older version never overwrites a newer one. Without both timestamps we cannot tell: not stale."""
    return incoming is not None and current is not None and incoming < current


def _newest_per_order(records: Iterable[OrderRecord]) -> list[OrderRecord]:
    newest: dict[str, OrderRecord] = {}
    for record in records:
        kept = newest.get(record.order_id)
        if kept is None or not _is_stale(incoming=record.updated_at, current=kept.updated_at):
            newest[record.order_id] = record
    return list(newest.values())


def orders_upsert_page(*, store: Store, records: Sequence[OrderRecord]) -> PageCounts:
    """Upsert a batch of orders in a constant number of queries, newest `updatedAt` winning.

    Existing rows are locked (SELECT ... FOR UPDATE) so a webhook and a sweep touching the same order serialize;
    two transactions inserting the same new order collide on the unique constraint and the loser retries,
    then sees the row and compares versions like any other.
    """
    records = _newest_per_order(records)
    if not records:
        return PageCounts()
    for attempt in range(3):
        try:
            with transaction.atomic():
                counts = _upsert_locked(store=store, records=records)
        except IntegrityError:
            if attempt == 2:
                raise
            logger.info("concurrent insert of the same orders for %s; retrying the page", store.domain)
            continue
        if counts.changed_order_ids:
            _notify_orders_changed(store=store, order_ids=list(counts.changed_order_ids))
        return counts
    raise AssertionError("unreachable")


def _notify_orders_changed(*, store: Store, order_ids: list[int]) -> None:
    for hook in orders_changed_hooks:
        transaction.on_commit(lambda hook=hook: hook(store, order_ids))


def _upsert_locked(*, store: Store, records: list[OrderRecord]) -> PageCounts:
    now = timezone.now()
    existing = {
        row["order_id"]: row
        for row in Order.objects.select_for_update()
        .filter(store=store, order_id__in=[r.order_id for r in records])
        .values("id", "order_id", "genstore_updated_at", "payload_hash")
    }
    counts = PageCounts()
    to_create: list[Order] = []
    to_update: list[Order] = []
    unchanged_ids: list[int] = []
    written: list[tuple[Order, OrderRecord]] = []
    for record in records:
        digest = payload_hash(record.raw)
        row = existing.get(record.order_id)
        if row is None:
            order = _order_from_record(store=store, record=record, digest=digest, now=now, pk=None)
            to_create.append(order)
            written.append((order, record))
            counts.outcomes[record.order_id] = "created"
        elif _is_stale(incoming=record.updated_at, current=row["genstore_updated_at"]):
            counts.outcomes[record.order_id] = "stale"
        elif row["payload_hash"] == digest:
            unchanged_ids.append(row["id"])
            counts.outcomes[record.order_id] = "unchanged"
        else:
            order = _order_from_record(store=store, record=record, digest=digest, now=now, pk=row["id"])
            if record.updated_at is None:  # keep the version we know rather than forgetting it
                order.genstore_updated_at = row["genstore_updated_at"]
            to_update.append(order)
            written.append((order, record))
            counts.outcomes[record.order_id] = "updated"

    if to_create:
        Order.objects.bulk_create(to_create)
    if to_update:
        # The rows exist and are locked by this transaction, so INSERT ... ON CONFLICT DO UPDATE is a plain
        # update here, and one statement instead of bulk_update's per-field CASE expressions (much faster).
        Order.objects.bulk_create(
            to_update,
            update_conflicts=True,
            unique_fields=["store", "order_id"],
            update_fields=[*_ORDER_FIELDS, "updated_at"],
        )
    if unchanged_ids:
        Order.objects.filter(pk__in=unchanged_ids).update(last_synced_at=now)
    if written:
        _write_line_items(written)
        _write_fulfillments(store=store, written=written)

    outcomes = counts.outcomes.values()
    counts.created = sum(1 for o in outcomes if o == "created")
    counts.updated = sum(1 for o in outcomes if o == "updated")
    counts.unchanged = sum(1 for o in outcomes if o == "unchanged")
    counts.stale = sum(1 for o in outcomes if o == "stale")
    counts.changed_order_ids = [order.pk for order, _ in written]
    return counts


def _write_line_items(written: list[tuple[Order, OrderRecord]]) -> None:
    items = [
        LineItem(
            order=order,
            line_item_id=item.id,
            product_id=_text(item.product_id, 64),
            variant_id=_text(item.variant_id, 64),
            sku=_text(item.sku, 128),
            title=_text(item.title, 512),
            variant_title=_text(item.variant_title, 512),
            quantity=item.quantity or 0,
            fulfillable_quantity=item.fulfillable_quantity,
            fulfillment_status=_text(item.fulfillment_status, 32),
            requires_shipping=item.requires_shipping,
            price=item.price,
            grams=item.grams,
        )
        for order, record in written
        for item in {li.id: li for li in record.line_items}.values()  # a repeated id would break the batch
    ]
    if items:
        LineItem.objects.bulk_create(
            items, update_conflicts=True, unique_fields=["order", "line_item_id"], update_fields=_LINE_ITEM_FIELDS
        )
    # Lines that disappeared from an edited order go; bulk_create set the pks of those that stay.
    LineItem.objects.filter(order_id__in=[order.pk for order, _ in written]).exclude(
        pk__in=[item.pk for item in items]
    ).delete()


def _fulfillment_row(*, store: Store, order: Order, record: FulfillmentRecord) -> GenstoreFulfillment:
    return GenstoreFulfillment(
        store=store,
        order=order,
        fulfill_id=record.fulfill_id,
        status=_text(record.status, 32),
        shipment_status=_text(record.shipment_status, 32),
        tracking_number=_text(record.tracking_number, 128),
        tracking_company=_text(record.tracking_company, 128),
        tracking_url=_text(record.tracking_url, 1024),
        line_items=[{"id": line.id, "quantity": line.quantity} for line in record.line_items],
        genstore_created_at=record.created_at,
        genstore_updated_at=record.updated_at,
    )


def _write_fulfillments(*, store: Store, written: list[tuple[Order, OrderRecord]]) -> None:
    rows = [
        _fulfillment_row(store=store, order=order, record=fulfillment)
        for order, record in written
        if record.has_fulfillments
        for fulfillment in {f.fulfill_id: f for f in record.fulfillments}.values()
    ]
    if rows:
        genstore_fulfillments_upsert(rows)


def genstore_fulfillments_upsert(rows: Sequence[GenstoreFulfillment]) -> None:
    GenstoreFulfillment.objects.bulk_create(
        rows, update_conflicts=True, unique_fields=["store", "fulfill_id"], update_fields=_FULFILLMENT_FIELDS
    )


def order_upsert(*, store: Store, record: OrderRecord) -> UpsertResult:
    """Upsert one order (webhooks, re-reads): same rules as the sweep."""
    counts = orders_upsert_page(store=store, records=[record])
    order = Order.objects.get(store=store, order_id=record.order_id)
    return UpsertResult(outcome=counts.outcomes[record.order_id], order=order)


def order_fulfillment_record(*, store: Store, order: Order, record: FulfillmentRecord) -> GenstoreFulfillment:
    """Mirror one fulfillment that Genstore returned (e.g. after a push)."""
    genstore_fulfillments_upsert([_fulfillment_row(store=store, order=order, record=record)])
    return GenstoreFulfillment.objects.get(store=store, fulfill_id=record.fulfill_id)


# --- sweeps -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepProgress:
    pages: int
    seen: int
    total: int | None


def _incremental_since(store: Store) -> datetime | None:
    """updatedAtMin for an incremental sweep: when the last good sweep started, minus an overlap."""
    last_good = (
        SyncRun.objects.filter(store=store, state=SyncRun.State.SUCCEEDED).order_by("-started_at").first()
    )
    if last_good is None:
        return None
    return last_good.started_at - timedelta(minutes=settings.OMA_SWEEP_OVERLAP_MINUTES)


def orders_sweep(
    *,
    store: Store,
    kind: str = SyncRun.Kind.INCREMENTAL,
    since: datetime | None = None,
    progress: Callable[[SweepProgress], None] | None = None,
    client: object | None = None,
    count_first: bool = False,
) -> SyncRun:
    """Walk the store's orders page by page and upsert them; one SyncRun records what it saw and changed.

    Incremental sweeps send `updatedAtMin` (from `since`, else the last good sweep's start minus the overlap);
    a store never swept gets a full sweep. Memory stays flat: one page is held at a time.
    """
    from oma.stores.services import (
        genstore_client_for,
        store_sweep_lease_acquire,
        store_sweep_lease_release,
        store_sweep_lease_renew,
    )

    lease_ttl = timedelta(minutes=10)
    if kind == SyncRun.Kind.INCREMENTAL and since is None:
        since = _incremental_since(store)
        if since is None:
            kind = SyncRun.Kind.FULL
    if kind == SyncRun.Kind.FULL:
        since = None

    token = store_sweep_lease_acquire(store=store, ttl=lease_ttl)
    if token is None:
        logger.info("sweep of %s skipped: another sweep holds the lease", store.domain)
        now = timezone.now()
        return SyncRun.objects.create(
            store=store, kind=kind, state=SyncRun.State.SKIPPED, updated_at_min=since, started_at=now, finished_at=now
        )

    run = SyncRun.objects.create(store=store, kind=kind, updated_at_min=since)
    genstore = client or genstore_client_for(store)
    total = None
    try:
        if count_first and progress:
            total = genstore.count_orders(**({"updatedAtMin": since.isoformat()} if since else {}))
        for page in genstore.iter_order_pages(limit=settings.OMA_SWEEP_PAGE_SIZE, updated_at_min=since):
            counts = orders_upsert_page(store=store, records=page.records)
            run.pages += 1
            run.seen += len(page.records) + len(page.errors)
            run.created += counts.created
            run.updated += counts.updated
            run.unchanged += counts.unchanged + counts.stale
            run.errors += len(page.errors) + sum(1 for r in page.records if r.problems)
            for error in page.errors:
                logger.warning("sweep of %s: order not mirrored: %s", store.domain, error)
            run.save(update_fields=["pages", "seen", "created", "updated", "unchanged", "errors"])
            store_sweep_lease_renew(store=store, token=token, ttl=lease_ttl)
            if progress:
                progress(SweepProgress(pages=run.pages, seen=run.seen, total=total))
        run.state = SyncRun.State.SUCCEEDED
    except GenstoreError as exc:
        run.state = SyncRun.State.FAILED
        run.error_message = str(exc)[:2000]
        logger.warning("sweep of %s failed after %d pages: %s", store.domain, run.pages, exc)
    except BaseException as exc:
        run.state = SyncRun.State.FAILED
        run.error_message = f"{type(exc).__name__}: {exc}"[:2000]
        raise
    finally:
        run.finished_at = timezone.now()
        run.rate_limited = getattr(getattr(genstore, "stats", None), "rate_limited", 0)
        run.save()
        store_sweep_lease_release(store=store, token=token)
    logger.info(
        "sweep of %s (%s): %d pages, %d seen, %d created, %d updated, %d unchanged, %d errors",
        store.domain, run.kind, run.pages, run.seen, run.created, run.updated, run.unchanged, run.errors,
    )
    return run
