"""Imports at database speed: a tracking CSV against mirrored orders, and an order file of external orders, each
beside the floor of reading the same file with `csv` and COPYing the same rows into a scratch table.

    python -m bench.imports [--rows 100000] [--orders 10000] [--runs 1] [--profile DIR]

Tracking: `--rows` mirrored orders (seeded with the bulk writer, each with its ~2 KB raw payload and one or two
lines) and a tracking CSV of one row per order (by orderId, a tenth by the order's name; a third whole orders, the
rest an item and a quantity; UPS, FedEx, USPS and DHL numbers with valid check digits, the carrier column blank or
given), imported by `tracking_csv_import` (the service behind the admin upload, `import_tracking` and the queued
import's worker) with every after-commit hook connected: unified status, push intents and the store's push drain
(on an in-memory broker nothing consumes), customer e-mail detection, outbound events. Every row must become a
shipment. `--rows 0` skips it.

Orders: a generic order CSV of `--orders` external orders (one or two lines each) imported by
`external_orders_import` (the service behind `import_orders`); creates at Genstore excluded (nothing consumes the
queue: bench/external_orders.py measures those). `--orders 0` skips it.

Each import runs in a process of its own (a fresh interpreter: Django set up, the file read, then the import), so
the peak RSS printed is the import's own; its wall time is the figure, with its parts: reading the file, the
after-commit hooks, the time spent waiting on the database, and the CPU of the process and of its PostgreSQL
backend. The floor, measured in the same run (median of three): read the same file with `csv` and COPY the same
rows (every column as text) into a plain table without indexes, committed. The ratio is given in wall time (the
target) and in CPU seconds (process + backend on both sides), which other work on a shared machine disturbs less.

Queries per batch: the import reports progress after every batch; the queries between two reports are one batch's
(hooks included), printed as min and max over the run; and an import made in one batch, of two sizes, must cost the
same number of queries. Targets: import <= 100x the floor, peak RSS < 300 MB, queries per batch constant.

`--profile DIR` writes each import's cProfile stats to DIR (read them with `python -m pstats`).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import GENERIC_HEADER, ROOT, SKUS, figure, generic_order_file, process_cpu_seconds, setup_django

TRACKING_HEADER = ("order", "tracking_number", "carrier", "sku", "quantity")
CARRIERS = ("ups", "fedex", "usps", "dhl")
STORE_DOMAIN = "imports.genmystore.com"
SOURCE_NAME = "amazon"
SEED_CHUNK = 5000


# --- files --------------------------------------------------------------------------------------------------------


def tracking_file(rows: int, *, first: int = 0) -> bytes:
    """One row per seeded order (see seed_orders): the order by orderId (a tenth by its name), a third of the rows the
    whole order, the others its first line's SKU and quantity; the carrier given on every other row."""
    from tracking.sandbox.numbers import GENERATORS  # why: bench/common puts the project on sys.path first

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(TRACKING_HEADER)
    for i in range(first, first + rows):
        order = f"#{order_id(i)}" if i % 10 == 9 else order_id(i)
        carrier = CARRIERS[i % 4]
        number = GENERATORS[carrier](i + 1)
        given = carrier.upper() if i % 2 else ""
        if i % 3 == 0:
            writer.writerow((order, number, given, "", ""))
        else:
            writer.writerow((order, number, given, SKUS[i % 4], 1 + i % 2))
    return out.getvalue().encode()


def order_id(i: int) -> str:
    return f"{5_000_000 + i}"


# --- seeding ------------------------------------------------------------------------------------------------------


