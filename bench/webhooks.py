"""Webhook intake through gunicorn on 127.0.0.1: signed deliveries per second and p50/p99 latency at concurrency 32,
beside the same server's trivial 200 view (the floor: Django, middleware and gunicorn, no work).

    python -m bench.webhooks [--requests 2000] [--concurrency 32] [--workers 2] [--threads 8] [--rounds 6]

Every delivery is unique and correctly signed, so each one is verified, parsed, stored and its processing published
to a Redis broker of its own (a redis-server on a free port; no worker consumes, so only the intake is measured).
The server runs as deployed (oma.wsgi with oma.gunicorn_conf, which pins each worker to a CPU; REDIS_URL set for
the shared counters). Each round measures the floor and the
webhooks back to back, in alternating order, and the ratio is the median round's: on a small shared machine the
speed drifts by a third within a minute, and a pair of neighbouring measurements sees the same machine.
Targets: webhook throughput >= half the floor's, p99 < 100 ms.
"""

from __future__ import annotations

import argparse
import base64
import gc
import hashlib
import hmac
import http.client
import importlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types
from typing import Any

from bench.common import ROOT, figure, postgres_cpu_seconds, setup_django

SHOP = "bench.genmystore.com"
SECRET = "bench-client-secret-0123456789"
FLOOR_PATH = "/bench/floor/"
WEBHOOK_PATH = "/webhooks/genstore/"


# --- the server side (imported by gunicorn as `bench.webhooks:wsgi_app()`) --------------------------------------


def wsgi_app() -> Any:
    """OMA's WSGI application with one extra URL, the floor view, added for this benchmark only."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oma.settings")
    from django.conf import settings
    from django.http import HttpResponse
    from django.urls import path
    from django.views.decorators.csrf import csrf_exempt

    from oma.wsgi import application  # as deployed (Django set up before the URLs are imported)

    oma_urls = importlib.import_module("oma.urls")

    @csrf_exempt
    def floor(request: Any) -> HttpResponse:
        return HttpResponse(b'{"status":"ok"}', content_type="application/json")

    urls = types.ModuleType("bench_webhooks_urls")
    urls.urlpatterns = [path(FLOOR_PATH.strip("/") + "/", floor), *oma_urls.urlpatterns]  # type: ignore[attr-defined]
    sys.modules[urls.__name__] = urls
    settings.ROOT_URLCONF = urls.__name__
    return application


# --- the load generator --------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, timeout: float, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"process exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port} after {timeout:.0f} s")


def _signed(order_number: int, run: str) -> tuple[bytes, dict[str, str]]:
    order_id = str(order_number)
    body = json.dumps(
        {
            "order": {
                "orderId": order_id,
                "name": f"#{order_id}",
                # The run in the body too: a store accepts a topic and body once (a resent body is a replay).
                "tags": f"bench-{run}",
                "financialStatus": "paid",
                "updatedAt": "2026-11-01T12:00:00+00:00",
                "totalPrice": "42.00",
                "currency": "USD",
                "lineItems": [{"id": f"{order_id}-1", "sku": "SKU-1", "quantity": 1, "price": "42.00"}],
            }
        },
        separators=(",", ":"),
    ).encode()
    signature = base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest()).decode()
    headers = {
        "Content-Type": "application/json",
        "X-Genstore-Topic": "orders/update",
        "X-Genstore-Shop-Domain": SHOP,
        "X-Genstore-Hmac-Sha256": signature,
        "X-Genstore-Webhook-Id": f"bench-{run}-{order_id}",
    }
    return body, headers


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes and their live children (Linux /proc), in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    seen: set[int] = set()
    pending = list(pids)
    while pending:
        pid = pending.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
            total += int(fields[11]) + int(fields[12])
            children = open(f"/proc/{pid}/task/{pid}/children").read().split()  # noqa: SIM115
        except OSError:
            continue
        pending.extend(int(child) for child in children)
    return total / ticks


def _load(
    port: int, path: str, requests: list[tuple[bytes, dict[str, str]]], concurrency: int, server_pids: list[int]
) -> dict[str, Any]:
    latencies: list[float] = [0.0] * len(requests)
    statuses: list[int] = [0] * len(requests)
    lock = threading.Lock()
    cursor = iter(range(len(requests)))

    def sender() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            with lock:
                index = next(cursor, None)
            if index is None:
                break
            body, headers = requests[index]
            started = time.perf_counter()
            try:
                connection.request("POST", path, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                statuses[index] = response.status
            except (OSError, http.client.HTTPException):
                statuses[index] = -1
                connection.close()
            latencies[index] = time.perf_counter() - started
        connection.close()

    # The load generator's own garbage collections would stall all 32 senders at once and count as server latency.
    gc.collect()
    gc.disable()
    cpu_before = _cpu_seconds(server_pids)
    load_cpu_before = time.process_time()
    database_cpu_before = postgres_cpu_seconds()
    started = time.perf_counter()
    threads = [threading.Thread(target=sender) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    gc.enable()
    server_cpu = _cpu_seconds(server_pids) - cpu_before
    load_cpu = time.process_time() - load_cpu_before
    database_cpu = postgres_cpu_seconds() - database_cpu_before
    return {
        "server_cpu": server_cpu,
        "load_cpu": load_cpu,
        "database_cpu": database_cpu,
        "requests": len(requests),
        "per_second": len(requests) / elapsed,
        "latencies": latencies,
        "statuses": statuses,
    }


def _summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Throughput: the median round's. Latencies: over every request of every round. CPU: per request, overall."""
    latencies = sorted(latency for result in rounds for latency in result["latencies"])
    statuses = [status for result in rounds for status in result["statuses"]]
    requests = sum(result["requests"] for result in rounds)
    return {
        "per_second": statistics.median(result["per_second"] for result in rounds),
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "max_ms": latencies[-1] * 1000,
        "server_cpu_ms": sum(result["server_cpu"] for result in rounds) / requests * 1000,
        "load_cpu_ms": sum(result["load_cpu"] for result in rounds) / requests * 1000,
        "database_cpu_ms": sum(result["database_cpu"] for result in rounds) / requests * 1000,
        "statuses": {status: statuses.count(status) for status in set(statuses)},
    }


