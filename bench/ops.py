"""Operations: what /metrics and /healthz cost on a database of realistic size, and what logging costs per line.

    python -m bench.ops [--deliveries 50000] [--shipments 20000] [--pushes 10000] [--log-lines 20000]

Figures, each beside a floor measured in the same run (the same work with OMA's own processing removed), the two
measured in turns so that a change in the machine's load falls on both:
- /metrics scrape time, uncached, and its database queries (constant: aggregates, not rows). Floor: the very SQL
  statements (and parameters) a scrape sent, recorded from one scrape and replayed on the raw database cursor,
  plus the broker and counter I/O the scrape does; no ORM, no exposition;
- /healthz time (database, broker, beat lease, worker heartbeat). Floor: the raw round trips, the checks' own SQL
  (SELECT 1 and the two heartbeat reads) on the raw cursor and the broker probe (a Redis PING, or the filesystem
  broker's folder check);
- log lines per second through the redacting context filter and the JSON formatter (the cost of every line).
  Floor: the same calls through stdlib logging with a plain json.dumps formatter and no filter.
No target was set for the ratios to their floors: they are printed with an empty target.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import statistics
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import redis
from celery import current_app
from django.conf import settings
from django.db import connection

from bench.common import figure, setup_django


class QueryCounter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)


class QueryRecorder:
    """Keeps every statement a block sends, with its parameters, to replay them without the ORM."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, Any, bool]] = []

    def __call__(self, execute, sql, params, many, context):
        self.statements.append((sql, params, many))
        return execute(sql, params, many, context)


def replay(statements: list[tuple[str, Any, bool]]) -> None:
    """The statements on the database driver's own cursor (PostgreSQL), every row fetched; no ORM, no wrapper."""
    connection.ensure_connection()
    cursor = connection.connection.cursor() if connection.vendor == "postgresql" else connection.cursor()
    try:
        for sql, params, many in statements:
            if many:
                cursor.executemany(sql, params)
            else:
                cursor.execute(sql, params)
                if cursor.description is not None:
                    cursor.fetchall()
    finally:
        cursor.close()


def broker_floor() -> Callable[[], None]:
    """The broker I/O of a health check, without its code: a PING on a plain Redis client, or the filesystem
    broker's folder made and checked for writing (or nothing: an in-memory broker)."""
    url = str(settings.CELERY_BROKER_URL or "")
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("redis", "rediss"):
        client = redis.Redis.from_url(url)

        def ping() -> None:
            client.ping()

        return ping
    folder_name = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("data_folder_in")
    if scheme == "filesystem" and folder_name:
        folder = Path(folder_name)

        def check_folder() -> None:
            folder.mkdir(parents=True, exist_ok=True)
            os.access(folder, os.W_OK)

        return check_folder
    return lambda: None


def scrape_io_floor() -> Callable[[], None]:
    """The non-SQL I/O of a scrape besides the health check's: the shared counters (a Redis HGETALL when REDIS_URL
    is set) and the queue depths (the Redis broker's LLENs in one pipeline, or the filesystem broker's listing)."""
    from oma.ops.metrics import COUNTERS_KEY

    steps: list[Callable[[], None]] = []
    if settings.REDIS_URL:
        counters = redis.Redis.from_url(settings.REDIS_URL)

        def read_counters() -> None:
            counters.hgetall(COUNTERS_KEY)

        steps.append(read_counters)
    url = str(settings.CELERY_BROKER_URL or "")
    scheme = url.split("://", 1)[0].lower()
    queues = {current_app.conf.task_default_queue or "celery"}
    queues.update(getattr(queue, "name", str(queue)) for queue in current_app.conf.task_queues or ())
    if scheme in ("redis", "rediss"):
        broker = redis.Redis.from_url(url)
        options = current_app.conf.broker_transport_options or {}
        separator, prefix = options.get("sep", "\x06\x16"), options.get("global_keyprefix", "")
        keys = [f"{prefix}{queue}{separator}{step}" if step else f"{prefix}{queue}"
                for queue in sorted(queues) for step in options.get("priority_steps", [0, 3, 6, 9])]
        unacked = f"{prefix}{options.get('unacked_key', 'unacked')}"

        def depths() -> None:
            pipe = broker.pipeline(transaction=False)
            for key in keys:
                pipe.llen(key)
            pipe.hlen(unacked)
            pipe.execute()

        steps.append(depths)
    folder_name = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("data_folder_in")
    if scheme == "filesystem" and folder_name and Path(folder_name).exists():
        listed = Path(folder_name)

        def list_folder() -> None:
            for _ in listed.iterdir():
                pass

        steps.append(list_folder)

    def every_step() -> None:
        for step in steps:
            step()

    return every_step


class PlainJsonFormatter(logging.Formatter):
    """The least a JSON log line costs: stdlib's record, its message and time, one json.dumps."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"time": self.formatTime(record), "level": record.levelname, "logger": record.name,
                           "message": record.getMessage(), "process": record.process})


def in_turns(first: Callable[[], object], second: Callable[[], object], rounds: int) -> tuple[float, float]:
    """Median seconds of each callable over `rounds`, run in turns (first, second, first, ...)."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        for action, timings in ((first, times[0]), (second, times[1])):
            started = time.perf_counter()
            action()
            timings.append(time.perf_counter() - started)
    return statistics.median(times[0]), statistics.median(times[1])


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


