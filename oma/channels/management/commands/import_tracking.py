"""`import_tracking FILE --store D [--channel NAME] [--dry-run] [--json]`: import a CSV of tracking numbers.

The same service as the admin upload page: every row is checked, good rows become shipments, and the report
names each rejected row (and each row waiting for its order) with its line number and reason. Importing the
same file again creates nothing. Exit status 0 when the file was read (even with rejected rows), 1 when the file
as a whole could not be imported.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from oma.channels.csv_import import tracking_csv_import
from oma.stores.models import Store


class Command(BaseCommand):
    help = "Import tracking numbers from a CSV file (columns: order, tracking_number, carrier, sku|line_item_id, " \
           "quantity, shipped_at)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="path of the CSV file ('-' reads standard input)")
        parser.add_argument("--store", required=True, help="the store's domain")
        parser.add_argument("--channel", default=None, help="the CSV channel's name (default: the store's CSV channel)")
        parser.add_argument("--dry-run", action="store_true", help="check everything, save nothing")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        store = Store.objects.filter(domain=options["store"].strip().lower()).first()
        if store is None:
            raise CommandError(f"no store with domain {options['store']!r} (connect it first with connect_store)")
        path = options["file"]
        try:
            data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from exc
        report = tracking_csv_import(
            store=store,
            data=data,
            file_name="stdin" if path == "-" else Path(path).name,
            channel_name=options["channel"],
            via="command",
            dry_run=options["dry_run"],
        )
        if options["json"]:
            self.stdout.write(json.dumps(report.as_json()))
        else:
            self.stdout.write(report.as_text())
        if not report.ok:
            raise CommandError(report.file_error)