def _database_commits(vendor: str) -> int:
    """Transactions committed in the benchmark's database so far (PostgreSQL's statistics; 0 elsewhere)."""
    if vendor != "postgresql":
        return 0
    from django.db import connection

    time.sleep(1.5)  # backends report their statistics about once a second
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
        return int(cursor.fetchone()[0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000, help="requests per measured round and path")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=8, help="threads per gunicorn worker (gthread)")
    parser.add_argument("--rounds", type=int, default=6, help="rounds, each measuring the floor and the webhooks")
    args = parser.parse_args()

    redis_binary = shutil.which("redis-server")
    if redis_binary is None:
        raise SystemExit("bench/webhooks.py needs redis-server (the broker the intake publishes to)")
    vendor = setup_django("oma_bench_webhooks")
    from oma.stores.models import Store
    from webhooks.models import WebhookDelivery

    Store.objects.create(domain=SHOP, access_token="bench-token", client_secret=SECRET)

    redis_port, web_port = _free_port(), _free_port()
    scratch = tempfile.mkdtemp(prefix="oma-bench-webhooks-")
    redis = subprocess.Popen(
        [redis_binary, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", scratch], stdout=subprocess.DEVNULL,
    )
    env = {
        **os.environ,
        # As deployed: the broker and the shared counters in one Redis.
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/1",
        "SECURE_SSL_REDIRECT": "0",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "bench.webhooks:wsgi_app()", "--config=python:oma.gunicorn_conf",
         f"--bind=127.0.0.1:{web_port}",
         f"--workers={args.workers}", f"--threads={args.threads}", "--worker-class=gthread", "--backlog=512",
         "--keep-alive=30", "--log-level=warning"],
        cwd=ROOT, env=env,
    )
    try:
        _wait_for_port(redis_port, 10, redis)
        _wait_for_port(web_port, 30, web)
        warmup = [_signed(n, "warmup") for n in range(300)]
        pids = [web.pid, redis.pid]
        _load(web_port, FLOOR_PATH, warmup, args.concurrency, pids)
        _load(web_port, WEBHOOK_PATH, warmup, args.concurrency, pids)

        floors, hooks = [], []
        commits_before = _database_commits(vendor)
        for round_number in range(args.rounds):
            batch = [_signed(n, f"r{round_number}") for n in range(args.requests)]
            # Floor and webhooks side by side, in turns (the machine's speed drifts; a pair sees the same machine).
            if round_number % 2:
                hooks.append(_load(web_port, WEBHOOK_PATH, batch, args.concurrency, pids))
                floors.append(_load(web_port, FLOOR_PATH, batch, args.concurrency, pids))
            else:
                floors.append(_load(web_port, FLOOR_PATH, batch, args.concurrency, pids))
                hooks.append(_load(web_port, WEBHOOK_PATH, batch, args.concurrency, pids))
        commits = _database_commits(vendor) - commits_before
        ratios = [hook["per_second"] / floor["per_second"] for floor, hook in zip(floors, hooks, strict=True)]
        floor, hook = _summary(floors), _summary(hooks)
        stored = WebhookDelivery.objects.count()
    finally:
        web.send_signal(signal.SIGTERM)
        web.wait(timeout=30)
        redis.kill()
        redis.wait(timeout=10)
        shutil.rmtree(scratch, ignore_errors=True)

    expected = 300 + args.requests * args.rounds
    print(f"database: {vendor}; gunicorn gthread {args.workers}x{args.threads}; concurrency {args.concurrency}; "
          f"{args.rounds} rounds of {args.requests} requests per path; {os.cpu_count()} CPUs")
    print("floor requests/s per round: " + ", ".join(f"{result['per_second']:.0f}" for result in floors))
    print("webhook deliveries/s per round: " + ", ".join(f"{result['per_second']:.0f}" for result in hooks))
    print("webhook/floor throughput per round: " + ", ".join(f"{ratio:.2f}" for ratio in ratios))
    print(f"floor statuses {floor['statuses']}; webhook statuses {hook['statuses']}; "
          f"deliveries stored {stored} of {expected}")
    if set(hook["statuses"]) != {200} or stored != expected:
        raise SystemExit("webhook requests failed: the figures below would not mean anything")
    ratio = statistics.median(ratios)
    figure("floor (trivial 200 view) requests/s", round(floor["per_second"], 1), "req/s")
    figure("floor p50 latency", round(floor["p50_ms"], 1), "ms")
    figure("floor p99 latency", round(floor["p99_ms"], 1), "ms")
    figure("signed deliveries/s", round(hook["per_second"], 1), "req/s", f">= {floor['per_second'] / 2:.0f}")
    figure("deliveries/s vs floor (median round)", round(ratio, 2), "x", ">= 0.5")
    figure("delivery p50 latency", round(hook["p50_ms"], 1), "ms")
    figure("delivery p99 latency", round(hook["p99_ms"], 1), "ms", "< 100")
    figure("delivery max latency", round(hook["max_ms"], 1), "ms")
    # Where the time goes: CPU of gunicorn and the broker per request, of a local PostgreSQL server, and of the
    # load generator itself.
    figure("floor server CPU per request", round(floor["server_cpu_ms"], 2), "ms")
    figure("delivery server CPU per request", round(hook["server_cpu_ms"], 2), "ms")
    figure("delivery database CPU per request", round(hook["database_cpu_ms"], 2), "ms")
    # The load generator shares the machine: its CPU per request is spent on both paths alike.
    figure("load generator CPU per floor request", round(floor["load_cpu_ms"], 2), "ms")
    figure("load generator CPU per delivery", round(hook["load_cpu_ms"], 2), "ms")
    if commits:  # group commit: how many deliveries one database commit carried, on average
        figure("deliveries per database commit", round(args.requests * args.rounds / commits, 1), "")


if __name__ == "__main__":
    main()
