"""push_fulfillments [--store D]: push every fulfillment still owed to Genstore now, in the foreground."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from oma.fulfillment.services import pushes_run
from oma.stores.models import Store


class Command(BaseCommand):
    help = (
        "Push to Genstore, now and in the foreground, every shipment whose fulfillment is owed (never pushed, "
        "changed since, retry due, or abandoned by a stopped worker). Ends with one summary line."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--store", help="store domain, e.g. shop1.genmystore.com (default: every active store)")
        parser.add_argument(
            "--workers", type=int, default=4,
            help="pushes in parallel (they share the store's rate limit; default 4)",
        )
        parser.add_argument("--verbose-failures", action="store_true", help="list every failed push, not 20")

    def handle(self, *args: object, **options: object) -> None:
        store = None
        if options["store"]:
            store = Store.objects.filter(domain=str(options["store"]).strip().lower()).first()
            if store is None:
                raise CommandError(f"no store {options['store']!r}; connect it with connect_store first")
            if not store.is_active:
                raise CommandError(f"{store.domain} is inactive: nothing is pushed for it")
        workers = int(options["workers"])  # type: ignore[arg-type]
        if workers < 1:
            raise CommandError("--workers must be at least 1")
        summary = pushes_run(store=store, workers=workers)
        shown = summary.problems if options["verbose_failures"] else summary.problems[:20]
        for problem in shown:
            self.stderr.write(problem)
        if len(summary.problems) > len(shown):
            self.stderr.write(f"... and {len(summary.problems) - len(shown)} more (--verbose-failures)")
        scope = store.domain if store else "all active stores"
        self.stdout.write(f"push_fulfillments ({scope}): {summary.line()}")
