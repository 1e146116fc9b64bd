"""`poll_tracking [--store D]`: poll the due shipments now, in the foreground, and print a summary line."""

from __future__ import annotations

import logging

from django.core.management.base import BaseCommand, CommandError, CommandParser

from oma.stores.models import Store
from tracking.polling import poll_due_shipments


class Command(BaseCommand):
    help = "Poll the carriers for every due shipment (of one store with --store) now; ends with a summary line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--store", default="", help="store domain, e.g. shop1.genmystore.com")
        parser.add_argument("--limit", type=int, default=None, help="poll at most this many shipments")
        parser.add_argument(
            "--time-budget", type=float, default=None,
            help="stop claiming new work after this many seconds (default TRACKING_POLL_TIME_BUDGET_SECONDS)",
        )

    def handle(self, *args: object, **options: object) -> None:
        store = None
        if options["store"]:
            store = Store.objects.filter(domain=options["store"]).first()
            if store is None:
                raise CommandError(f"no store {options['store']!r}")
            if not store.is_active:
                raise CommandError(f"store {store.domain} is inactive: its shipments are not polled")
        if int(options["verbosity"]) < 2:
            logging.getLogger("tracking.polling").setLevel(logging.WARNING)  # the summary line says it all
        summary = poll_due_shipments(store=store, limit=options["limit"], time_budget=options["time_budget"])
        for error in summary.errors:
            self.stderr.write(error)
        self.stdout.write(summary.line())
