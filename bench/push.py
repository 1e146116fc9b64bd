"""Fulfillment pushes against Genstore buckets of 40 at 2/s, 200 at 20/s and 400 at 40/s, with NO bucket configured:
each store's bucket is learned from Genstore's answers (oma.genstore.bucket), from the contract's 40 at 2/s.

    python -m bench.push [--seconds 40] [--buckets 40/2,200/20,400/40] [--via drain|threads] [--workers 16]

The Genstore sandbox runs in its own process with each shop's real bucket (429 when empty). OMA pushes the way
production does (`--via drain`, the default: the store's push drain, `store_pushes_drain`, run again while work
remains, as the `fulfillment.push_due` task does), or with `--workers` threads (`--via threads`: the
push_fulfillments command's way); every Genstore client draws its tokens from the shared Redis bucket (the one
every Celery worker uses; a per-process bucket when Redis is unreachable). Each push is what production does for a
shipment the carrier already reports in transit: read the order, create the fulfillment, set its shipmentStatus.
Each bucket gets as many pushes as it can take in about `--seconds` (3 requests a push), starts full on both sides
and with nothing learned (our Redis key deleted).

The theoretical minimum, after the first 10 s (the learning's grace): at t0 + 10 s the bench reads how many
requests Genstore had accepted (A10) and how many tokens its bucket held (B10, from the `used/capacity` header of
one request of its own). From then on Genstore accepts at most B10 + refill x t requests in t seconds, so the
requests it accepted after t0 + 10 s, N = A_end - A10, need at least

    minimum = max(0, N - B10) / refill        and the figure is   ratio = (elapsed - 10 s) / minimum

Targets: ratio <= 1.15, 429s under 1% of all requests, no duplicate (and no missing) fulfillment: every shipment's
order in Genstore holds exactly one live fulfillment with its tracking number, status in_transit.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import requests

from bench.common import figure, setup_django
from oma.sandbox.control import SandboxControl, SandboxProcess  # no Django in it

if TYPE_CHECKING:
    from oma.stores.models import Store

GRACE_SECONDS = 10.0
REQUESTS_PER_PUSH = 3


def redis_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class Run:
    capacity: int
    refill: float
    pushes: int
    elapsed: float = 0.0
    minimum: float = 0.0
    requests: int = 0
    rate_limited: int = 0
    duplicates: int = 0
    missing: int = 0
    learned: tuple[int, float] | None = None
    learned_after: float | None = None

    @property
    def label(self) -> str:
        return f"{self.capacity}/{self.refill:g}"


def parse_buckets(text: str) -> list[tuple[int, float]]:
    buckets = []
    for part in text.split(","):
        capacity, refill = part.split("/")
        buckets.append((int(capacity), float(refill)))
    return buckets


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=40.0, help="about how long each bucket's run takes")
    parser.add_argument("--buckets", type=parse_buckets, default=parse_buckets("40/2,200/20,400/40"))
    parser.add_argument("--via", choices=("drain", "threads"), default="drain")
    parser.add_argument("--workers", type=int, default=16, help="threads, with --via threads")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13", help="the shared bucket's Redis ('' for none)")
    args = parser.parse_args()

    if args.redis and redis_reachable():
        os.environ["REDIS_URL"] = args.redis
    os.environ.setdefault("CELERY_BROKER_URL", "memory://")  # nothing is queued: the pushes run right here
    vendor = setup_django("oma_bench_push")

    # why: Django is configured only now (setup_django)
    from django.conf import settings
    from django.db import connection

    handles = [f"b{capacity}x{refill:g}".replace(".", "_") for capacity, refill in args.buckets]
    runs = []
    with SandboxProcess(orders=1, seed=1, shops=tuple(handles), rate_limit="off") as sandbox:
        for handle, (capacity, refill) in zip(handles, args.buckets, strict=True):
            pushes = max(10, round((capacity + refill * args.seconds) / REQUESTS_PER_PUSH))
            run = Run(capacity=capacity, refill=refill, pushes=pushes)
            bucket_run(sandbox, handle, run, via=args.via, workers=args.workers)
            runs.append(run)
    connection.close()

    how = "the store's push drain" if args.via == "drain" else f"{args.workers} threads"
    print(f"database: {vendor}; shared bucket: {'Redis' if settings.REDIS_URL else 'per process'}; pushed by {how}; "
          "no bucket configured (learned)")
    failed = False
    for run in runs:
        ratio = (run.elapsed - GRACE_SECONDS) / run.minimum if run.minimum else 0.0
        share = 100.0 * run.rate_limited / max(1, run.requests)
        learned = f"{run.learned[0]}/{run.learned[1]:g}" if run.learned else "nothing"
        after = f" after {run.learned_after:.1f} s" if run.learned_after is not None else ""
        print(f"bucket {run.label}: {run.pushes} pushes, {run.requests} requests ({run.rate_limited} answered 429), "
              f"learned {learned}{after}")
        figure(f"{run.label} elapsed", run.elapsed, "s")
        figure(f"{run.label} theoretical minimum after {GRACE_SECONDS:g} s", run.minimum, "s",
               "(accepted after 10 s - bucket left at 10 s) / refill")
        figure(f"{run.label} (elapsed - 10 s) / minimum", ratio, "x", "<= 1.15")
        figure(f"{run.label} 429 share", share, "%", "< 1")
        figure(f"{run.label} duplicate fulfillments", float(run.duplicates), "", "0")
        failed |= bool(run.duplicates or run.missing)
    if failed:
        sys.exit("the pushes did not all land exactly once")


def bucket_run(sandbox: SandboxProcess, handle: str, run: Run, *, via: str, workers: int) -> None:
    # why: Django is set up by main() first (a fresh benchmark database), these need it
    from oma.core.redis import get_redis
    from oma.fulfillment.management.commands.push_fulfillments import pushes_run
    from oma.genstore.client import BUCKET_KEY_PREFIX
    from oma.orders.models import SyncRun
    from oma.orders.services import orders_sweep
    from oma.stores.models import Store
    from oma.stores.services import genstore_limiter, genstore_limiter_key

    control = sandbox.control
    control.add_orders(handle, run.pushes + run.pushes // 10)  # open orders; a few ship nothing: 10% spare
    store = Store.objects.create(  # no rate_limit_capacity / rate_limit_refill_per_second: the bucket is learned
        domain=f"{handle}.genmystore.com", api_base_url=sandbox.base_url_for(handle),
        access_token=sandbox.access_token, client_secret=sandbox.client_secret,
    )
    sweep = orders_sweep(store=store, kind=SyncRun.Kind.FULL)
    assert sweep.state == SyncRun.State.SUCCEEDED, sweep.error_message
    ids = shipments_in_transit(store, run.pushes)

    # Both buckets start full and nothing is learned: Genstore's replaced (a full one), ours forgotten.
    key = genstore_limiter_key(store)
    redis_client = get_redis()
    if redis_client is not None:
        redis_client.delete(BUCKET_KEY_PREFIX + key)
    control.set_rate_limit(run.capacity, run.refill, handle=handle)
    control.reset_stats(handle)

    limiter = genstore_limiter()
    grace: dict[str, int] = {}
    done = threading.Event()

    def watch(started: float) -> None:
        while not done.wait(0.1):
            learned = limiter.learned(key)
            if run.learned_after is None and learned == (run.capacity, run.refill):
                run.learned_after = time.monotonic() - started
            if not grace and time.monotonic() - started >= GRACE_SECONDS:
                grace.update(bucket_at(sandbox.base_url_for(handle), sandbox.access_token, control, handle))

    started = time.monotonic()
    watcher = threading.Thread(target=watch, args=(started,), daemon=True)
    watcher.start()
    summary = drain(store) if via == "drain" else pushes_run(shipment_ids=ids, workers=workers).line()
    run.elapsed = time.monotonic() - started
    done.set()
    watcher.join()
    run.learned = limiter.learned(key)

    stats = control.stats(handle)
    run.requests, run.rate_limited = stats["requests"], stats["rate_limited"]
    if grace:
        accepted_after = (run.requests - run.rate_limited) - grace["accepted"]
        run.minimum = max(0, accepted_after - grace["tokens"]) / run.refill
    run.duplicates, run.missing = fulfillments_off(control, handle, ids)
    print(f"bucket {run.label}: {summary}", flush=True)


def drain(store: Store) -> str:
    """What `fulfillment.push_due` does, run again while it says work remains (no broker in between)."""
    # why: after django.setup()
    from oma.fulfillment.services.push import pushes_untried, store_pushes_drain
    from oma.stores.services import genstore_client_for

    drains, results, tried = 0, Counter[str](), set[int]()
    with genstore_client_for(store) as client:
        while True:
            outcome = store_pushes_drain(store=store, client=client)
            drains += 1
            results.update(outcome.results)
            tried |= outcome.tried
            if not outcome.more and not pushes_untried(store=store, tried=outcome.tried):
                return f"{drains} drains, {len(tried)} pushes: {dict(results)}"


def bucket_at(base_url: str, token: str, control: SandboxControl, handle: str) -> dict[str, int]:
    """What Genstore's bucket held at this moment (one request of our own: its answer's header), and how many
    requests it had accepted by then (that one included)."""
    answer = requests.get(f"{base_url}/api/202412/shops/info", headers={"X-Genstore-Access-Token": token}, timeout=10)
    used, capacity = (int(part) for part in answer.headers["X-Genstore-Shop-Api-Rate-Limit"].split("/"))
    stats = control.stats(handle)
    return {"tokens": capacity - used, "accepted": stats["requests"] - stats["rate_limited"]}


def shipments_in_transit(store: Store, count: int) -> list[int]:
    """One shipment per open order (the whole order in it), already in transit at the carrier."""
    # why: after django.setup()
    from oma.orders.models import LineItem, Order
    from tracking.models import Shipment, ShipmentLine
    from tracking.sandbox.numbers import GENERATORS

    carriers = ["ups", "fedex", "usps", "dhl"]
    orders = [
        order
        for order in Order.objects.filter(store=store, cancelled_at__isnull=True).prefetch_related("line_items")
        if order.financial_status not in ("refunded", "voided")
        and any(line.requires_shipping is not False and line.fulfillable_quantity for line in order.line_items.all())
    ][:count]
    offset = store.pk * 100_000  # tracking numbers unique across the runs
    shipments = Shipment.objects.bulk_create(
        Shipment(
            store=store, order=order, tracking_number=GENERATORS[carriers[i % 4]](offset + i + 1),
            carrier=carriers[i % 4], status="in_transit", source=Shipment.Source.CSV,
        )
        for i, order in enumerate(orders)
    )
    lines = LineItem.objects.filter(order__in=orders).exclude(requires_shipping=False).values_list(
        "pk", "order_id", "fulfillable_quantity"
    )
    shipment_of = {shipment.order_id: shipment.pk for shipment in shipments}
    ShipmentLine.objects.bulk_create(
        ShipmentLine(shipment_id=shipment_of[order_id], line_item_id=pk, quantity=quantity)
        for pk, order_id, quantity in lines
        if quantity
    )
    return [shipment.pk for shipment in shipments]


def fulfillments_off(control: SandboxControl, handle: str, ids: list[int]) -> tuple[int, int]:
    """(shipments with more than one live fulfillment or not in_transit, shipments with none), from Genstore."""
    # why: after django.setup()
    from tracking.models import Shipment

    duplicates = missing = 0
    for shipment in Shipment.objects.filter(pk__in=ids).select_related("order"):
        live = [
            f for f in control.order(handle, shipment.order.order_id)["fulfillments"]
            if f["trackingNumber"] == shipment.tracking_number and f["status"] != "cancelled"
        ]
        missing += not live
        duplicates += len(live) > 1 or any(f["shipmentStatus"] != "in_transit" for f in live)
    return duplicates, missing


if __name__ == "__main__":
    main()
