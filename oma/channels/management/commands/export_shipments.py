"""`export_shipments --channel SLUG --format amazon-confirm [--store D] [--since 6h] [--output FILE]`: the shipments
of a channel's external orders in the marketplace's upload format (oma.channels.marketplace_export), to standard
output or a file. `| head` ends quietly.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from oma.channels.marketplace_export import FORMATS, amazon_confirmation_lines, amazon_confirmation_rows
from oma.channels.selectors import ChannelNotFound, channel_by_ref
from oma.core.cli import SINCE_HELP, PipeSafeCommand, parse_since


class Command(PipeSafeCommand):
    help = (
        "Write the shipments of a channel's external orders in the marketplace's upload format: amazon-confirm is "
        "Amazon's shipping-confirmation flat file (tab-separated: order-id, order-item-id, quantity, ship-date, "
        "carrier-code, carrier-name, tracking-number, ship-method), one row per shipped line per parcel."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--channel", required=True, help="the channel's slug (or, with --store, its name)")
        parser.add_argument("--store", default=None, help="the store's domain: find --channel by name in it")
        parser.add_argument("--format", dest="file_format", required=True, choices=FORMATS)
        parser.add_argument("--since", default=None,
                            help=f"only parcels OMA learned of from then on: {SINCE_HELP} (default: all)")
        parser.add_argument("--output", default=None, help="write to this file instead of standard output")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            channel = channel_by_ref(ref=options["channel"], store_domain=options["store"])
        except ChannelNotFound as exc:
            raise CommandError(str(exc)) from None
        since = parse_since(options["since"]) if options["since"] else None
        lines = amazon_confirmation_lines(amazon_confirmation_rows(channel=channel, since=since))
        if options["output"] is None:
            for line in lines:
                self.stdout.write(line, ending="")
            return
        _write_file(Path(options["output"]), lines)


def _write_file(path: Path, lines: Any) -> None:
    """Written beside the target, then renamed: an interrupted export never leaves half a file to upload."""
    try:
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.writelines(lines)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
