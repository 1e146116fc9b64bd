"""push_fulfillments [--store D]: push every fulfillment still owed to Genstore now, in the foreground.

`pushes_run` is the foreground runner (threads sharing the store's rate limit); bench/push.py measures it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from django.core.management.base import CommandError, CommandParser
from django.db import close_old_connections, connections

from oma.core.cli import PipeSafeCommand
from oma.fulfillment.services.push import PushOutcome, PushResult, pushes_pending, shipment_push
from oma.fulfillment.services.unified_status import orders_unified_status_refresh
from oma.genstore.client import GenstoreClient
from oma.stores.cli import genstore_reachable, store_for_cli
from oma.stores.models import Store
from oma.stores.services import genstore_client_for
from tracking.models import Shipment

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class PushRunSummary:
    shipments: int = 0
    by_result: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    rate_limited: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        counts = ", ".join(f"{self.by_result.get(str(r), 0)} {r}" for r in PushResult if self.by_result.get(str(r)))
        return (
            f"{self.shipments} shipments in {self.seconds:.1f}s: {counts or 'nothing to push'}; "
            f"{self.requests} Genstore requests, {self.rate_limited} rate-limited (429)"
        )


def pushes_run(
    *,
    store: Store | None = None,
    shipment_ids: Sequence[int] | None = None,
    workers: int = 1,
    force: bool = False,
    progress: Callable[[int, PushOutcome], None] | None = None,
) -> PushRunSummary:
    """Push, in the foreground, every push owed (or the given shipments), with `workers` threads sharing the
    store's rate limit. Each thread keeps one Genstore client per store, so connections are reused."""
    ids = list(shipment_ids) if shipment_ids is not None else pushes_pending(
        store=store, limit=10**9, include_queued=True
    )
    summary = PushRunSummary(shipments=len(ids))
    refresh_later: set[int] = set()  # one unified-status pass at the end instead of one per push
    lock = threading.Lock()
    local = threading.local()
    clients: list[GenstoreClient] = []
    store_by_id = {s.pk: s for s in Store.objects.filter(shipments__pk__in=ids).distinct()} if ids else {}
    store_of = dict(Shipment.objects.filter(pk__in=ids).values_list("pk", "store_id")) if ids else {}

    def client_for(store_id: int) -> GenstoreClient:
        cache = getattr(local, "clients", None)
        if cache is None:
            cache = local.clients = {}
        if store_id not in cache:
            cache[store_id] = genstore_client_for(store_by_id[store_id])
            with lock:
                clients.append(cache[store_id])
        return cache[store_id]

    def one(shipment_id: int) -> None:
        close_old_connections()
        try:
            outcome = shipment_push(
                shipment_id=shipment_id, client=client_for(store_of[shipment_id]), force=force,
                status_refresh_later=refresh_later,
            )
        except Exception as exc:
            logger.exception("push of shipment %s failed", shipment_id)
            outcome = PushOutcome(PushResult.RETRY, detail=f"{type(exc).__name__}: {exc}")
        with lock:
            summary.by_result[str(outcome.result)] = summary.by_result.get(str(outcome.result), 0) + 1
            if outcome.result in (PushResult.FAILED, PushResult.RETRY):
                number = outcome.push.tracking_number or outcome.push.source_tracking_number if outcome.push else ""
                summary.problems.append(f"shipment {shipment_id} {number}: {outcome.result}: {outcome.detail}")
            if progress:
                progress(shipment_id, outcome)

    started = time.monotonic()
    _each_in_threads(ids, one, workers=workers)
    orders_unified_status_refresh(order_ids=sorted(refresh_later))
    summary.seconds = time.monotonic() - started
    for client in clients:
        summary.requests += client.stats.requests
        summary.rate_limited += client.stats.rate_limited
        client.close()
    return summary


def _each_in_threads(ids: Sequence[int], one: Callable[[int], None], *, workers: int) -> None:
    """Call `one` for every id, in order, shared by `workers` threads (each closes its database connection)."""
    if workers <= 1 or len(ids) <= 1:
        for shipment_id in ids:
            one(shipment_id)
        return
    queue = list(ids)
    next_index = 0
    lock = threading.Lock()

    def take() -> int | None:
        nonlocal next_index
        with lock:
            if next_index >= len(queue):
                return None
            next_index += 1
            return queue[next_index - 1]

    def drain() -> None:
        try:
            while (shipment_id := take()) is not None:
                one(shipment_id)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(drain) for _ in range(workers)]:
            future.result()


class Command(PipeSafeCommand):
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
        workers = int(str(options["workers"]))
        if workers < 1:
            raise CommandError("--workers must be at least 1")
        store = None
        if options["store"]:
            store = store_for_cli(str(options["store"]))
            if not store.is_active:
                raise CommandError(f"{store.domain} is inactive: nothing is pushed for it")
            genstore_reachable(store)  # one line now rather than every push retrying against a dead address
        summary = pushes_run(store=store, workers=workers)
        shown = summary.problems if options["verbose_failures"] else summary.problems[:20]
        for problem in shown:
            self.stderr.write(problem)
        if len(summary.problems) > len(shown):
            self.stderr.write(f"... and {len(summary.problems) - len(shown)} more (--verbose-failures)")
        scope = store.domain if store else "all active stores"
        self.stdout.write(f"push_fulfillments ({scope}): {summary.line()}")
