"""Importing a tracking CSV: the one service behind the admin upload page and `import_tracking`.

Every row is checked; good rows become shipments while bad ones are reported with their line number and reason
(their values kept in the import's report, so nothing typed is lost). Rows whose order is not mirrored yet are
kept and matched as soon as the order arrives. Importing the same file again creates nothing: each row is a
record with a dedupe key, and a row repeating what a shipment holds adds nothing.

A row whose status says the label was voided withdraws that number for the channel, the way a platform's void does
(channels.services.withdraw_row: the shipment is cancelled and a fulfillment OMA pushed for it is cancelled once, by
its push). A file's voids go before its other rows, so a replacement label in the same file takes the items they
free; a void for a number the channel never reported is kept and reported, with nothing to undo.

Rows are matched in batches (ROWS_PER_BATCH, in file order), each batch one transaction holding its orders locked:
an import never races a webhook or a poll for the last items of an order, and never holds an order for long. A batch
costs the same few queries whatever its size: its orders, their lines and the shipments its numbers name are read
once, every row is matched in memory (channels.services.MatchBatch), and shipments, their lines and the records are
written in bulk; the hooks (unified status, push intents, e-mails, events) run once per batch, after its commit, in a
thread of their own while the next batch is written (_OrdersInFlight says why that is safe); the import returns once
they all ran. A failure half-way leaves complete batches only (no row half-written); importing the file again
finishes the rest. A dry run is one transaction, rolled back.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Collection, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import models, transaction
from django.db.models import F
from django.utils import timezone

from oma.channels.connectors.csv import CsvFileError, CsvRow, parse_tracking_csv
from oma.channels.file_queue import queued_file_claim, queued_file_hold, queued_files_enqueue_stalled
from oma.channels.matching import order_keys_for_external_ids
from oma.channels.models import Channel, CsvImport, ExternalShipment
from oma.channels.services import (
    ChannelInvalid,
    MatchBatch,
    channel_touch,
    csv_channel_for,
    dedupe_key,
    external_shipment_values,
    external_shipments_void,
)
from oma.core.bulk import AnyOf, rows_insert
from oma.core.planner import PlannerStatistics
from oma.stores.models import Store
from tracking.models import Shipment, ShipmentLine
from tracking.signals import ShipmentsChangedHooks, shipments_changed_batch, shipments_changed_in_background

logger = logging.getLogger(__name__)

MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_ROWS = 100_000

# Row outcomes, in the order the report lists them.
CREATED = "created"  # a new shipment
ADDED = "added"  # items added to a shipment (an earlier row of the file, or one OMA already had)
ALREADY = "already"  # imported before, or the shipment already holds these items
WAITING = "waiting"  # the order is not mirrored (yet): kept, matched when it arrives
REJECTED = "rejected"
VOIDED = "voided"  # a void row withdrew its number: the shipment cancelled (and its pushed fulfillment, once)
NOTHING_TO_VOID = "nothing_to_void"  # a void row for a number this channel never reported: kept, nothing undone
PROBLEM_OUTCOMES = (WAITING, REJECTED, NOTHING_TO_VOID)
# How as_text labels the rows it lists: the problems and the labels voided.
LISTED_LABELS = {WAITING: "waiting", REJECTED: "rejected", NOTHING_TO_VOID: "nothing to void", VOIDED: "voided"}


@dataclass(frozen=True, slots=True)
class RowResult:
    line: int
    outcome: str
    reason: str = ""
    order: str = ""
    tracking_number: str = ""
    values: dict[str, str] = field(default_factory=dict)


@dataclass
class CsvImportReport:
    file_name: str
    rows: int = 0
    results: list[RowResult] = field(default_factory=list)
    file_error: str = ""
    dry_run: bool = False
    import_id: int | None = None
    channel_name: str = ""
    ignored_columns: list[str] = field(default_factory=list)
    queued: bool = False  # handed to a worker: the import's own page shows the report once it has run

    def count(self, outcome: str) -> int:
        return sum(1 for result in self.results if result.outcome == outcome)

    @property
    def shipments_created(self) -> int:
        return self.count(CREATED)

    @property
    def problems(self) -> list[RowResult]:
        """The rows that did not become tracking: rejected ones and those waiting for their order, by line."""
        return sorted((r for r in self.results if r.outcome in PROBLEM_OUTCOMES), key=lambda r: r.line)

    @property
    def voids(self) -> list[RowResult]:
        """The rows that voided a label (a dry run lists what it would void)."""
        return sorted((r for r in self.results if r.outcome == VOIDED), key=lambda r: r.line)

    @property
    def ok(self) -> bool:
        return not self.file_error

    def summary(self) -> str:
        if self.file_error:
            return f"{self.file_name}: not imported: {self.file_error}"
        if self.queued:
            return f"{self.file_name}: {self.rows} rows queued for import"
        prefix = "dry run, nothing saved: " if self.dry_run else ""
        voids = ""
        if self.count(VOIDED) or self.count(NOTHING_TO_VOID):
            voids = f", {self.count(VOIDED)} labels voided, {self.count(NOTHING_TO_VOID)} voids with nothing to void"
        return (
            f"{prefix}{self.file_name}: {self.rows} rows: {self.count(CREATED)} shipments created, "
            f"{self.count(ADDED)} rows added items to a shipment, {self.count(ALREADY)} already imported, "
            f"{self.count(WAITING)} waiting for their order, {self.count(REJECTED)} rejected{voids}"
        )

    def as_text(self) -> str:
        lines = [self.summary()]
        if self.ignored_columns:
            lines.append(f"columns not used: {', '.join(self.ignored_columns)}")
        for result in sorted([*self.problems, *self.voids], key=lambda r: r.line):
            lines.append(f"line {result.line}: {LISTED_LABELS[result.outcome]}: {result.reason}")
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {
            "file": self.file_name,
            "channel": self.channel_name,
            "importId": self.import_id,
            "dryRun": self.dry_run,
            "error": self.file_error or None,
            "rows": self.rows,
            "shipmentsCreated": self.count(CREATED),
            "rowsAddingItems": self.count(ADDED),
            "alreadyImported": self.count(ALREADY),
            "waiting": self.count(WAITING),
            "rejected": self.count(REJECTED),
            "voided": self.count(VOIDED),
            "nothingToVoid": self.count(NOTHING_TO_VOID),
            "ignoredColumns": self.ignored_columns,
            "problems": [
                {"line": r.line, "outcome": r.outcome, "reason": r.reason, "values": r.values} for r in self.problems
            ],
            "voids": [{"line": r.line, "trackingNumber": r.tracking_number, "reason": r.reason} for r in self.voids],
        }


class _DryRunRollback(Exception):
    pass


def _row_identity(row: CsvRow) -> tuple[str, str, str, str]:
    record = row.record
    assert record is not None
    ref = record.lines[0] if record.lines else None
    return (
        record.external_order_id,
        record.tracking_number,
        ref.line_item_id if ref else "",
        ref.sku.casefold() if ref else "",
    )


def _check_within_file(rows: Sequence[CsvRow]) -> dict[int, str]:
    """Problems only visible across rows: duplicates, conflicting quantities, one number on two orders, a number
    both shipped and voided."""
    problems: dict[int, str] = {}
    seen: dict[tuple[str, str, str, str], CsvRow] = {}
    number_owner: dict[str, CsvRow] = {}
    voided_on: dict[str, int] = {}  # number -> the first line voiding it
    for row in rows:
        if row.record is not None and row.record.voided:
            voided_on.setdefault(row.record.tracking_number, row.line)
    for row in rows:
        if row.record is None or row.record.voided:
            continue  # voids are checked by number when imported (several rows may void one label)
        if row.record.tracking_number in voided_on:
            problems[row.line] = (
                f"tracking number {row.record.tracking_number} is voided on line "
                f"{voided_on[row.record.tracking_number]} of this file: a voided label is not used again"
            )
            continue
        identity = _row_identity(row)
        first = seen.get(identity)
        if first is not None:
            assert first.record is not None
            same_quantity = (first.record.lines[0].quantity if first.record.lines else None) == (
                row.record.lines[0].quantity if row.record.lines else None
            )
            problems[row.line] = (
                f"duplicate of line {first.line}" if same_quantity
                else f"conflicts with line {first.line}: same order, tracking number and item with another quantity"
            )
            continue
        seen[identity] = row
        owner = number_owner.setdefault(row.record.tracking_number, row)
        if owner.record is not None and owner.record.external_order_id != row.record.external_order_id:
            problems[row.line] = (
                f"tracking number {row.record.tracking_number} is already used for order "
                f"{owner.record.external_order_id} on line {owner.line}"
            )
    return problems


def tracking_csv_import(
    *,
    store: Store,
    data: bytes,
    file_name: str,
    channel: Channel | None = None,
    channel_name: str | None = None,
    uploaded_by: Any = None,
    via: str = "command",
    dry_run: bool = False,
    now: datetime | None = None,
    queue_above_rows: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CsvImportReport:
    """Import one tracking CSV for a store. Never raises for bad input: the report says what happened.

    `channel` (or `channel_name`) says which CSV channel the rows come from; by default the store's CSV channel.
    With `dry_run` every check runs, including against the orders, and nothing is saved. A file with more rows than
    `queue_above_rows` (not a dry run) is checked as a file, stored, and imported by a worker after the commit
    (`csv_import_run_queued`): the report says `queued`, and the CsvImport row gets the results when it has run.
    `progress(rows done, rows)` is called as batches finish (a command's progress bar).
    """
    now = now or timezone.now()
    report = CsvImportReport(file_name=file_name, dry_run=dry_run)
    if len(data) > MAX_FILE_BYTES:
        report.file_error = f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB: split it"
        return report
    try:
        parsed = parse_tracking_csv(data, max_rows=MAX_ROWS, now=now)
    except CsvFileError as exc:
        report.file_error = str(exc)
        return report
    report.rows = len(parsed.rows)
    report.ignored_columns = parsed.ignored_columns
    try:
        # A dry run is one transaction rolled back at the end; a real import commits batch by batch.
        with transaction.atomic() if dry_run else nullcontext():
            try:
                channel = channel or csv_channel_for(store=store, name=channel_name)
            except ChannelInvalid as exc:
                report.file_error = str(exc)
                return report
            if channel.store_id != store.pk:
                report.file_error = f"channel {channel.name!r} belongs to another store"
                return report
            report.channel_name = channel.name
            csv_import = CsvImport.objects.create(
                store=store,
                channel=channel,
                file_name=file_name[:255],
                file_sha256=hashlib.sha256(data).hexdigest(),
                uploaded_by=uploaded_by if getattr(uploaded_by, "pk", None) else None,
                via=via,
                rows=len(parsed.rows),
            )
            report.import_id = csv_import.pk
            if not dry_run and queue_above_rows is not None and len(parsed.rows) > queue_above_rows:
                queued_file_hold(csv_import, data, task_name=QUEUED_CSV_TASK)  # broker down: queued again later
                report.queued = True
                logger.info("csv import for %s: %s", store.domain, report.summary())
                return report
            _import_into(store=store, channel=channel, csv_import=csv_import, rows=parsed.rows, report=report, now=now,
                         progress=progress)
            if dry_run:
                raise _DryRunRollback
    except _DryRunRollback:
        report.import_id = None
    logger.info("csv import for %s: %s", store.domain, report.summary())
    return report


def _import_into(
    *, store: Store, channel: Channel, csv_import: CsvImport, rows: Sequence[CsvRow], report: CsvImportReport,
    now: datetime, progress: Callable[[int, int], None] | None = None,
) -> None:
    """Import the rows and record the outcome on `csv_import` (the queued file, if any, is let go either way)."""
    try:
        _import_rows(store=store, channel=channel, csv_import=csv_import, rows=rows, report=report, now=now,
                     progress=progress)
    except Exception as exc:
        # Batches before the failure are in (each complete); importing the file again finishes the rest.
        csv_import.file_error = f"stopped by an error: {type(exc).__name__}: {exc}"[:2000]
        csv_import.finished_at = timezone.now()
        csv_import.queued_file = None
        csv_import.save(update_fields=["file_error", "finished_at", "queued_file"])
        raise
    csv_import.shipments_created = report.count(CREATED)
    csv_import.lines_added = report.count(ADDED)
    csv_import.already_imported = report.count(ALREADY)
    csv_import.waiting = report.count(WAITING)
    csv_import.rejected = report.count(REJECTED)
    csv_import.report = report.as_json()
    csv_import.finished_at = timezone.now()
    csv_import.queued_file = None
    csv_import.save()
    channel_touch(channel, now=now)


# The task that imports a queued CSV (oma.channels.tasks; the queue itself is oma.channels.file_queue).
QUEUED_CSV_TASK = "channels.import_queued_csv"


def csv_import_run_queued(*, csv_import_id: int, now: datetime | None = None) -> CsvImportReport | None:
    """Run an import the admin queued. None when there is nothing to do: it has run already, or another attempt
    holds it (a task delivered twice), or the row is gone. An attempt lost half-way (a killed worker) is taken
    over once its claim has expired (`csv_imports_enqueue_stalled`); rows it imported count as already imported."""
    now = now or timezone.now()
    if not queued_file_claim(CsvImport, pk=csv_import_id, now=now):
        return None
    csv_import = CsvImport.objects.select_related("store", "channel").get(pk=csv_import_id)
    report = CsvImportReport(file_name=csv_import.file_name, import_id=csv_import.pk,
                             channel_name=csv_import.channel.name)
    try:
        parsed = parse_tracking_csv(bytes(csv_import.queued_file or b""), max_rows=MAX_ROWS, now=now)
    except CsvFileError as exc:  # it parsed before it was queued; a later version of the parser may disagree
        report.file_error = csv_import.file_error = str(exc)
        csv_import.finished_at = timezone.now()
        csv_import.queued_file = None
        csv_import.save(update_fields=["file_error", "finished_at", "queued_file"])
        return report
    report.rows = len(parsed.rows)
    report.ignored_columns = parsed.ignored_columns
    _import_into(store=csv_import.store, channel=csv_import.channel, csv_import=csv_import, rows=parsed.rows,
                 report=report, now=now)
    logger.info("queued csv import for %s: %s", csv_import.store.domain, report.summary())
    return report


def csv_imports_enqueue_stalled(*, now: datetime | None = None) -> int:
    """Queue again the imports whose task never ran (the broker lost it, or was down when the upload committed)
    or whose attempt ended without finishing (a killed worker): a queued file is imported late, never dropped."""
    return queued_files_enqueue_stalled(CsvImport, task_name=QUEUED_CSV_TASK, now=now or timezone.now())


class _Results:
    """Each row's outcome, by line."""

    def __init__(self) -> None:
        self.by_line: dict[int, RowResult] = {}

    def done(self, row: CsvRow, outcome: str, reason: str = "") -> None:
        record = row.record
        self.by_line[row.line] = RowResult(
            line=row.line,
            outcome=outcome,
            reason=reason,
            order=record.external_order_id if record else row.values.get("order", ""),
            tracking_number=record.tracking_number if record else row.values.get("tracking_number", ""),
            values=dict(row.values) if outcome in PROBLEM_OUTCOMES else {},
        )


def _import_rows(
    *,
    store: Store,
    channel: Channel,
    csv_import: CsvImport,
    rows: Sequence[CsvRow],
    report: CsvImportReport,
    now: datetime,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    results = _Results()
    by_line = {row.line: row for row in rows}
    for row in rows:
        if row.problem:
            results.done(row, REJECTED, row.problem)
    for line, problem in _check_within_file(rows).items():
        results.done(by_line[line], REJECTED, problem)
    good = [row for row in rows if row.line not in results.by_line]
    # Voids first (as in a channel's delivery): a replacement label in the same file takes the items they free.
    voids = [row for row in good if row.record is not None and row.record.voided]
    good = [row for row in good if row.record is not None and not row.record.voided]
    voided_on: dict[str, int] = {}  # number -> the line of this file that voided it
    for start in range(0, len(voids), ROWS_PER_BATCH):
        _void_batch(channel=channel, csv_import=csv_import, rows=voids[start:start + ROWS_PER_BATCH],
                    results=results, voided_on=voided_on, now=now)
        if progress:
            progress(len(results.by_line), len(rows))
    first_line_of_number: dict[str, int] = {}  # canonical number -> the line that created its shipment
    # Batches of rows in file order, each in its own transaction holding its orders locked: a long file never
    # holds an order for long, and a webhook or poll for the same order waits for one batch at most. Each batch's
    # hooks run in the background while the next one is matched and written (the voids above stay inline: they are
    # rare, and their hooks lock the orders whose replacement labels come next, which would have to wait anyway).
    # A big file fills tables faster than autovacuum analyzes them: their lookups need fresh statistics.
    statistics = PlannerStatistics(_IMPORT_LOOKUPS)
    with shipments_changed_in_background() as hooks:
        in_flight = _OrdersInFlight(hooks)
        for start in range(0, len(good), ROWS_PER_BATCH):
            _import_batch(store=store, channel=channel, csv_import=csv_import,
                          rows=good[start:start + ROWS_PER_BATCH], results=results,
                          first_line_of_number=first_line_of_number, now=now, in_flight=in_flight)
            statistics.after_batch(written=min(start + ROWS_PER_BATCH, len(good)))
            if progress:
                progress(len(results.by_line), len(rows))
    if progress and not good:
        progress(len(results.by_line), len(rows))
    report.results = [results.by_line[row.line] for row in rows]


# The columns an import's batches and hooks look rows up by, in the tables it fills.
_IMPORT_LOOKUPS: dict[type[models.Model], tuple[str, ...]] = {
    Shipment: ("store", "tracking_number", "order"),
    ShipmentLine: ("shipment",),
    ExternalShipment: ("channel", "dedupe_key", "order"),
}

# Rows per batch: a batch costs the same few queries whatever its size (one lookup of its orders, one lock, one read
# each of lines, shipments and known records, one write each of shipments, lines and records, then the hooks).
ROWS_PER_BATCH = 1000


class _OrdersInFlight:
    """The orders of the batches whose hooks may still be running in the background. A batch that shares one of
    them waits for those hooks before it locks its orders; one that shares none goes ahead.

    Why a batch may run beside the hooks of the batches before it:
    * It reads nothing they write. Matching reads the orders' keys and cancellation (order lookup, lock_orders),
      their line items, the shipments of the store by number and their lines, the orders' Genstore fulfillments
      (channels.matching.OrderLedger, channels.services.existing_shipments) and the channel's records
      (_known_states). The hooks write orders' unified status only (not read here), push intents (FulfillmentPush)
      and the store's drain stamp, e-mails due and event snapshots. Genstore fulfillments change by a push, which
      runs in a worker, as it may during any import. Everything a batch wrote committed before its hooks were
      handed over, so the next batch's ledgers see it: a parcel split across two batches is completed exactly, as
      when the hooks ran inline.
    * It never waits for them while they wait for it, because they share no order. The hooks lock the orders of
      their batch's shipments, which are that batch's orders: the unified status UPDATE FOR UPDATE in (store,
      orderId) order, and inserting push intents, e-mails and snapshots takes the KEY SHARE of their order and
      shipment rows in row order. A batch locks its orders FOR UPDATE in pk order (lock_orders), then FOR UPDATE
      the existing shipments it completes, all of its own orders (a number found on another order is rejected in
      memory, unlocked). Two orders shared, or one order and one of its shipments, could lock in opposite orders
      and deadlock, and PostgreSQL would abort one of them: possibly this import. Sharing none, neither locks a
      row the other holds (the store's row: KEY SHARE here, the drain stamp's UPDATE there, which do not conflict).
    Also, the unified status of a shared order is right either way: the hooks of its later batch compute it again,
    after the earlier ones (they run in the order handed over)."""

    def __init__(self, hooks: ShipmentsChangedHooks) -> None:
        self.hooks = hooks
        self.orders: set[int] = set()

    def keep_clear_of(self, order_pks: Collection[int]) -> None:
        """Before a batch locks these orders: wait for the hooks running on any of them."""
        if self.orders and self.hooks.idle():
            self.orders.clear()
        if not self.orders.isdisjoint(order_pks):
            self.hooks.wait()
            self.orders.clear()

    def add(self, order_pks: Collection[int]) -> None:
        """A batch committed: its hooks run on these orders."""
        if self.hooks.background:
            self.orders.update(order_pks)


def _known_states(channel: Channel, keys: Sequence[str]) -> dict[str, str]:
    """Rows this channel stored before (an earlier import of the same rows): dedupe key -> state."""
    return dict(
        ExternalShipment.objects.filter(AnyOf(F("dedupe_key"), list(keys)), channel=channel).order_by()
        .values_list("dedupe_key", "state")
    )


def _skip_if_known(row: CsvRow, state: str | None, results: _Results) -> bool:
    if state is None:
        return False
    if state == ExternalShipment.State.UNMATCHED:
        assert row.record is not None
        results.done(row, WAITING, f"still waiting for order {row.record.external_order_id!r} (kept from an "
                                   "earlier import; matched automatically when the order arrives)")
    else:
        results.done(row, ALREADY)
    return True


def _void_batch(
    *, channel: Channel, csv_import: CsvImport, rows: Sequence[CsvRow], results: _Results,
    voided_on: dict[str, int], now: datetime,
) -> None:
    """One batch of void rows, one transaction: each number withdrawn for the channel (channels.services); the
    shipments cancelled are announced once, after the commit (their pushes cancel what was pushed). Voids are rare:
    a few queries per row."""
    keys = {row.line: dedupe_key(row.record) for row in rows if row.record is not None}
    with transaction.atomic(), shipments_changed_batch():
        known = _known_states(channel, list(keys.values()))
        fresh: list[CsvRow] = []
        for row in rows:
            assert row.record is not None
            number = row.record.tracking_number
            if keys[row.line] in known:
                results.done(row, ALREADY, f"tracking number {number} was voided by an earlier import")
            elif number in voided_on:
                results.done(row, ALREADY, f"tracking number {number} is voided on line {voided_on[number]}")
            else:
                voided_on[number] = row.line
                fresh.append(row)
        outcomes = external_shipments_void(
            channel=channel, items=[(keys[row.line], row.record) for row in fresh if row.record is not None],
            now=now, csv_import_id=csv_import.pk,
        )
        for row, outcome in zip(fresh, outcomes, strict=True):
            assert row.record is not None
            number = row.record.tracking_number
            if outcome.outcome == "withdrawn":
                results.done(row, VOIDED, f"tracking number {number} withdrawn" + (
                    ": its shipment is cancelled" if outcome.shipment_id else ""))
            elif outcome.outcome == "unknown":
                results.done(row, NOTHING_TO_VOID, outcome.problem)
            elif outcome.outcome == "already":
                results.done(row, ALREADY, f"tracking number {number} was voided before")
            else:  # duplicate: the same row stored meanwhile by a concurrent import
                results.done(row, ALREADY, f"tracking number {number} was voided by an earlier import")


def _waiting_reason(row: CsvRow) -> str:
    assert row.record is not None
    return (f"unknown order {row.record.external_order_id!r}: no mirrored order has this orderId, "
            "sourceIdentifier or name; kept, and matched automatically if that order arrives")


def _import_batch(
    *,
    store: Store,
    channel: Channel,
    csv_import: CsvImport,
    rows: Sequence[CsvRow],
    results: _Results,
    first_line_of_number: dict[str, int],
    now: datetime,
    in_flight: _OrdersInFlight,
) -> None:
    """One batch of good rows: their orders looked up, then one transaction that locks them, matches every row in
    memory and writes shipments, lines and records in bulk; shipments_changed (unified status, push intents and the
    store's push drain) is sent once, after its commit (in the background: `in_flight`). Rows whose order is not
    mirrored are kept as unmatched records, matched when the order arrives."""
    keys = {row.line: dedupe_key(row.record) for row in rows if row.record is not None}
    lookups = order_keys_for_external_ids(
        store=store,
        external_ids={row.record.external_order_id for row in rows if row.record is not None},
        source_names=channel.source_names,
    )
    waiting: list[CsvRow] = []
    matched: list[tuple[CsvRow, int]] = []
    for row in rows:
        assert row.record is not None
        lookup = lookups.get(row.record.external_order_id)
        if lookup is None:
            waiting.append(row)
        elif lookup.problem or lookup.order is None:
            results.done(row, REJECTED, lookup.problem)
        else:
            matched.append((row, lookup.order.pk))
    order_pks = {order_pk for _, order_pk in matched}
    in_flight.keep_clear_of(order_pks)
    with transaction.atomic(), shipments_changed_batch():
        batch = MatchBatch(store=store, channel=channel, order_pks=order_pks)
        # Read under the locks: a concurrent import of the same rows committed before we got them, or waits for us.
        known = _known_states(channel, [keys[row.line] for row in [*waiting, *(row for row, _ in matched)]])
        kept = []
        for row in waiting:
            assert row.record is not None
            if not _skip_if_known(row, known.get(keys[row.line]), results):
                results.done(row, WAITING, _waiting_reason(row))
                kept.append(external_shipment_values(channel=channel, record=row.record, key=keys[row.line],
                                                     csv_import_id=csv_import.pk))
        # Conflicts skipped: the same rows kept at the same moment by someone else (no order lock covers them).
        rows_insert(ExternalShipment, kept, conflict=("channel_id", "dedupe_key"))
        fresh = [(row, order_pk) for row, order_pk in matched if not _skip_if_known(row, known.get(keys[row.line]),
                                                                                    results)]
        # Rejected rows live in the report only: a corrected file imports them.
        outcomes = batch.match([(keys[row.line], row.record, order_pk) for row, order_pk in fresh if row.record],
                               now=now, csv_import_id=csv_import.pk, keep_rejected=False)
        for (row, _), outcome in zip(fresh, outcomes, strict=True):
            number = outcome.tracking_number
            if outcome.outcome == "rejected":
                results.done(row, REJECTED, outcome.problem)
            elif outcome.outcome == "created":
                first_line_of_number.setdefault(number, row.line)
                results.done(row, CREATED)
            elif outcome.outcome == "added":
                first = first_line_of_number.get(number)
                results.done(row, ADDED, f"items added to the shipment of line {first}" if first else "items added")
            elif outcome.outcome == "waiting":  # its order was deleted since the lookup
                results.done(row, WAITING, _waiting_reason(row))
            else:
                results.done(row, ALREADY, "the shipment already holds these items")
    in_flight.add(order_pks)