def raw_order_template() -> str:
    """A Genstore order's payload as the mirror keeps it (`Order.raw`, about 2 KB of JSON), as JSON text with
    @ID@ where the order's id goes: the orders the import looks up carry their payload, as mirrored ones do."""
    address = {"firstName": "Ana", "lastName": "Souza", "address1": "1200 Pine St", "address2": "Apt 4",
               "city": "Seattle", "province": "Washington", "provinceCode": "WA", "zip": "98101",
               "country": "United States", "countryCode": "US", "phone": "+1 206 555 0100", "company": ""}
    line = {"id": "@ID@-1", "productId": "8801", "variantId": "99001", "sku": "MUG-1", "title": "Stoneware mug",
            "variantTitle": "Blue / 350 ml", "quantity": 2, "fulfillableQuantity": 2, "fulfillmentStatus": None,
            "requiresShipping": True, "price": "9.50", "grams": 420, "taxable": True, "vendor": "Clay & Co",
            "taxLines": [{"title": "State tax", "rate": 0.065, "price": "1.24"}], "discountAllocations": []}
    payload = {
        "orderId": "@ID@", "id": "gid://genstore/Order/@ID@", "name": "#@ID@", "email": "buyer@example.com",
        "createdAt": "2026-01-02T10:11:12Z", "updatedAt": "2026-01-02T10:11:12Z", "currency": "USD",
        "financialStatus": "paid", "fulfillmentStatus": None, "totalPrice": "27.23", "subtotalPrice": "23.00",
        "totalTax": "1.24", "totalDiscounts": "0.00", "sourceName": "web", "sourceIdentifier": None,
        "tags": ["wholesale", "repeat"], "note": "Leave at the door, please.", "shippingAddress": address,
        "billingAddress": address, "customer": {"id": "7001", "email": "buyer@example.com", "firstName": "Ana",
                                                "lastName": "Souza", "ordersCount": 3, "tags": []},
        "lineItems": [line, {**line, "id": "@ID@-2", "sku": "POT-2", "title": "Teapot", "quantity": 1}],
        "shippingLines": [{"title": "Standard", "code": "STD", "price": "4.99", "carrier": "ups"}],
        "fulfillments": [], "refunds": [], "discountCodes": [],
        "clientDetails": {"browserIp": "203.0.113.7", "userAgent": "Mozilla/5.0 (X11; Linux x86_64)"},
    }
    return json.dumps(payload)


def seed_orders(store_id: int, count: int, *, first: int = 0) -> None:
    """`count` mirrored orders with the bulk writer (what a sweep stores, its raw payload included): order i has one
    line (SKUS[i % 4], quantity 1 + i % 2) or, every other order, a second one."""
    # why: after django.setup()
    from django.db import transaction

    from oma.core.bulk import JsonText, rows_insert
    from oma.orders.models import LineItem, Order

    raw = raw_order_template()
    created = datetime.now(UTC) - timedelta(days=2)
    for start in range(first, first + count, SEED_CHUNK):
        stop = min(start + SEED_CHUNK, first + count)
        with transaction.atomic():
            written = rows_insert(Order, [
                {"store_id": store_id, "order_id": order_id(i), "genstore_id": f"gid://genstore/Order/{i}",
                 "name": f"#{order_id(i)}", "financial_status": "paid", "fulfillment_status": "unfulfilled",
                 "genstore_created_at": created, "genstore_updated_at": created, "currency": "USD",
                 "email": f"buyer{i}@example.com", "unified_status": "unfulfilled", "last_synced_at": created,
                 "raw": JsonText(raw.replace("@ID@", order_id(i)))}
                for i in range(start, stop)
            ], returning=("id", "order_id"))
            pks = {code: pk for pk, code in written}
            lines = []
            for i in range(start, stop):
                lines.append({"order_id": pks[order_id(i)], "line_item_id": f"{i}-1", "sku": SKUS[i % 4],
                              "title": f"Item {SKUS[i % 4]}", "quantity": 1 + i % 2, "fulfillable_quantity": 1 + i % 2,
                              "requires_shipping": True, "price": "9.50"})
                if i % 2:
                    sku = SKUS[(i + 1) % 4]
                    lines.append({"order_id": pks[order_id(i)], "line_item_id": f"{i}-2", "sku": sku,
                                  "title": f"Item {sku}", "quantity": 1, "fulfillable_quantity": 1,
                                  "requires_shipping": True, "price": "4.00"})
            rows_insert(LineItem, lines)


