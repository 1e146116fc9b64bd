"""`sync_orders [--store D] [--full] [--since 6h|ISO]`: sweep Genstore orders into the mirror now, in the foreground.

Before a store's sweep, one request without retries checks that its API can be reached at all: a mistyped address
or a refused connection ends the command at once with one line (the sweep itself keeps every retry).
"""

from __future__ import annotations

import sys
from datetime import datetime

from django.core.management.base import CommandError, CommandParser

from oma.core.cli import SINCE_HELP, PipeSafeCommand, parse_since, tty_progress
from oma.orders.models import SyncRun
from oma.orders.services import SweepProgress, orders_sweep
from oma.stores.cli import genstore_reachable, store_for_cli
from oma.stores.models import Store

__all__ = ["EXIT_FAILED", "EXIT_SKIPPED", "Command", "parse_since"]

# Exit codes: 0 every sweep succeeded; 1 a sweep failed or the arguments are wrong; 75 (EX_TEMPFAIL) nothing failed
# but a store was skipped because another sweep of it was running: try again later.
EXIT_FAILED = 1
EXIT_SKIPPED = 75


class Command(PipeSafeCommand):
    help = (
        "Sweep Genstore orders into the mirror now, in the foreground (incremental unless --full). "
        f"Exit status: 0 all succeeded, {EXIT_FAILED} a sweep failed or a store cannot be reached (safe to run "
        f"again), {EXIT_SKIPPED} a store was skipped because another sweep of it is running."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--store", help="store domain, e.g. shop1.genmystore.com (default: every active store)")
        parser.add_argument("--full", action="store_true", help="walk every order, not only recent changes")
        parser.add_argument("--since", metavar="WHEN", help=f"incremental from this time: {SINCE_HELP}")

    def handle(self, *args: object, **options: object) -> None:
        if options["full"] and options["since"]:
            raise CommandError("--full and --since exclude each other")
        since = parse_since(str(options["since"])) if options["since"] else None
        stores = self._stores(str(options["store"]) if options["store"] else None)
        kind = SyncRun.Kind.FULL if options["full"] else SyncRun.Kind.INCREMENTAL
        states: list[str] = []
        for store in stores:
            try:
                genstore_reachable(store)
            except CommandError as exc:
                if len(stores) == 1:
                    raise
                self.stderr.write(str(exc))  # the other stores are still swept
                states.append(SyncRun.State.FAILED)
                continue
            try:
                run = self._sweep(store, kind, since)
            except KeyboardInterrupt:
                self.stderr.write(f"{store.domain}: interrupted; the sweep is recorded as failed, run it again")
                sys.exit(130)
            self.stdout.write(self._summary(store, run))
            states.append(run.state)
        if SyncRun.State.FAILED in states:
            raise CommandError("a sweep failed (see above); it is safe to run again", returncode=EXIT_FAILED)
        if SyncRun.State.SKIPPED in states:
            raise CommandError("another sweep of a store was running; try again later", returncode=EXIT_SKIPPED)

    def _stores(self, domain: str | None) -> list[Store]:
        if domain is None:
            stores = list(Store.objects.filter(is_active=True))
            if not stores:
                raise CommandError("no active store to sweep; connect one with connect_store")
            return stores
        return [store_for_cli(domain, active=True)]

    @staticmethod
    def _summary(store: Store, run: SyncRun) -> str:
        line = (
            f"{store.domain}: {run.kind} sweep {run.state}: pages={run.pages} seen={run.seen} "
            f"created={run.created} updated={run.updated} unchanged={run.unchanged} errors={run.errors} "
            f"duration={run.duration_seconds or 0.0:.1f}s"
        )
        if run.updated_at_min:
            line += f" since={run.updated_at_min.isoformat()}"
        if run.error_message:
            line += f" error={run.error_message!r}"
        return line

    def _sweep(self, store: Store, kind: str, since: datetime | None) -> SyncRun:
        with tty_progress(store.domain, unit="orders", stream=self.stderr) as update:
            if update is None:
                return orders_sweep(store=store, kind=kind, since=since)

            def show(progress: SweepProgress) -> None:
                assert update is not None
                update(progress.seen, progress.total, f"{progress.pages} pages")

            return orders_sweep(store=store, kind=kind, since=since, progress=show, count_first=True)
