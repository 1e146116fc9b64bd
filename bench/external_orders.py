"""External orders into Genstore: creates through the real drain at the bucket's pace, and the intake's floor.

    python -m bench.external_orders [--orders 1000] [--bucket 400/40] [--drains 4] [--intake-orders 10000]

Creates: the Genstore sandbox runs in its own process, its shop's bucket set to `--bucket` (`set_rate_limit`: 429
when empty), and the store pins the same bucket. `--orders` external orders are received first (not timed), then
`--drains` drains run at once (default OMA_EXTERNAL_ORDER_DRAINS), as the pushes worker's processes run the Celery
task `channels.create_external_orders` for each slot: one forked process per slot, each calling
`external_orders_drain` for its share until nothing of it is due (a drain that stops for a 429 waits Genstore's
Retry-After and goes on, as the re-queued task would), on its own database connection, all sharing the store's
Redis bucket. Both buckets start full: Genstore's is replaced just before the run, and OMA's shared Redis bucket key
is deleted.

The theoretical minimum: Genstore accepts at most capacity + refill x t requests in t seconds, so the N requests it
accepted during the run (one POST /orders per order when nothing fails) need at least

    minimum = max(0, N - capacity) / refill        (1,000 creates, 400 at 40/s: 15 s)   ratio = elapsed / minimum

Targets: ratio <= 1.15, no 429 needed, no duplicate: the sandbox's orders_by_source lists exactly one order per
(sourceName, sourceIdentifier), and one for every external order.

Intake (creates excluded): a generic order CSV of `--intake-orders` orders (one or two lines each) imported by
`external_orders_import`, the service behind `import_orders`, with nothing consuming the queue; then the same file
again (every order unchanged). Figures: orders a second for both, and the queries one intake batch (500 orders,
oma.channels.order_intake.BATCH_SIZE) costs, new and unchanged: a constant, whatever the batch's size.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from bench.common import SKUS, figure, generic_order_file, setup_django
from oma.sandbox.control import SandboxControl, SandboxProcess  # no Django in it

if TYPE_CHECKING:
    from oma.channels.connectors.base import ExternalOrderInput
    from oma.channels.models import Channel

HANDLE = "eo"
SOURCE_NAME = "amazon"


def redis_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


def parse_bucket(text: str) -> tuple[int, float]:
    capacity, refill = text.split("/")
    return int(capacity), float(refill)


@dataclass
class CreateRun:
    orders: int
    capacity: int
    refill: float
    elapsed: float = 0.0
    accepted: int = 0  # requests Genstore accepted during the run
    rate_limited: int = 0
    drains_at_once: int = 1
    drains: int = 0  # drain calls, all slots together
    cpu_seconds: float = 0.0  # the drain processes' CPU over the run: the drains' own work
    per_drain: list[DrainRun] | None = None
    outcomes: Counter[str] | None = None
    duplicates: int = 0
    missing: int = 0

    @property
    def minimum(self) -> float:
        return max(0, self.accepted - self.capacity) / self.refill

    @property
    def ratio(self) -> float:
        return self.elapsed / self.minimum if self.minimum else 0.0


@dataclass
class DrainRun:
    """What one slot's process did (sent back to the bench's process)."""

    slot: int
    calls: int = 0
    elapsed: float = 0.0
    cpu_seconds: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)


@dataclass
class IntakeRun:
    orders: int
    rows: int
    new_seconds: float = 0.0
    again_seconds: float = 0.0
    queries_new: dict[int, int] | None = None  # batch size -> queries
    queries_unchanged: dict[int, int] | None = None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=1000, help="external orders to create in Genstore")
    parser.add_argument("--bucket", type=parse_bucket, default=parse_bucket("400/40"), help="capacity/refill")
    parser.add_argument("--drains", type=int, default=0, help="drains at once (0: OMA_EXTERNAL_ORDER_DRAINS)")
    parser.add_argument("--intake-orders", type=int, default=10_000, help="orders in the intake's file")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13", help="the shared bucket's Redis ('' for none)")
    args = parser.parse_args()

    if args.redis and redis_reachable():
        os.environ["REDIS_URL"] = args.redis
    os.environ.setdefault("CELERY_BROKER_URL", "memory://")  # nothing consumes the queue: the drain runs right here
    vendor = setup_django("oma_bench_external_orders")

    # why: Django is configured only now (setup_django)
    from django.conf import settings
    from django.db import connection

    capacity, refill = args.bucket
    # why: Django is configured only now (setup_django)
    from oma.channels.order_intake import external_order_drains

    create = CreateRun(orders=args.orders, capacity=capacity, refill=refill,
                       drains_at_once=args.drains or external_order_drains())
    with SandboxProcess(orders=1, seed=1, shops=(HANDLE,), rate_limit="off") as sandbox:
        create_run(sandbox, create)
    intake = intake_run(args.intake_orders)
    connection.close()

    print(f"database: {vendor}; shared bucket: {'Redis' if settings.REDIS_URL else 'per process'}")
    print(f"creates: {create.orders} orders, {create.drains_at_once} drains at once, {create.drains} drain calls, "
          f"outcomes {dict(create.outcomes or {})}, {create.accepted} requests accepted, {create.rate_limited} "
          f"answered 429, {create.missing} missing")
    for drain in create.per_drain or []:
        done = drain.outcomes.total()
        print(f"  drain {drain.slot}: {done} rows in {drain.elapsed:.1f} s ({done / drain.elapsed:.1f}/s), "
              f"{drain.calls} calls, CPU {1000 * drain.cpu_seconds / max(1, done):.1f} ms a row, "
              f"{dict(drain.outcomes)}")
    label = f"{capacity}/{refill:g}"
    figure(f"{create.orders} creates: drains at once", float(create.drains_at_once), "",
           "OMA_EXTERNAL_ORDER_DRAINS")
    figure(f"{create.orders} creates, bucket {label}: elapsed", create.elapsed, "s")
    figure(f"{create.orders} creates, bucket {label}: theoretical minimum", create.minimum, "s",
           "(requests accepted - capacity) / refill")
    figure(f"{create.orders} creates, bucket {label}: elapsed / minimum", create.ratio, "x", "<= 1.15")
    figure(f"{create.orders} creates: creates a second", create.orders / create.elapsed, "orders/s")
    # A drain creates one order at a time: its round trips and its own CPU bound its pace; several share the bucket.
    figure(f"{create.orders} creates: drain CPU per create (all drains)", 1000 * create.cpu_seconds / create.orders,
           "ms")
    figure(f"{create.orders} creates: 429s", float(create.rate_limited), "", "0")
    figure(f"{create.orders} creates: duplicate Genstore orders", float(create.duplicates), "", "0")

    print(f"intake: {intake.orders} orders in {intake.rows} rows (generic CSV), creates excluded")
    figure(f"intake {intake.orders} orders from a file: elapsed", intake.new_seconds, "s")
    figure("intake: new orders a second", intake.orders / intake.new_seconds, "orders/s")
    figure("intake: the same file again, orders a second", intake.orders / intake.again_seconds, "orders/s")
    for size, queries in sorted((intake.queries_new or {}).items()):
        figure(f"intake: queries per batch of {size} new orders", float(queries), "", "constant")
    for size, queries in sorted((intake.queries_unchanged or {}).items()):
        figure(f"intake: queries per batch of {size} unchanged orders", float(queries), "", "constant")
    if create.duplicates or create.missing:
        sys.exit("the creates did not all land exactly once")


# --- creates ------------------------------------------------------------------------------------------------------


def external_orders(count: int, *, prefix: str) -> list[ExternalOrderInput]:
    # why: after django.setup()
    from oma.channels.connectors.base import AddressInput, ExternalOrderInput, ExternalOrderLineInput

    ordered_at = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    return [
        ExternalOrderInput(
            external_order_id=f"{prefix}-{i:07d}", created_at=ordered_at, currency="USD",
            lines=tuple(
                ExternalOrderLineInput(sku=SKUS[(i + k) % 4], title=f"Item {SKUS[(i + k) % 4]}", quantity=1 + k,
                                       price=Decimal("9.50") + k, external_line_id=f"{i}-{k}")
                for k in range(1 + i % 2)
            ),
            email=f"buyer{i}@example.com", name="Ana Souza",
            shipping_address=AddressInput(name="Ana Souza", address1="1200 Pine St", city="Seattle", zip="98101",
                                          country_code="US"),
            shipping_price=Decimal("4.99"),
        )
        for i in range(count)
    ]


def create_run(sandbox: SandboxProcess, run: CreateRun) -> None:
    # why: after django.setup()
    from django.db import connection

    from oma.channels.order_intake import external_orders_receive
    from oma.channels.services import channel_create
    from oma.core.redis import get_redis
    from oma.genstore.client import BUCKET_KEY_PREFIX
    from oma.stores.models import Store
    from oma.stores.services import genstore_client_for

    store = Store.objects.create(
        domain=sandbox.domain_for(HANDLE), api_base_url=sandbox.base_url_for(HANDLE),
        access_token=sandbox.access_token, client_secret=sandbox.client_secret,
        rate_limit_capacity=run.capacity, rate_limit_refill_per_second=run.refill,
    )
    channel = channel_create(store=store, kind="csv", name="Amazon", source_names=[SOURCE_NAME])
    receipt = external_orders_receive(channel=channel, orders=external_orders(run.orders, prefix="114"))
    assert receipt.new == run.orders, receipt.describe()

    # Both buckets full at the start: Genstore's replaced, OMA's shared one forgotten.
    with genstore_client_for(store) as client:
        key = client.limiter_key
    redis_client = get_redis()
    if redis_client is not None:
        redis_client.delete(BUCKET_KEY_PREFIX + key)
    control = sandbox.control
    control.set_rate_limit(run.capacity, run.refill, handle=HANDLE)
    control.reset_stats(HANDLE)

    # Forked drains: each child opens its own database connection (the parent's closed first) and Redis client.
    connection.close()
    slots = run.drains_at_once
    started = time.monotonic()
    with ProcessPoolExecutor(max_workers=slots, mp_context=multiprocessing.get_context("fork")) as pool:
        run.per_drain = list(pool.map(drain_slot, [store.pk] * slots, range(slots), [slots] * slots))
    run.elapsed = time.monotonic() - started
    run.drains = sum(drain.calls for drain in run.per_drain)
    run.cpu_seconds = sum(drain.cpu_seconds for drain in run.per_drain)
    run.outcomes = sum((drain.outcomes for drain in run.per_drain), Counter())

    stats = control.stats(HANDLE)
    run.rate_limited = stats["rate_limited"]
    run.accepted = stats["requests"] - stats["rate_limited"]
    run.duplicates, run.missing = duplicates_and_missing(control, [f"114-{i:07d}" for i in range(run.orders)])


def drain_slot(store_id: int, slot: int, slots: int) -> DrainRun:
    """One slot's drain in its own process, called again as the re-queued task would be, until its share is done."""
    # why: after django.setup() (inherited by the fork)
    from django.db import connection

    from oma.channels.order_create import external_orders_drain

    run = DrainRun(slot=slot)
    started, cpu_started = time.monotonic(), time.process_time()
    try:
        while True:
            result = external_orders_drain(store_id=store_id, slot=slot, slots=slots)
            run.calls += 1
            run.outcomes.update(result.outcomes)
            if not result.more_due:
                break
            if result.retry_after:  # the task would be queued again with this countdown
                time.sleep(result.retry_after)
            elif not result.progressed:
                time.sleep(0.05)  # its rows held by another worker: the task waits too (not 10 s here)
    finally:
        connection.close()
    run.elapsed, run.cpu_seconds = time.monotonic() - started, time.process_time() - cpu_started
    return run