def analyze() -> None:
    """Fresh planner statistics after seeding, as autovacuum would gather them on a live database."""
    # why: after django.setup()
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


# --- the floor ----------------------------------------------------------------------------------------------------


@dataclass
class Floor:
    seconds: float  # wall
    cpu_seconds: float  # this process and its PostgreSQL backend


def floor_run(path: Path, columns: int, *, runs: int = 3) -> Floor:
    """Read the file with csv and COPY its rows (every column as text) into a scratch table (a plain table, no
    index), committed: the median of `runs` (a few tens of milliseconds is easily disturbed)."""
    # why: after django.setup()
    from django.db import connection, transaction

    table = f"bench_floor_{columns}"
    names = ", ".join(f"c{i} text" for i in range(columns))
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = int(cursor.fetchone()[0])
    measured = []
    for _ in range(runs):
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {table}")
            cursor.execute(f"CREATE TABLE {table} ({names})")
        started, cpu_started = time.perf_counter(), time.process_time() + process_cpu_seconds(backend)
        with transaction.atomic(), connection.cursor() as cursor, open(path, newline="") as file:
            reader = csv.reader(file)
            next(reader)
            with cursor.cursor.copy(f"COPY {table} FROM STDIN") as copy:
                for row in reader:
                    copy.write_row(row)
        measured.append(Floor(seconds=time.perf_counter() - started,
                              cpu_seconds=time.process_time() + process_cpu_seconds(backend) - cpu_started))
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {table}")
    return Floor(seconds=statistics.median(f.seconds for f in measured),
                 cpu_seconds=statistics.median(f.cpu_seconds for f in measured))


# --- the import, in a process of its own ----------------------------------------------------------------------------


@dataclass
class ChildRun:
    seconds: float = 0.0  # wall time of the import
    cpu_seconds: float = 0.0  # the import process's CPU (user + system)
    database_wait_seconds: float = 0.0  # wall time spent inside database calls (the server's work and the wire)
    hook_seconds: float = 0.0  # wall time in the after-commit hooks of shipments_changed (in their own thread
    # during an import, overlapping the next batch's: then not a part of `seconds`)
    parse_seconds: float = 0.0  # reading the file (inside `seconds`)
    database_cpu_seconds: float = 0.0  # the CPU of the import's PostgreSQL backend
    rss_before_mb: float = 0.0
    rss_peak_mb: float = 0.0
    queries: int = 0
    query_wait: dict[str, float] = field(default_factory=dict)  # database wait per statement kind (`_statement_kind`)
    batch_queries: list[int] = field(default_factory=list)  # each batch's own queries (the hooks' apart)
    hook_batch_queries: list[int] = field(default_factory=list)  # each batch's hooks' queries
    outcome: dict[str, Any] = field(default_factory=dict)


_STATEMENT = re.compile(r'^\s*(SELECT|INSERT INTO|UPDATE|DELETE FROM|WITH|COPY|SAVEPOINT|RELEASE|BEGIN|COMMIT)\b'
                        r'(?:.*?\b(?:FROM|INTO|UPDATE)\s+"?(\w+)"?)?', re.IGNORECASE | re.DOTALL)


def _statement_kind(sql: str) -> str:
    """`INSERT INTO tracking_shipment`, `SELECT orders_order`...: the verb and the first table it names."""
    match = _STATEMENT.match(sql[:2000])
    if match is None:
        return sql.split(None, 1)[0].upper() if sql.strip() else "?"
    verb, table = match.group(1).upper(), match.group(2)
    if verb.startswith(("INSERT", "UPDATE", "DELETE")):
        table = re.match(r'^\s*\w+(?:\s+\w+)?\s+"?(\w+)"?', sql).group(1)  # type: ignore[union-attr]
    return f"{verb} {table}" if table else verb


