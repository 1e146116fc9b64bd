from __future__ import annotations

import re
import sys
from datetime import UTC, datetime, timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from oma.orders.models import SyncRun
from oma.orders.services import SweepProgress, orders_sweep
from oma.stores.models import Store
from oma.stores.services import StoreNotFound, store_get_by_domain

# Exit codes: 0 every sweep succeeded; 1 a sweep failed or the arguments are wrong; 75 (EX_TEMPFAIL) nothing failed
# but a store was skipped because another sweep of it was running: try again later.
EXIT_FAILED = 1
EXIT_SKIPPED = 75

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m|min|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str, *, now: datetime | None = None) -> datetime:
    """--since: an ISO 8601 date or time (Z or an offset; none means UTC), or how long ago (90m, 6h, 2d, 1w)."""
    now = now or timezone.now()
    text = value.strip()
    relative = _RELATIVE.match(text)
    if relative:
        amount, unit = float(relative.group(1)), _UNITS[relative.group(2).lower()]
        return now - timedelta(**{unit: amount})
    try:
        parsed = datetime.fromisoformat(text)  # Python 3.11 reads dates, Z and offsets
    except ValueError:
        raise CommandError(
            f"--since {value!r}: give an ISO 8601 date or time (2026-11-01, 2026-11-01T08:00:00Z) "
            "or how long ago (90m, 6h, 2d, 1w)"
        ) from None
    parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    if parsed > now:
        raise CommandError(f"--since {value!r} is in the future ({parsed.isoformat()})")
    return parsed


class Command(BaseCommand):
    help = (
        "Sweep Genstore orders into the mirror now, in the foreground (incremental unless --full). "
        f"Exit status: 0 all succeeded, {EXIT_FAILED} a sweep failed (safe to run again), "
        f"{EXIT_SKIPPED} a store was skipped because another sweep of it is running."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--store", help="store domain, e.g. shop1.genmystore.com (default: every active store)")
        parser.add_argument("--full", action="store_true", help="walk every order, not only recent changes")
        parser.add_argument(
            "--since", help="incremental from this time: ISO 8601 (2026-11-01, 2026-11-01T08:00Z) or ago (6h, 2d)"
        )

    def handle(self, *args: object, **options: object) -> None:
        if options["full"] and options["since"]:
            raise CommandError("--full and --since exclude each other")
        since = parse_since(str(options["since"])) if options["since"] else None
        stores = self._stores(str(options["store"]) if options["store"] else None)
        kind = SyncRun.Kind.FULL if options["full"] else SyncRun.Kind.INCREMENTAL
        states = []
        for store in stores:
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
        try:
            store = store_get_by_domain(domain=domain)
        except StoreNotFound as exc:
            raise CommandError(str(exc)) from None
        if not store.is_active:
            raise CommandError(f"store {store.domain} is inactive (uninstalled or deactivated); reconnect it first")
        return [store]

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
        if not sys.stderr.isatty():
            return orders_sweep(store=store, kind=kind, since=since)
        with Progress(
            TextColumn(f"[bold]{store.domain}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("orders, {task.fields[pages]} pages"),
            TimeElapsedColumn(),
            transient=True,
            console=Console(stderr=True),
        ) as bar:
            task = bar.add_task("sweep", total=None, pages=0)

            def show(progress: SweepProgress) -> None:
                bar.update(task, completed=progress.seen, total=progress.total, pages=progress.pages)

            return orders_sweep(store=store, kind=kind, since=since, progress=show, count_first=True)
