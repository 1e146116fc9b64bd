"""`poll_tracking [--store D]`: poll the due shipments now, in the foreground, and print a summary line."""

from __future__ import annotations

import logging
from typing import Any

from django.core.management.base import CommandError, CommandParser

from oma.core.cli import PipeSafeCommand
from oma.stores.cli import store_for_cli
from tracking.polling import poll_due_shipments


class Command(PipeSafeCommand):
    help = "Poll the carriers for every due shipment (of one store with --store) now; ends with a summary line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--store", default="", help="store domain, e.g. shop1.genmystore.com")
        parser.add_argument("--limit", type=int, default=None, help="poll at most this many shipments")
        parser.add_argument(
            "--time-budget", type=float, default=None,
            help="stop claiming new work after this many seconds (default TRACKING_POLL_TIME_BUDGET_SECONDS)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        store = None
        if options["store"]:
            store = store_for_cli(str(options["store"]))
            if not store.is_active:
                raise CommandError(f"store {store.domain} is inactive: its shipments are not polled")
        if int(options["verbosity"]) < 2:
            logging.getLogger("tracking.polling").setLevel(logging.WARNING)  # the summary line says it all
        summary = poll_due_shipments(store=store, limit=options["limit"], time_budget=options["time_budget"])
        for error in summary.errors:
            self.stderr.write(error)
        self.stdout.write(summary.line())