def bench_metrics(*, sizes: str) -> None:
    """/metrics: the uncached scrape against the replay of its own SQL and I/O."""
    from oma.ops.metrics import metrics_text

    metrics_text(use_cache=False)  # warm
    scrape_sql = QueryRecorder()
    with connection.execute_wrapper(scrape_sql):
        text = metrics_text(use_cache=False)
    scrape_broker, scrape_io = broker_floor(), scrape_io_floor()

    def scrape_floor() -> None:
        replay(scrape_sql.statements)
        scrape_broker()
        scrape_io()

    counter = QueryCounter()

    def scrape_counted() -> None:
        with connection.execute_wrapper(counter):
            metrics_text(use_cache=False)

    scrape_floor()  # warm
    scrape, floor = in_turns(scrape_counted, scrape_floor, 5)
    figure(f"/metrics scrape ({sizes})", scrape * 1000, "ms", "< 500")
    figure("/metrics floor (the scrape's SQL replayed raw, its broker I/O)", floor * 1000, "ms")
    figure("/metrics time ratio scrape/floor", scrape / floor, "x")
    figure("/metrics database queries per scrape", counter.count // 5, "queries", "constant")
    figure("/metrics samples", float(sum(1 for line in text.splitlines() if not line.startswith("#"))), "")


def bench_healthz() -> None:
    """/healthz: run_checks() against its raw round trips."""
    from oma.ops.health import run_checks

    health_sql = QueryRecorder()
    with connection.execute_wrapper(health_sql):
        report = run_checks()
    assert report.ok, report.as_dict()
    health_broker = broker_floor()

    def health_floor() -> None:
        replay(health_sql.statements)
        health_broker()

    health_floor()  # warm
    checks, floor = in_turns(run_checks, health_floor, 20)
    figure("/healthz checks", checks * 1000, "ms", "< 100")
    figure(f"/healthz floor ({len(health_sql.statements)} statements raw, broker probe)", floor * 1000, "ms")
    figure("/healthz time ratio checks/floor", checks / floor, "x")


def json_logger(name: str, formatter: logging.Formatter, log_filter: logging.Filter | None) -> io.StringIO:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    if log_filter is not None:
        handler.addFilter(log_filter)
    handler.setFormatter(formatter)
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return stream


def bench_logging(*, lines: int) -> None:
    """Log lines: OMA's filter and formatter against stdlib logging with a plain JSON formatter, in blocks of 1,000
    lines, in turns."""
    from oma.ops.logging import ContextFilter, JsonFormatter, log_context
    from oma.ops.redaction import register_secret

    for n in range(200):  # a process that loaded a few hundred stores' and accounts' secrets
        register_secret(f"secret-token-{n:04d}-abcdefgh")
    oma_stream = json_logger("bench.ops", JsonFormatter(), ContextFilter())
    floor_stream = json_logger("bench.ops.floor", PlainJsonFormatter(), None)
    block = 1000
    blocks = max(1, lines // block)

    def log_block(logger: logging.Logger, start: int) -> None:
        for n in range(start, start + block):
            logger.info("push of %s to order %s: %s (customer %s)", f"9400{n:018d}", 1000 + n,
                        "created", "someone@example.com" if n % 10 == 0 else "-")

    seconds = {"bench.ops": 0.0, "bench.ops.floor": 0.0}
    with log_context(store_id=3, order_id="1001"):
        for number in range(blocks):
            for name in seconds:
                started = time.perf_counter()
                log_block(logging.getLogger(name), number * block)
                seconds[name] += time.perf_counter() - started
    assert "someone@example.com" not in oma_stream.getvalue()
    assert floor_stream.getvalue().count("\n") == oma_stream.getvalue().count("\n") == blocks * block
    oma_seconds, floor_seconds = seconds["bench.ops"], seconds["bench.ops.floor"]
    figure("log lines/s (redacting filter + JSON)", blocks * block / oma_seconds, "lines/s", ">= 10000")
    figure("log lines/s floor (stdlib logging, plain json.dumps, no filter)", blocks * block / floor_seconds,
           "lines/s")
    figure("log time ratio OMA/floor", oma_seconds / floor_seconds, "x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deliveries", type=int, default=50_000)
    parser.add_argument("--shipments", type=int, default=20_000)
    parser.add_argument("--pushes", type=int, default=10_000)
    parser.add_argument("--log-lines", type=int, default=20_000)
    args = parser.parse_args()

    setup_django("oma_bench_ops")
    from oma.ops.beat import lease_acquire_or_renew
    from oma.ops.tasks import heartbeat

    seed(deliveries=args.deliveries, shipments=args.shipments, pushes=args.pushes)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ANALYZE")
    lease_acquire_or_renew(holder="bench", seconds=30)
    heartbeat()

    bench_metrics(sizes=f"{args.deliveries} deliveries, {args.shipments} shipments, {args.pushes} pushes")
    bench_healthz()
    bench_logging(lines=args.log_lines)


if __name__ == "__main__":
    main()
