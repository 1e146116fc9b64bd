"""`import_tracking FILE --store D [--channel NAME_OR_SLUG] [--dry-run] [--json] [--allow-rejects]`: import a CSV of
tracking numbers.

The same service as the admin upload page: every row is checked, good rows become shipments, and the report
names each rejected row (and each row waiting for its order) with its line number and reason. Importing the
same file again creates nothing. A row's order is the Genstore orderId, the order's name (`#1001` or `1001`), or
the channel's own order id (Genstore's sourceIdentifier).

--channel: a channel of the store of any kind (CSV, webhook, ShipStation), by name or slug; a name no channel has is
refused (a typo must not start a new channel: create one with `channel add`). Without it, the store's first CSV
channel (created as "CSV import" when there is none). A dry run creates nothing, channels included.

Exit status: 0 every row was imported (or waits for its order, which is matched when it arrives); 3 (EXIT_REJECTS)
the file was read but some rows were rejected (the report says which; --allow-rejects exits 0 then); 1 the file as
a whole could not be imported, or a wrong argument. Progress is shown on standard error when it is a terminal.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db import transaction
from django.db.models import Q

from oma.channels.csv_import import REJECTED, CsvImportReport, tracking_csv_import
from oma.channels.models import Channel
from oma.channels.services import ChannelInvalid, channel_create
from oma.core.cli import EXIT_REJECTS, PipeSafeCommand, tty_progress
from oma.stores.cli import store_for_cli
from oma.stores.models import Store

DEFAULT_CHANNEL_NAME = "CSV import"


def _stdin_bytes(stdin: Any) -> bytes:
    """The file as bytes (the CSV reader decodes it itself); a text stream without a buffer is encoded."""
    buffer = getattr(stdin, "buffer", None)
    return bytes(buffer.read()) if buffer is not None else str(stdin.read()).encode()


class _DryRunDone(Exception):
    """Leaves the transaction of a dry run that had to stand a channel in: rolled back, nothing kept."""


def channel_for_import(*, store: Store, name_or_slug: str | None) -> Channel | None:
    """The channel an import's rows come from: the one named (any kind; by its name, else its slug; CommandError
    listing the store's channels when none is), else the store's first CSV channel, or None when the store has no
    CSV channel yet (the import creates its default one)."""
    channels = Channel.objects.filter(store=store)
    if not name_or_slug:
        return channels.filter(kind="csv").order_by("pk").first()
    found = list(channels.filter(Q(name=name_or_slug) | Q(slug=name_or_slug)).order_by("pk"))
    channel = next((c for c in found if c.name == name_or_slug), None) or next(iter(found), None)
    if channel is None:
        known = ", ".join(f"{c.name!r} ({c.slug}, {c.kind})" for c in channels.order_by("name")) or "none yet"
        raise CommandError(
            f"store {store.domain} has no channel named {name_or_slug!r} (its channels: {known}); create it with: "
            f"channel add --store {store.domain} --kind csv --name {name_or_slug!r}"
        )
    return channel


class Command(PipeSafeCommand):
    help = (
        "Import tracking numbers from a CSV file (columns: order, tracking_number, carrier, sku|line_item_id, "
        "quantity, shipped_at). The order column takes the Genstore orderId, the order name (#1001) or the "
        f"channel's own order id. Exit status: 0 imported, {EXIT_REJECTS} some rows were rejected (see the report; "
        "--allow-rejects: 0), 1 the file could not be imported."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="path of the CSV file ('-' reads standard input)")
        parser.add_argument("--store", required=True, help="the store's domain")
        parser.add_argument(
            "--channel", default=None, metavar="NAME_OR_SLUG",
            help="the channel the rows come from, of any kind, by name or slug (default: the store's CSV channel, "
                 f"created as {DEFAULT_CHANNEL_NAME!r} when it has none)",
        )
        parser.add_argument("--dry-run", action="store_true", help="check everything, save nothing")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")
        parser.add_argument(
            "--allow-rejects", action="store_true",
            help=f"exit 0 even when rows were rejected (default: exit {EXIT_REJECTS})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        store = store_for_cli(options["store"])
        path = options["file"]
        try:
            data = _stdin_bytes(self.stdin) if path == "-" else Path(path).read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from exc
        file_name = "stdin" if path == "-" else Path(path).name
        channel = channel_for_import(store=store, name_or_slug=options["channel"])
        with tty_progress(file_name, stream=self.stderr) as update:
            progress: Callable[[int, int], None] | None = update
            if channel is None and options["dry_run"]:
                report = self._dry_run_without_channel(store, data, file_name, progress)
            else:
                if channel is None:
                    channel = self._create_channel(store)
                report = tracking_csv_import(
                    store=store, data=data, file_name=file_name, channel=channel, via="command",
                    dry_run=options["dry_run"], progress=progress,
                )
        self.stdout.write(json.dumps(report.as_json()) if options["json"] else report.as_text())
        if not report.ok:
            raise CommandError(report.file_error)
        rejected = report.count(REJECTED)
        if rejected and not options["allow_rejects"]:
            raise CommandError(
                f"{rejected} of {report.rows} rows rejected (listed above); exit status {EXIT_REJECTS} "
                "(--allow-rejects: 0)",
                returncode=EXIT_REJECTS,
            )

    @staticmethod
    def _create_channel(store: Store) -> Channel:
        try:
            return channel_create(store=store, kind="csv", name=DEFAULT_CHANNEL_NAME)
        except ChannelInvalid as exc:
            raise CommandError(str(exc)) from exc

    @staticmethod
    def _dry_run_without_channel(
        store: Store, data: bytes, file_name: str, progress: Callable[[int, int], None] | None
    ) -> CsvImportReport:
        """Check the file as if the default CSV channel existed: a stand-in is written inside a transaction that is
        rolled back, without channel_create (nothing is created, so nothing is logged as created)."""
        report: CsvImportReport | None = None
        try:
            with transaction.atomic():
                stand_in = Channel.objects.create(store=store, kind="csv", name=DEFAULT_CHANNEL_NAME,
                                                  slug=f"dry-run-{store.pk}-csv")
                report = tracking_csv_import(store=store, data=data, file_name=file_name, channel=stand_in,
                                             via="command", dry_run=True, progress=progress)
                raise _DryRunDone
        except _DryRunDone:
            pass
        assert report is not None
        return report
