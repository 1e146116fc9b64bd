"""Importing an order file (generic CSV, Amazon's order report, eBay's orders report): the one service behind
`import_orders` and the admin's "Upload orders" page.

The file is read by oma.channels.connectors.order_files; its good orders go to `external_orders_receive`
(oma.channels.order_intake), the intake the channel webhook uses too, which keeps each order once per (channel,
external order id) and has the worker create it in Genstore. An order with a bad row is not taken at all (half an
order in Genstore would be wrong): every row of it is reported, with its line number, reason and values, as the
tracking CSV report does; the good orders are kept. Importing the same file again creates nothing.

A dry run is one transaction, rolled back: every check runs, nothing is saved and no task is published. A file with
more rows than `queue_above_rows` (the admin's upload) is checked as a file, kept on its OrderImport row and
imported by a worker (oma.channels.file_queue): the report says `queued`, and the row gets the results when done.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from oma.channels.connectors.base import ExternalOrderInput
from oma.channels.connectors.order_files import OrderFileError, ParsedOrderFile, RejectedRow, parse_order_file
from oma.channels.csv_import import MAX_FILE_BYTES, MAX_ROWS
from oma.channels.file_queue import queued_file_claim, queued_file_hold, queued_files_enqueue_stalled
from oma.channels.models import Channel, OrderImport
from oma.channels.order_intake import channel_source_name, external_orders_receive
from oma.channels.services import ChannelInvalid, channel_touch
from oma.stores.models import Store

logger = logging.getLogger(__name__)

# The task that imports a queued order file (oma.channels.tasks).
QUEUED_ORDERS_TASK = "channels.import_queued_orders"
# Orders handed to the intake at a time: the progress a terminal shows, and the most a failure can cut short (the
# orders of earlier batches are kept; importing the file again takes the rest).
ORDERS_PER_BATCH = 500

Progress = Callable[[int, int], None]  # (orders done, orders in the file)


@dataclass
class OrderImportReport:
    file_name: str
    file_format: str = ""
    channel_name: str = ""
    rows: int = 0  # data rows read
    orders: int = 0  # good orders in the file
    new: int = 0
    unchanged: int = 0  # received before, same content
    changed: int = 0
    cancel_requested: int = 0
    rejected: list[RejectedRow] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    file_error: str = ""
    dry_run: bool = False
    queued: bool = False  # handed to a worker: the import's own page shows the report once it has run
    import_id: int | None = None

    @property
    def ok(self) -> bool:
        return not self.file_error

    @property
    def problems(self) -> list[RejectedRow]:
        """The rejected rows, by line."""
        return sorted(self.rejected, key=lambda row: row.line)

    def summary(self) -> str:
        if self.file_error:
            return f"{self.file_name}: not imported: {self.file_error}"
        name = f"{self.file_name} ({self.file_format})" if self.file_format else self.file_name
        if self.queued:
            return f"{name}: {self.rows} rows queued for import"
        prefix = "dry run, nothing saved: " if self.dry_run else ""
        new = "new (to create in Genstore)" if self.dry_run else "new (being created in Genstore)"
        return (
            f"{prefix}{name}: {self.rows} rows, {self.orders} orders: {self.new} {new}, "
            f"{self.unchanged} already imported, {self.changed} changed, {self.cancel_requested} cancelled; "
            f"{len(self.rejected)} rows rejected"
        )

    def as_text(self) -> str:
        lines = [self.summary()]
        if self.ignored_columns:
            lines.append(f"columns not used: {', '.join(self.ignored_columns)}")
        for row in self.problems:
            lines.append(f"line {row.line}: rejected: {row.reason}")
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {
            "file": self.file_name,
            "format": self.file_format,
            "channel": self.channel_name,
            "importId": self.import_id,
            "dryRun": self.dry_run,
            "queued": self.queued,
            "error": self.file_error or None,
            "rows": self.rows,
            "orders": self.orders,
            "new": self.new,
            "alreadyImported": self.unchanged,
            "changed": self.changed,
            "cancelled": self.cancel_requested,
            "rejected": len(self.rejected),
            "ignoredColumns": self.ignored_columns,
            "problems": [
                {"line": row.line, "outcome": "rejected", "reason": row.reason, "order": row.order_ref,
                 "values": row.values}
                for row in self.problems
            ],
        }


class _DryRunRollback(Exception):
    pass


def channel_orders_problem(channel: Channel) -> str | None:
    """Why `channel` cannot bring orders (it has no source name for Genstore), or None: the intake's own rule."""
    try:
        channel_source_name(channel)
    except ChannelInvalid as exc:
        return str(exc)
    return None