def run_child(kind: str, *, path: Path, store_id: int, channel_id: int, profile: Path | None) -> ChildRun:
    """The import in a fresh interpreter."""
    command = [sys.executable, "-m", "bench.imports", "--child", kind, "--file", str(path), "--store-id",
               str(store_id), "--channel-id", str(channel_id)]
    if profile is not None:
        command += ["--profile", str(profile)]
    result = subprocess.run(command, cwd=ROOT, env=os.environ.copy(), text=True, capture_output=True)
    if result.returncode != 0:
        raise SystemExit(f"the {kind} import failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    line = next(line for line in result.stdout.splitlines() if line.startswith("CHILD\t"))
    return ChildRun(**json.loads(line.split("\t", 1)[1]))


def child_main(kind: str, *, path: Path, store_id: int, channel_id: int, profile: Path | None) -> None:
    """The import alone: Django set up (no migrate), the file read, then the import, timed; queries counted."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oma.settings")
    import django

    django.setup()
    from django.db import connection

    from oma.channels import csv_import, order_import
    from oma.channels.models import Channel
    from oma.stores.models import Store
    from tracking import signals

    store = Store.objects.get(pk=store_id)
    channel = Channel.objects.get(pk=channel_id)
    data = path.read_bytes()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = int(cursor.fetchone()[0])  # its CPU is PostgreSQL's work for the import (same machine)
    run = ChildRun(rss_before_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    since_batch = 0
    since_hooks = 0
    lock = threading.Lock()  # the batches' queries and the hooks' (their own thread and connection) both count
    in_hooks = threading.local()  # set while this thread runs a batch's hooks

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        nonlocal since_batch, since_hooks
        hooks = getattr(in_hooks, "active", False)
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            waited = time.perf_counter() - started
            kind = _statement_kind(sql)
            with lock:
                run.queries += 1
                if hooks:
                    since_hooks += 1
                else:
                    since_batch += 1
                run.database_wait_seconds += waited
                run.query_wait[kind] = run.query_wait.get(kind, 0.0) + waited

    def progress(done: int, total: int) -> None:
        nonlocal since_batch
        run.batch_queries.append(since_batch)
        since_batch = 0

    send, parse_tracking, parse_orders = signals._send, csv_import.parse_tracking_csv, order_import.parse_order_file

    def timed(function: Any, attribute: str) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                setattr(run, attribute, getattr(run, attribute) + time.perf_counter() - started)

        return wrapper

    hook_backends: dict[int, tuple[float, float]] = {}  # backend pid -> (CPU at its first batch, CPU at its last)

    def hooks(shipment_ids: list[int]) -> None:
        """One batch's receivers of shipments_changed, after its commit: timed, their queries counted and their
        PostgreSQL backend's CPU added, whichever thread and connection run them (the import runs them in a thread
        of their own while it writes the next batch)."""
        nonlocal since_hooks
        with connection.cursor() as cursor:  # this thread's connection (not counted: the bench's own query)
            cursor.execute("SELECT pg_backend_pid()")
            pid = int(cursor.fetchone()[0])
        first = hook_backends.get(pid, (process_cpu_seconds(pid), 0.0))[0]
        started = time.perf_counter()
        in_hooks.active = True
        try:
            with connection.execute_wrapper(count):
                send(shipment_ids)
        finally:
            in_hooks.active = False
            run.hook_seconds += time.perf_counter() - started
            hook_backends[pid] = (first, process_cpu_seconds(pid))
            with lock:
                run.hook_batch_queries.append(since_hooks)
                since_hooks = 0

    signals._send = hooks
    csv_import.parse_tracking_csv = timed(parse_tracking, "parse_seconds")
    order_import.parse_order_file = timed(parse_orders, "parse_seconds")
    profiler = None
    if profile is not None:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    cpu_started, started, database_started = time.process_time(), time.perf_counter(), process_cpu_seconds(backend)
    with connection.execute_wrapper(count):
        if kind == "tracking":
            report = csv_import.tracking_csv_import(store=store, channel=channel, data=data, file_name=path.name,
                                                    progress=progress)
            run.outcome = {"summary": report.summary(), "created": report.shipments_created,
                           "problems": [(r.line, r.reason) for r in report.problems[:5]]}
        else:
            order_report = order_import.external_orders_import(store=store, channel=channel, data=data,
                                                               file_name=path.name, progress=progress)
            run.outcome = {"summary": order_report.summary(), "new": order_report.new,
                           "unchanged": order_report.unchanged, "rejected": len(order_report.rejected)}
    run.seconds, run.cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    run.database_cpu_seconds = process_cpu_seconds(backend) - database_started
    # The hooks' backends (another connection when they ran in their own thread) are PostgreSQL's work too.
    run.database_cpu_seconds += sum(last - first for pid, (first, last) in hook_backends.items() if pid != backend)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(str(profile))
    run.rss_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    connection.close()
    print("CHILD\t" + json.dumps(run.__dict__), flush=True)


# --- queries of one batch, two sizes ----------------------------------------------------------------------------------


def tracking_batch_queries(store_id: int, channel_id: int, sizes: tuple[int, ...], *, first: int) -> dict[int, int]:
    """Queries of a whole tracking import of `size` rows made in one batch (ROWS_PER_BATCH raised for it): the
    same for every size when a batch costs a constant number."""
    # why: after django.setup()
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from oma.channels import csv_import
    from oma.channels.models import Channel
    from oma.stores.models import Store
    from tracking import signals

    store, channel = Store.objects.get(pk=store_id), Channel.objects.get(pk=channel_id)
    counts: dict[int, int] = {}
    hook_queries = [0]
    send = signals._send

    def counted_hooks(shipment_ids: list[int]) -> None:  # in the hooks' own thread, on its own connection
        with CaptureQueriesContext(connection) as queries:
            send(shipment_ids)
        hook_queries[0] += len(queries)

    saved = csv_import.ROWS_PER_BATCH
    csv_import.ROWS_PER_BATCH = max(sizes)
    signals._send = counted_hooks
    try:
        for size in sizes:
            seed_orders(store_id, size, first=first)
            body = tracking_file(size, first=first)
            hook_queries[0] = 0
            with CaptureQueriesContext(connection) as queries:
                report = csv_import.tracking_csv_import(store=store, channel=channel, data=body, file_name="batch.csv")
            assert report.shipments_created == size, report.as_text()[:2000]
            counts[size] = len(queries) + hook_queries[0]
            first += size
    finally:
        csv_import.ROWS_PER_BATCH = saved
        signals._send = send
    return counts


def order_batch_queries(channel_id: int, sizes: tuple[int, ...]) -> dict[int, int]:
    """Queries of one intake batch of `size` new orders."""
    # why: after django.setup()
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from oma.channels.connectors.order_files import parse_order_file
    from oma.channels.models import Channel
    from oma.channels.order_intake import external_orders_receive

    channel = Channel.objects.get(pk=channel_id)
    counts: dict[int, int] = {}
    for size in sizes:
        data, _ = generic_order_file(size, prefix=f"B{size}")
        orders = parse_order_file(data).orders
        with CaptureQueriesContext(connection) as queries:
            external_orders_receive(channel=channel, orders=orders)
        counts[size] = len(queries)
    return counts


# --- main ---------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000, help="tracking rows (and mirrored orders)")
    parser.add_argument("--orders", type=int, default=10_000, help="external orders in the order file")
    parser.add_argument("--runs", type=int, default=1, help="times each import is measured (fresh data each time)")
    parser.add_argument("--profile", type=Path, default=None, help="write cProfile stats of each import here")
    parser.add_argument("--child", choices=["tracking", "orders"], help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--store-id", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--channel-id", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args.child, path=args.file, store_id=args.store_id, channel_id=args.channel_id,
                   profile=args.profile)
        return

    os.environ["CELERY_BROKER_URL"] = "memory://"  # hooks publish drains; nothing consumes them here
    vendor = setup_django("oma_bench_imports")
    if vendor != "postgresql":
        raise SystemExit("bench.imports measures against PostgreSQL (COPY is the floor): start it on 127.0.0.1:5432")
    # why: Django is configured only now (setup_django)
    from django.db import connection

    from oma.channels.services import channel_create
    from oma.stores.models import Store
    from tracking.models import Shipment

    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="oma-bench-imports-"))
    tracking_runs: list[tuple[Floor, ChildRun]] = []
    order_runs: list[tuple[Floor, ChildRun]] = []
    try:
        for attempt in range(args.runs):
            if args.rows:
                store = Store.objects.create(domain=f"t{attempt}.{STORE_DOMAIN}", access_token="token",
                                             client_secret="secret")
                channel = channel_create(store=store, kind="csv", name="Warehouse")
                started = time.perf_counter()
                seed_orders(store.pk, args.rows)
                print(f"tracking run {attempt + 1}: {args.rows} orders seeded in {time.perf_counter() - started:.1f} s",
                      flush=True)
                analyze()
                path = workdir / f"tracking-{attempt}.csv"
                path.write_bytes(tracking_file(args.rows))
                floor = floor_run(path, len(TRACKING_HEADER))
                connection.close()  # the child gets the database to itself
                run = run_child("tracking", path=path, store_id=store.pk, channel_id=channel.pk,
                                profile=args.profile / f"tracking-{attempt}.prof" if args.profile else None)
                stored = Shipment.objects.filter(store=store).count()
                if run.outcome["created"] != args.rows or stored != args.rows:
                    raise SystemExit(f"tracking import: {run.outcome} ({stored} shipments stored)")
                print(f"  {run.outcome['summary']}: {run.seconds:.1f} s", flush=True)
                tracking_runs.append((floor, run))
            if args.orders:
                store = Store.objects.create(domain=f"o{attempt}.{STORE_DOMAIN}", access_token="token",
                                             client_secret="secret")
                channel = channel_create(store=store, kind="csv", name="Amazon", source_names=[SOURCE_NAME])
                data, rows = generic_order_file(args.orders, prefix=f"R{attempt}")
                print(f"orders run {attempt + 1}: {args.orders} orders in {rows} rows", flush=True)
                path = workdir / f"orders-{attempt}.csv"
                path.write_bytes(data)
                floor = floor_run(path, len(GENERIC_HEADER))
                connection.close()
                run = run_child("orders", path=path, store_id=store.pk, channel_id=channel.pk,
                                profile=args.profile / f"orders-{attempt}.prof" if args.profile else None)
                if run.outcome["new"] != args.orders or run.outcome["rejected"]:
                    raise SystemExit(f"order import: {run.outcome}")
                print(f"orders run {attempt + 1}: {run.outcome['summary']}: {run.seconds:.1f} s", flush=True)
                order_runs.append((floor, run))
        tracking_sizes = order_sizes = None
        if args.rows:
            store = Store.objects.create(domain=f"q.{STORE_DOMAIN}", access_token="token", client_secret="secret")
            channel = channel_create(store=store, kind="csv", name="Warehouse")
            tracking_sizes = tracking_batch_queries(store.pk, channel.pk, (50, 400), first=0)
        if args.orders:
            store = Store.objects.create(domain=f"oq.{STORE_DOMAIN}", access_token="token", client_secret="secret")
            channel = channel_create(store=store, kind="csv", name="Amazon", source_names=[SOURCE_NAME])
            order_sizes = order_batch_queries(channel.pk, (100, 500))
    finally:
        for leftover in workdir.iterdir():
            leftover.unlink()
        workdir.rmdir()

    print(f"database: {vendor}; runs: {args.runs}")
    report("tracking", f"{args.rows} tracking rows", tracking_runs, tracking_sizes, unit="rows")
    report("orders", f"{args.orders} external orders", order_runs, order_sizes, unit="orders")


def spread(values: list[float]) -> str:
    return f" (runs: {', '.join(f'{value:.0f}' for value in values)})" if len(values) > 1 else ""


def report(kind: str, label: str, runs: list[tuple[Floor, ChildRun]], sizes: dict[int, int] | None, *,
           unit: str) -> None:
    if not runs:
        return
    count = int(label.split()[0])
    median = statistics.median
    seconds = [run.seconds for _, run in runs]
    ratios = [run.seconds / floor.seconds for floor, run in runs]
    for number, (floor, run) in enumerate(runs, 1):
        print(f"{label}, run {number}: import {run.seconds:.2f} s (file read {run.parse_seconds:.2f} s, after-commit "
              f"hooks {run.hook_seconds:.2f} s, waiting on the database {run.database_wait_seconds:.2f} s); CPU: "
              f"import process {run.cpu_seconds:.2f} s ({1e6 * run.cpu_seconds / count:.0f} us per {unit[:-1]}), "
              f"its PostgreSQL backends {run.database_cpu_seconds:.2f} s; floor {1000 * floor.seconds:.0f} ms "
              f"({1000 * floor.cpu_seconds:.0f} ms CPU); {run.queries} queries")
        heaviest = sorted(run.query_wait.items(), key=lambda item: -item[1])[:8]
        print("  database wait by statement: " + ", ".join(f"{kind} {seconds:.2f} s" for kind, seconds in heaviest))
    figure(f"{label}: import", median(seconds), "s")
    figure(f"{label}: import {unit}/s", count / median(seconds), f"{unit}/s")
    figure(f"{label}: floor (csv read + COPY)", 1000 * median(floor.seconds for floor, _ in runs), "ms")
    figure(f"{label}: import / floor", median(ratios), "x", "<= 100" + spread(ratios))
    # CPU seconds (the process and its PostgreSQL backend, for both): less disturbed by other work on the machine.
    figure(f"{label}: import / floor, in CPU seconds",
           median([(run.cpu_seconds + run.database_cpu_seconds) / floor.cpu_seconds for floor, run in runs]), "x")
    if kind == "tracking":
        # The receivers of shipments_changed (oma.fulfillment: unified status, push intents; e-mails; events) run
        # after each batch's commit, in a thread of their own while the next batch is written: their wall time
        # overlaps the batches' (their CPU and their PostgreSQL backend's are in the CPU figures above).
        figure(f"{label}: after-commit hooks, wall time in their own thread",
               median([run.hook_seconds for _, run in runs]), "s")
    figure(f"{label}: import process CPU per {unit[:-1]}",
           median([1e6 * run.cpu_seconds / count for _, run in runs]), "us")
    figure(f"{label}: peak RSS of the import's process", max(run.rss_peak_mb for _, run in runs), "MB", "< 300")
    figure(f"{label}: RSS before the import (Django + file)", max(run.rss_before_mb for _, run in runs), "MB")
    # The first batch's count includes the import's own start (its CsvImport or OrderImport row, the channel).
    batches = [q for _, run in runs for q in run.batch_queries[1:]]
    if batches:
        figure(f"{label}: queries per batch (min-max over the run)", f"{min(batches)}-{max(batches)}", "", "constant")
    hooks = [q for _, run in runs for q in run.hook_batch_queries]
    if hooks:
        figure(f"{label}: queries of a batch's hooks (min-max)", f"{min(hooks)}-{max(hooks)}", "", "constant")
    for size, queries in sorted((sizes or {}).items()):
        figure(f"{kind}: queries of an import in one batch of {size} {unit}", float(queries), "", "constant")


if __name__ == "__main__":
    main()