def duplicates_and_missing(control: SandboxControl, identifiers: list[str]) -> tuple[int, int]:
    """(Genstore orders beyond the first per external order, external orders with none), from orders_by_source."""
    per_identifier = Counter(order["sourceIdentifier"] for order in control.orders_by_source(HANDLE,
                                                                                            source_name=SOURCE_NAME))
    duplicates = sum(n - 1 for n in per_identifier.values() if n > 1)
    return duplicates, sum(1 for identifier in identifiers if identifier not in per_identifier)


# --- intake -------------------------------------------------------------------------------------------------------


def intake_run(count: int) -> IntakeRun:
    # why: after django.setup()
    from oma.channels.order_import import external_orders_import
    from oma.channels.services import channel_create
    from oma.stores.models import Store

    store = Store.objects.create(domain="intake.genmystore.com", access_token="token", client_secret="secret")
    channel = channel_create(store=store, kind="csv", name="Amazon", source_names=[SOURCE_NAME])
    data, rows = generic_order_file(count, prefix="115")
    run = IntakeRun(orders=count, rows=rows)

    for attempt in ("new", "again"):
        started = time.monotonic()
        report = external_orders_import(store=store, channel=channel, data=data, file_name="orders.csv")
        seconds = time.monotonic() - started
        expected = (count, 0) if attempt == "new" else (0, count)
        assert (report.new, report.unchanged) == expected and not report.rejected, report.summary()
        if attempt == "new":
            run.new_seconds = seconds
        else:
            run.again_seconds = seconds
    run.queries_new, run.queries_unchanged = batch_queries(channel)
    return run


def batch_queries(channel: Channel) -> tuple[dict[int, int], dict[int, int]]:
    """Queries of one intake call of 100 and of 500 orders, new and then unchanged."""
    # why: after django.setup()
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from oma.channels.order_intake import external_orders_receive

    new: dict[int, int] = {}
    unchanged: dict[int, int] = {}
    for size in (100, 500):
        orders = external_orders(size, prefix=f"116-{size}")
        for counts in (new, unchanged):
            with CaptureQueriesContext(connection) as queries:
                external_orders_receive(channel=channel, orders=orders)
            counts[size] = len(queries)
    return new, unchanged


if __name__ == "__main__":
    main()
