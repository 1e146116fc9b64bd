"""`export_orders --store D [--format jsonl|csv] [--since 2d|ISO]`: the mirrored orders of a store on standard
output (with --since, only those Genstore updated since then).

Made to be piped: `export_orders ... | head -1` ends quietly with status 0.
"""

from __future__ import annotations

import csv
import json

from django.core.management.base import CommandParser

from oma.core.cli import SINCE_HELP, PipeSafeCommand, parse_since
from oma.core.csv_cells import safe_cell
from oma.merchant.exports import orders_export_rows
from oma.stores.cli import store_for_cli

CSV_COLUMNS = [
    "orderId",
    "sourceName",
    "sourceIdentifier",
    "financialStatus",
    "fulfillmentStatus",
    "cancelled",
    "unifiedStatus",
    "lineItems",
    "shipments",
]


class Command(PipeSafeCommand):
    help = "Write one record per mirrored order to stdout (JSON lines or CSV; nested fields as JSON in CSV)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--store", required=True, help="store domain, e.g. shop1.genmystore.com")
        parser.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
        parser.add_argument(
            "--since", metavar="WHEN", help=f"only orders Genstore updated at or after: {SINCE_HELP}"
        )

    def handle(self, *args: object, **options: object) -> None:
        store = store_for_cli(str(options["store"]))
        since = parse_since(str(options["since"])) if options["since"] else None
        rows = orders_export_rows(store=store, updated_since=since)
        if options["format"] == "jsonl":
            for row in rows:
                self.stdout.write(json.dumps(row, separators=(",", ":")))
            return
        # CRLF (RFC 4180): the writer quotes a cell holding either character of it, so a CR inside a cell (which a
        # spreadsheet reads as a row break) cannot start a new row with a cell the escaper never saw.
        writer = csv.DictWriter(self.stdout, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
        writer.writeheader()
        for row in rows:
            # Order ids and channel names come from outside OMA: no cell may run as a spreadsheet formula.
            writer.writerow(
                {
                    key: safe_cell(json.dumps(value, separators=(",", ":")) if isinstance(value, list) else value)
                    for key, value in row.items()
                }
            )
