"""`import_orders FILE --channel SLUG [--store D] [--format auto|generic|amazon|ebay] [--dry-run] [--allow-rejects]
[--json]`: bring the orders of a marketplace's order file into Genstore.

The same service as the admin's "Upload orders" page (oma.channels.order_import): every row is checked, the good
orders are kept and created in Genstore by the worker, and the report names each rejected row with its line
number and reason. Importing the same file again creates nothing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from oma.channels.connectors.order_files import FORMATS
from oma.channels.order_import import OrderImportReport, external_orders_import
from oma.channels.selectors import ChannelNotFound, channel_by_ref
from oma.core.cli import EXIT_REJECTS, PipeSafeCommand, tty_progress


class Command(PipeSafeCommand):
    help = (
        "Import external orders from an order file (generic CSV, Amazon order report, eBay orders report) into "
        "a channel; the worker creates them in Genstore, once each. Exit status: 0 every row imported; 1 nothing "
        f"imported (unreadable file, unknown channel, a channel without source names); {EXIT_REJECTS} imported, "
        "but some rows were rejected (see the report; --allow-rejects exits 0)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="path of the order file ('-' reads standard input)")
        parser.add_argument("--channel", required=True,
                            help="the channel's slug (or, with --store, its name or slug)")
        parser.add_argument("--store", default=None, help="the store's domain: find --channel by name in it")
        parser.add_argument("--format", dest="file_format", default="auto", choices=["auto", *FORMATS],
                            help="the file's format (default: recognised by its header)")
        parser.add_argument("--dry-run", action="store_true", help="check every row, save nothing")
        parser.add_argument("--allow-rejects", action="store_true",
                            help=f"exit 0 even when rows were rejected (default: exit {EXIT_REJECTS})")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            channel = channel_by_ref(ref=options["channel"], store_domain=options["store"])
        except ChannelNotFound as exc:
            raise CommandError(str(exc)) from None
        path = options["file"]
        try:
            data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from exc
        with tty_progress(channel.slug, unit="orders", stream=self.stderr) as update:

            def show(done: int, total: int) -> None:
                if update is not None:
                    update(done, total, "")

            report = external_orders_import(
                store=channel.store,
                channel=channel,
                data=data,
                file_name="stdin" if path == "-" else Path(path).name,
                file_format=options["file_format"],
                dry_run=options["dry_run"],
                via="command",
                progress=show,
            )
        self.stdout.write(json.dumps(report.as_json()) if options["json"] else report.as_text())
        self._exit(report, allow_rejects=options["allow_rejects"])

    @staticmethod
    def _exit(report: OrderImportReport, *, allow_rejects: bool) -> None:
        if not report.ok:
            raise CommandError(report.file_error)
        if report.rejected and not allow_rejects:
            rest = "dry run: nothing was saved" if report.dry_run else "the other orders were imported"
            raise CommandError(f"{len(report.rejected)} rows rejected (listed above); {rest}", returncode=EXIT_REJECTS)
