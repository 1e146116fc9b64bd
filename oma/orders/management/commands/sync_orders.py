from __future__ import annotations

import sys
from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError, CommandParser
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from oma.orders.models import SyncRun
from oma.orders.services import SweepProgress, orders_sweep
from oma.stores.models import Store


def _parse_since(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise CommandError(f"--since must be an ISO 8601 time, e.g. 2026-11-01T00:00:00Z (got {value!r})") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = "Sweep Genstore orders into the mirror now, in the foreground (incremental unless --full)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--store", help="store domain, e.g. shop1.genmystore.com (default: every active store)")
        parser.add_argument("--full", action="store_true", help="walk every order, not only recent changes")
        parser.add_argument("--since", help="incremental from this ISO 8601 time (updatedAtMin)")

    def handle(self, *args: object, **options: object) -> None:
        if options["full"] and options["since"]:
            raise CommandError("--full and --since exclude each other")
        since = _parse_since(str(options["since"])) if options["since"] else None
        stores = Store.objects.filter(is_active=True)
        if options["store"]:
            stores = Store.objects.filter(domain=str(options["store"]).lower())
            if not stores.exists():
                raise CommandError(f"no store {options['store']!r}; connect it with connect_store first")
        kind = SyncRun.Kind.FULL if options["full"] else SyncRun.Kind.INCREMENTAL
        failed = False
        for store in stores:
            run = self._sweep(store, kind, since)
            duration = run.duration_seconds or 0.0
            line = (
                f"{store.domain}: {run.kind} sweep {run.state}: pages={run.pages} seen={run.seen} "
                f"created={run.created} updated={run.updated} unchanged={run.unchanged} errors={run.errors} "
                f"duration={duration:.1f}s"
            )
            if run.error_message:
                line += f" error={run.error_message!r}"
            self.stdout.write(line)
            failed |= run.state == SyncRun.State.FAILED
        if failed:
            raise CommandError("at least one sweep failed (see above); it is safe to run again")

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