def external_orders_import(
    *,
    store: Store,
    channel: Channel,
    data: bytes,
    file_name: str,
    file_format: str = "auto",
    dry_run: bool = False,
    uploaded_by: Any = None,
    via: str = "command",
    now: datetime | None = None,
    queue_above_rows: int | None = None,
    progress: Progress | None = None,
) -> OrderImportReport:
    """Import one order file into `channel` (a channel of `store`). Never raises for bad input: the report says
    what happened. `file_format` is "auto" (recognised by the header) or one of order_files.FORMATS."""
    now = now or timezone.now()
    report = OrderImportReport(file_name=file_name, dry_run=dry_run, channel_name=channel.name)
    problem = _input_problem(store=store, channel=channel, data=data)
    if problem:
        report.file_error = problem
        return report
    try:
        parsed = parse_order_file(data, file_format=file_format, max_rows=MAX_ROWS, now=now)
    except OrderFileError as exc:
        report.file_error = str(exc)
        return report
    _report_parsed(report, parsed)
    try:
        # A dry run is one transaction rolled back at the end (with it, every task the intake would publish).
        with transaction.atomic() if dry_run else nullcontext():
            order_import = OrderImport.objects.create(
                store=store,
                channel=channel,
                file_name=file_name[:255],
                file_sha256=hashlib.sha256(data).hexdigest(),
                file_format=parsed.file_format,
                uploaded_by=uploaded_by if getattr(uploaded_by, "pk", None) else None,
                via=via,
                rows=parsed.rows,
            )
            report.import_id = order_import.pk
            if not dry_run and queue_above_rows is not None and parsed.rows > queue_above_rows:
                queued_file_hold(order_import, data, task_name=QUEUED_ORDERS_TASK)  # broker down: queued later
                report.queued = True
                logger.info("order import for %s: %s", store.domain, report.summary())
                return report
            _import_into(channel=channel, order_import=order_import, orders=parsed.orders, report=report, now=now,
                         progress=progress)
            if dry_run:
                raise _DryRunRollback
    except _DryRunRollback:
        report.import_id = None
    except ChannelInvalid as exc:  # the intake's own refusal (source names removed meanwhile)
        report.file_error = str(exc)
    logger.info("order import for %s: %s", store.domain, report.summary())
    return report


def _input_problem(*, store: Store, channel: Channel, data: bytes) -> str | None:
    if channel.store_id != store.pk:
        return f"channel {channel.name!r} belongs to another store"
    if len(data) > MAX_FILE_BYTES:
        return f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB: split it"
    return channel_orders_problem(channel)


def _report_parsed(report: OrderImportReport, parsed: ParsedOrderFile) -> None:
    report.file_format = parsed.file_format
    report.rows = parsed.rows
    report.orders = len(parsed.orders)
    report.rejected = list(parsed.rejected)
    report.ignored_columns = list(parsed.ignored_columns)


def _import_into(
    *, channel: Channel, order_import: OrderImport, orders: Sequence[ExternalOrderInput], report: OrderImportReport,
    now: datetime, progress: Progress | None,
) -> None:
    """Hand the orders to the intake and record the outcome on `order_import` (its queued file, if any, is let go
    either way)."""
    try:
        for start in range(0, len(orders), ORDERS_PER_BATCH):
            receipt = external_orders_receive(
                channel=channel, orders=orders[start:start + ORDERS_PER_BATCH], order_import=order_import, now=now
            )
            report.new += receipt.new
            report.unchanged += receipt.unchanged
            report.changed += receipt.changed
            report.cancel_requested += receipt.cancel_requested
            if progress is not None:
                progress(min(start + ORDERS_PER_BATCH, len(orders)), len(orders))
    except Exception as exc:
        # Batches before the failure are in; importing the file again finishes the rest (the rest only).
        order_import.file_error = f"stopped by an error: {type(exc).__name__}: {exc}"[:2000]
        order_import.finished_at = timezone.now()
        order_import.queued_file = None
        order_import.save(update_fields=["file_error", "finished_at", "queued_file"])
        raise
    order_import.orders_new = report.new
    order_import.orders_known = report.unchanged
    order_import.orders_changed = report.changed
    order_import.orders_cancelled = report.cancel_requested
    order_import.rejected_rows = len(report.rejected)
    order_import.report = report.as_json()
    order_import.finished_at = timezone.now()
    order_import.queued_file = None
    order_import.save()
    channel_touch(channel, now=now)


def order_import_run_queued(*, order_import_id: int, now: datetime | None = None) -> OrderImportReport | None:
    """Run an order import the admin queued. None when there is nothing to do: it has run already, another attempt
    holds it (a task delivered twice), or the row is gone. An attempt lost half-way (a killed worker) is taken over
    once its claim has expired (`order_imports_enqueue_stalled`); the orders it took count as already imported."""
    now = now or timezone.now()
    if not queued_file_claim(OrderImport, pk=order_import_id, now=now):
        return None
    order_import = OrderImport.objects.select_related("store", "channel").get(pk=order_import_id)
    report = OrderImportReport(file_name=order_import.file_name, import_id=order_import.pk,
                               channel_name=order_import.channel.name)
    data = order_import.queued_file
    assert data is not None  # claimed: a queued row
    try:
        parsed = parse_order_file(bytes(data), file_format=order_import.file_format or "auto", max_rows=MAX_ROWS,
                                  now=now)
        problem = channel_orders_problem(order_import.channel)
        if problem:
            raise OrderFileError(problem)
    except OrderFileError as exc:  # it was read before it was queued; the channel may have changed since
        report.file_error = order_import.file_error = str(exc)
        order_import.report = report.as_json()
        order_import.finished_at = timezone.now()
        order_import.queued_file = None
        order_import.save(update_fields=["file_error", "report", "finished_at", "queued_file"])
        return report
    _report_parsed(report, parsed)
    _import_into(channel=order_import.channel, order_import=order_import, orders=parsed.orders, report=report,
                 now=now, progress=None)
    logger.info("queued order import for %s: %s", order_import.store.domain, report.summary())
    return report


def order_imports_enqueue_stalled(*, now: datetime | None = None) -> int:
    """Queue again the order imports whose task never ran or whose worker died: imported late, never dropped."""
    return queued_files_enqueue_stalled(OrderImport, task_name=QUEUED_ORDERS_TASK, now=now or timezone.now())
