"""Full sweep of 100,000 sandbox orders: throughput, peak RSS, queries per page, against the fetch+parse floor.

    python -m bench.sweep [--orders 100000] [--hooks deferred|inline]

The sandbox runs in its own process, so the RSS printed is OMA's alone. The floor walks the same pages through
the same client (HTTP, JSON, lenient parsing) without storing anything; the ratio is sweep time / floor time.
Targets: ratio <= 2.0, peak RSS < 300 MB, queries per page bounded by a constant.

`--hooks deferred` (the default) sweeps as a Celery worker does (beat's sweeps): each page's orders-changed hooks
(unified status, channel matching, tracking the merchant's own fulfillments) are handed to a task, here on an
in-memory broker that nothing consumes, and so is the catch-up of Genstore's own fulfillments queued at the end
(`fulfillment.catch_up_genstore_fulfillments`, which on a first sweep adopts every fulfilled order's parcel).
`--hooks inline` sweeps as `sync_orders` does, the hooks run after each page.

The sweep stores each page in a writer thread while it reads the next (as in production), so its wall time is less
than the sum of its CPU. On a shared machine wall time varies with the load: the CPU seconds of OMA, the sandbox and
the PostgreSQL server (all its processes) are printed too, for a view that does not depend on it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import urllib.request
from typing import Any

from bench.common import ROOT, figure, peak_rss_mb, postgres_cpu_seconds, setup_django

TOKEN = "bench-token"
SECRET = "bench-secret"


def start_sandbox(orders: int, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "manage.py", "genstore_sandbox", "--port", str(port), "--orders", str(orders), "--seed",
         "1", "--shop", "bench", "--access-token", TOKEN, "--client-secret", SECRET, "--rate-limit", "100000/100000"],
        cwd=ROOT, env={"DEBUG": "1", "PATH": "/usr/bin:/bin"}, stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/bench/api/202412/shops/info", timeout=1)
            return process
        except OSError as exc:
            if getattr(exc, "code", None):
                return process
            time.sleep(0.3)
    process.kill()
    raise SystemExit("the sandbox did not start")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process on this machine (Linux /proc); 0 where that cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--port", type=int, default=8199)
    parser.add_argument("--hooks", choices=["deferred", "inline"], default="deferred")
    args = parser.parse_args()

    os.environ["CELERY_BROKER_URL"] = "memory://"  # deferred hooks must not reach a real broker
    vendor = setup_django("oma_bench_sweep")
    from django.db import connection
    from django.db.backends.signals import connection_created

    from oma.orders.models import Order, SyncRun
    from oma.orders.services import orders_sweep
    from oma.stores.models import Store
    from oma.stores.services import genstore_client_for

    sandbox = start_sandbox(args.orders, args.port)

    def cpu() -> tuple[float, float, float]:
        return time.process_time(), cpu_seconds(sandbox.pid), postgres_cpu_seconds() if vendor == "postgresql" else 0.0

    try:
        store = Store.objects.create(
            domain="bench.genmystore.com", api_base_url=f"http://127.0.0.1:{args.port}/bench", access_token=TOKEN,
            client_secret=SECRET, rate_limit_capacity=100000, rate_limit_refill_per_second=100000,
        )
        # Floor: the same walk, fetched and parsed, nothing stored.
        cpu_before, started = cpu(), time.perf_counter()
        with genstore_client_for(store) as client:
            floor_orders = sum(len(page.records) for page in client.iter_order_pages(limit=250))
        floor_seconds = time.perf_counter() - started
        floor_cpu = [after - before for before, after in zip(cpu_before, cpu(), strict=True)]

        queries = 0

        def count(execute, sql, params, many, context):
            nonlocal queries
            queries += 1
            return execute(sql, params, many, context)

        def count_on_new_connection(sender: object, connection: Any, **kwargs: object) -> None:
            connection.execute_wrappers.append(count)  # the sweep's writer thread has a connection of its own

        connection_created.connect(count_on_new_connection)
        cpu_before, started = cpu(), time.perf_counter()
        with connection.execute_wrapper(count):
            run = orders_sweep(store=store, kind=SyncRun.Kind.FULL, defer_hooks=args.hooks == "deferred")
        connection_created.disconnect(count_on_new_connection)
        sweep_seconds = time.perf_counter() - started
        sweep_cpu = [after - before for before, after in zip(cpu_before, cpu(), strict=True)]
        assert run.state == SyncRun.State.SUCCEEDED, run.error_message
        stored = Order.objects.filter(store=store).count()
    finally:
        sandbox.terminate()
        sandbox.wait(10)

    print(f"database: {vendor}; orders: {args.orders}; floor saw {floor_orders}; sweep stored {stored}; "
          f"hooks {args.hooks}")
    for name, seconds in (("floor", floor_cpu), ("sweep", sweep_cpu)):
        oma, sandbox_cpu, database = seconds
        print(f"{name} CPU seconds: OMA {oma:.1f}, sandbox {sandbox_cpu:.1f}, PostgreSQL {database:.1f}")
    figure("sweep: orders/s", run.seen / sweep_seconds, "orders/s")
    figure("sweep: floor orders/s (fetch+parse)", floor_orders / floor_seconds, "orders/s")
    figure("sweep: time ratio sweep/floor", sweep_seconds / floor_seconds, "x", "<= 2.0")
    figure("sweep: CPU ratio sweep/floor (all processes)", sum(sweep_cpu) / max(sum(floor_cpu), 1e-9), "x")
    figure("sweep: peak RSS", peak_rss_mb(), "MB", "< 300")
    figure("sweep: DB queries per page", queries / max(run.pages, 1), "queries", "constant")


if __name__ == "__main__":
    main()
