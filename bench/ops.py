"""Operations: what /metrics and /healthz cost on a database of realistic size, and what logging costs per line.

    python -m bench.ops [--deliveries 50000] [--shipments 20000] [--pushes 10000]

Figures:
- /metrics scrape time, uncached, and its database queries (constant: aggregates, not rows);
- /healthz time (database, broker, beat lease, worker heartbeat);
- log lines per second through the redacting context filter and the JSON formatter (the cost of every line).
"""

from __future__ import annotations

import argparse
import io
import logging
import time
from datetime import timedelta

from bench.common import figure, setup_django


class QueryCounter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)


def seed(*, deliveries: int, shipments: int, pushes: int) -> None:
    from django.utils import timezone

    from oma.fulfillment.models import FulfillmentPush
    from oma.orders.models import Order, SyncRun
    from oma.stores.models import Store
    from tracking.models import Shipment
    from webhooks.models import WebhookDelivery

    now = timezone.now()
    stores = [Store.objects.create(domain=f"shop{n}.genmystore.com", access_token="t", client_secret="s")
              for n in range(10)]
    orders = Order.objects.bulk_create(
        [Order(store=stores[n % 10], order_id=str(1000 + n)) for n in range(max(pushes, 1000))], batch_size=2000
    )
    states = ["processed"] * 97 + ["received", "retrying", "failed"]
    WebhookDelivery.objects.bulk_create(
        [WebhookDelivery(store=stores[n % 10], shop_domain=stores[n % 10].domain, topic="orders/update",
                         dedupe_key=f"k{n}", body="{}", state=states[n % 100],
                         received_at=now - timedelta(seconds=n * 3),
                         processed_at=now - timedelta(seconds=n * 3 - 1) if states[n % 100] == "processed" else None)
         for n in range(deliveries)], batch_size=2000)
    carriers = ["ups", "fedex", "usps", "dhl", "17track"]
    Shipment.objects.bulk_create(
        [Shipment(store=stores[n % 10], tracking_number=f"N{n:012d}", carrier=carriers[n % 5],
                  next_poll_at=now + timedelta(seconds=(n % 600) - 300)) for n in range(shipments)], batch_size=2000)
    push_states = ["succeeded"] * 90 + ["pending"] * 8 + ["failed"] * 2
    FulfillmentPush.objects.bulk_create(
        [FulfillmentPush(key=f"p{n}", store=orders[n].store, order=orders[n], state=push_states[n % 100],
                         fulfill_id="f" if push_states[n % 100] == "succeeded" else "") for n in range(pushes)],
        batch_size=2000)
    SyncRun.objects.bulk_create(
        [SyncRun(store=stores[n % 10], kind="incremental", state="succeeded", started_at=now - timedelta(minutes=n),
                 finished_at=now - timedelta(minutes=n), created=n % 7, updated=n % 5) for n in range(2000)],
        batch_size=2000)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deliveries", type=int, default=50_000)
    parser.add_argument("--shipments", type=int, default=20_000)
    parser.add_argument("--pushes", type=int, default=10_000)
    parser.add_argument("--log-lines", type=int, default=20_000)
    args = parser.parse_args()

    setup_django("oma_bench_ops")
    from django.db import connection

    from oma.ops.beat import lease_acquire_or_renew
    from oma.ops.health import run_checks
    from oma.ops.logging import ContextFilter, JsonFormatter, log_context
    from oma.ops.metrics import metrics_text
    from oma.ops.redaction import register_secret
    from oma.ops.tasks import heartbeat

    seed(deliveries=args.deliveries, shipments=args.shipments, pushes=args.pushes)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ANALYZE")
    lease_acquire_or_renew(holder="bench", seconds=30)
    heartbeat()

    metrics_text(use_cache=False)  # warm
    counter = QueryCounter()
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        with connection.execute_wrapper(counter):
            text = metrics_text(use_cache=False)
        timings.append(time.perf_counter() - started)
    scrape_ms = sorted(timings)[len(timings) // 2] * 1000
    figure(f"/metrics scrape ({args.deliveries} deliveries, {args.shipments} shipments, {args.pushes} pushes)",
           scrape_ms, "ms", "< 500")
    figure("/metrics database queries per scrape", counter.count // 5, "queries", "constant")
    figure("/metrics samples", float(sum(1 for line in text.splitlines() if not line.startswith("#"))), "")

    timings = []
    for _ in range(20):
        started = time.perf_counter()
        report = run_checks()
        timings.append(time.perf_counter() - started)
    assert report.checks, report
    figure("/healthz checks", sorted(timings)[10] * 1000, "ms", "< 100")

    for n in range(200):  # a process that loaded a few hundred stores' and accounts' secrets
        register_secret(f"secret-token-{n:04d}-abcdefgh")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("bench.ops")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    started = time.perf_counter()
    with log_context(store_id=3, order_id="1001"):
        for n in range(args.log_lines):
            logger.info("push of %s to order %s: %s (customer %s)", f"9400{n:018d}", 1000 + n,
                        "created", "someone@example.com" if n % 10 == 0 else "-")
    seconds = time.perf_counter() - started
    assert "someone@example.com" not in stream.getvalue()
    figure("log lines/s (redacting filter + JSON)", args.log_lines / seconds, "lines/s", ">= 10000")


if __name__ == "__main__":
    main()
