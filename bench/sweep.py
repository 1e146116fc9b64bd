"""Full sweep of 100,000 sandbox orders: throughput, peak RSS, queries per page, against the fetch+parse floor.

    python bench/sweep.py [--orders 100000]

The sandbox runs in its own process, so the RSS printed is OMA's alone. The floor walks the same pages through
the same client (HTTP, JSON, lenient parsing) without storing anything; the ratio is sweep time / floor time.
Targets: ratio <= 2.0, peak RSS < 300 MB, queries per page bounded by a constant.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import urllib.request

from bench.common import ROOT, figure, peak_rss_mb, setup_django

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--port", type=int, default=8199)
    args = parser.parse_args()

    vendor = setup_django("oma_bench_sweep")
    from django.db import connection

    from oma.orders.models import Order, SyncRun
    from oma.orders.services import orders_sweep
    from oma.stores.models import Store
    from oma.stores.services import genstore_client_for

    sandbox = start_sandbox(args.orders, args.port)
    try:
        store = Store.objects.create(
            domain="bench.genmystore.com", api_base_url=f"http://127.0.0.1:{args.port}/bench", access_token=TOKEN,
            client_secret=SECRET, rate_limit_capacity=100000, rate_limit_refill_per_second=100000,
        )
        # Floor: the same walk, fetched and parsed, nothing stored.
        started = time.perf_counter()
        floor_orders = sum(len(page.records) for page in genstore_client_for(store).iter_order_pages(limit=250))
        floor_seconds = time.perf_counter() - started

        queries = 0

        def count(execute, sql, params, many, context):
            nonlocal queries
            queries += 1
            return execute(sql, params, many, context)

        started = time.perf_counter()
        with connection.execute_wrapper(count):
            run = orders_sweep(store=store, kind=SyncRun.Kind.FULL)
        sweep_seconds = time.perf_counter() - started
        assert run.state == SyncRun.State.SUCCEEDED, run.error_message
        stored = Order.objects.filter(store=store).count()
    finally:
        sandbox.terminate()
        sandbox.wait(10)

    print(f"database: {vendor}; orders: {args.orders}; floor saw {floor_orders}; sweep stored {stored}")
    figure("sweep: orders/s", run.seen / sweep_seconds, "orders/s")
    figure("sweep: floor orders/s (fetch+parse)", floor_orders / floor_seconds, "orders/s")
    figure("sweep: time ratio sweep/floor", sweep_seconds / floor_seconds, "x", "<= 2.0")
    figure("sweep: peak RSS", peak_rss_mb(), "MB", "< 300")
    figure("sweep: DB queries per page", queries / max(run.pages, 1), "queries", "constant")


if __name__ == "__main__":
    main()
