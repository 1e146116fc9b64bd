"""Webhook intake through gunicorn on 127.0.0.1, driven by wrk: signed deliveries per second and wrk's p50/p99
latency at 32 connections, beside the same server's trivial 200 view (the floor: gunicorn, Django and its
middleware, no work).

    python -m bench.webhooks [--seconds 5] [--rounds 5] [--connections 32] [--workers 2] [--threads N]
    python -m bench.webhooks --profile DIR   # one profiled webhook run instead of the figures (see below)
    python -m bench.webhooks --app MODULE:CALLABLE()   # the same against a prototype (PYTHONPATH is passed on)

The load comes from wrk (a C load generator, installed by bench.common.wrk_binary when missing), never from
Python threads competing with the server for the same CPUs. wrk has no HMAC, so every request is generated
beforehand: seed-sized `orders/update` bodies (a sandbox order with its customer and addresses, about 3.5 KB),
each with a new order id, signed, under a new webhook id, written to a file that bench/wrk/replay.lua replays,
each request at most once per run. The run is sized by time and the file holds 2.5 times what the fastest run so
far sent; a run that runs out fails the benchmark. After each run the stored rows are counted: every delivery
answered is stored, once ("stored once: yes").

The floor replays the same requests (same size, same headers) to a view that ignores them. Each round measures
the floor and the webhooks back to back, in alternating order, and the ratio is the median round's: on a small
shared machine the speed drifts, and a pair of neighbouring measurements sees the same machine. Beside each
figure: the CPU share (CPUs kept busy) of wrk, of the server (gunicorn and its Redis), of PostgreSQL (the
benchmark database's backends and the WAL writers) and of every other process (noise from other work on the
machine); the busiest gunicorn worker's part of the workers' CPU (wrk opens its 32 connections at once and a
gthread worker keeps every keep-alive connection it accepts, so one worker may serve most of them, or all); and
the generator's ceiling: the same wrk, script and requests against a server that answers without any work
(bench.common.canned_http_server), which must reach at least twice the floor for the floor to be the server's.
Targets: webhook throughput >= half the floor's, p99 < 100 ms.

The server runs as deployed (oma.wsgi with oma.gunicorn_conf, which pins each worker to a CPU and gives it
OMA_GUNICORN_THREADS threads unless --threads says otherwise; REDIS_URL set for the shared counters); each
delivery's processing is published to a Redis broker of its own (no worker consumes, so only the intake is
measured). Deliveries take the webhook fast path (webhooks/wsgi_fastpath.py) as deployed; the floor view, like any
other view, goes through Django's full middleware stack.

--profile DIR: the server runs every request under cProfile (CPU time of its thread), one webhook run, and the
merged profile of the request threads is written to DIR/intake.prof and summarised per delivery.
"""

from __future__ import annotations

import argparse
import atexit
import cProfile
import importlib
import json
import math
import os
import pstats
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    ROOT,
    WrkResult,
    canned_http_server,
    child_pids,
    figure,
    free_port,
    process_cpu_seconds,
    setup_django,
    wait_for_port,
    wrk_binary,
    wrk_request_files,
    wrk_request_files_remove,
    wrk_run,
)
from oma.genstore.topics import ORDERS_UPDATE
from oma.gunicorn_conf import threads as DEPLOYED_THREADS
from oma.sandbox.quirks import wire_order
from oma.sandbox.server import DEFAULT_API_VERSION
from oma.sandbox.shop import Shop
from oma.sandbox.webhooks import build_headers

SHOP = "bench.genmystore.com"
SECRET = "bench-client-secret-0123456789"
FLOOR_PATH = "/bench/floor/"
WEBHOOK_PATH = "/webhooks/genstore/"
PROFILE_ENV = "OMA_BENCH_PROFILE_DIR"
TARGET_RATIO = 0.5
TARGET_P99_MS = 100.0


# --- the server side (imported by gunicorn as `bench.webhooks:wsgi_app()`) --------------------------------------


def wsgi_app() -> Any:
    """OMA's WSGI application with one extra URL, the floor view, added for this benchmark only; with
    OMA_BENCH_PROFILE_DIR set, every request runs under cProfile (see _ProfiledApplication)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oma.settings")
    # why: inside the function, Django is set up by oma.wsgi (in the gunicorn worker), not by importing this module
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
    profile_directory = os.environ.get(PROFILE_ENV)
    if profile_directory:
        return _ProfiledApplication(application, Path(profile_directory))
    return application


class _ProfiledApplication:
    """Runs each request under a cProfile of its own thread, timed by that thread's CPU clock (time spent waiting
    for the GIL, a lock or the database is not counted), and writes the threads' profiles, merged, to
    `<directory>/<pid>.prof` when the worker exits. gunicorn's own parsing and writing are outside it."""

    def __init__(self, application: Callable[..., Any], directory: Path) -> None:
        self.application = application
        self.directory = directory
        self.local = threading.local()
        self.profiles: list[cProfile.Profile] = []
        self.lock = threading.Lock()
        atexit.register(self.dump)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        profile = getattr(self.local, "profile", None)
        if profile is None:
            profile = self.local.profile = cProfile.Profile(time.thread_time)
            with self.lock:
                self.profiles.append(profile)
        profile.enable()
        try:
            return self.application(environ, start_response)
        finally:
            profile.disable()

    def dump(self) -> None:
        if not self.profiles:
            return
        stats = pstats.Stats(self.profiles[0])
        stats.add(*self.profiles[1:])
        stats.dump_stats(str(self.directory / f"{os.getpid()}.prof"))


# --- the requests: seed-sized orders/update deliveries, each unique and signed ------------------------------------

_ORDER_ID_MARK = "@order-id@"
_FIRST_NAMES = ("Ava", "Noah", "Mia", "Liam", "Zoe", "Ethan", "Lena", "Omar", "Ines", "Kenji", "Sofia", "Mateo")
_LAST_NAMES = ("Garcia", "Smith", "Nguyen", "Müller", "Rossi", "Kowalski", "Dubois", "Tanaka", "Silva", "Okafor")
_CITIES = (
    ("Austin", "Texas", "TX", "78701"), ("Portland", "Oregon", "OR", "97205"), ("Denver", "Colorado", "CO", "80202"),
    ("Columbus", "Ohio", "OH", "43215"), ("Raleigh", "North Carolina", "NC", "27601"),
)


def _address(rng: random.Random, first: str, last: str) -> dict[str, Any]:
    city, province, code, zip_code = rng.choice(_CITIES)
    return {
        "firstName": first, "lastName": last, "name": f"{first} {last}", "company": None,
        "address1": f"{rng.randint(10, 9999)} {rng.choice(('Oak', 'Maple', 'Cedar', 'Elm'))} Street",
        "address2": rng.choice(("", f"Apt {rng.randint(1, 40)}")), "city": city, "province": province,
        "provinceCode": code, "country": "United States", "countryCode": "US", "zip": zip_code,
        "phone": f"+1 512 555 {rng.randint(1000, 9999)}",
        "latitude": round(rng.uniform(25, 48), 6), "longitude": round(rng.uniform(-122, -71), 6),
    }


def _with_customer(order: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """A sandbox order as a store sends it in a webhook: with its customer, addresses and shipping line."""
    first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
    shipping = _address(rng, first, last)
    return {
        **order,
        "processedAt": order["createdAt"],
        "taxesIncluded": False,
        "test": False,
        "totalWeight": sum(int(line.get("grams") or 0) * int(line["quantity"]) for line in order["lineItems"]),
        "presentmentCurrency": order["currency"],
        "customer": {
            "id": str(rng.randrange(10**12, 10**13)), "email": order.get("email"), "firstName": first,
            "lastName": last, "phone": shipping["phone"], "ordersCount": rng.randint(1, 30),
            "totalSpent": order["totalPrice"], "acceptsMarketing": rng.random() < 0.4, "tags": "",
            "createdAt": order["createdAt"], "updatedAt": order["updatedAt"], "defaultAddress": shipping,
        },
        "shippingAddress": shipping,
        "billingAddress": shipping if rng.random() < 0.7 else _address(rng, first, last),
        "shippingLines": [{"title": "Standard", "code": "STANDARD", "price": order["totalShippingPrice"],
                           "source": "genstore"}],
    }


def seed_sized_templates(count: int = 200, *, low: int = 3200, high: int = 4200) -> list[bytes]:
    """`count` orders/update bodies of 3.2 to 4.2 KB (3.5 KB on average, the seed's order size): sandbox
    orders (seed 1, clean JSON) with their customer and addresses, the order id left as a mark to fill in."""
    shop = Shop(handle="bench", seed=1, order_count=count * 20, anchor_ms=1_780_000_000_000, days=90)
    templates: list[bytes] = []
    for index in range(shop.count):
        wire, _ = wire_order(shop.order(index), frozenset(), None)
        order = _with_customer(wire, random.Random(index))
        order["orderId"] = _ORDER_ID_MARK
        body = json.dumps({"order": order}, separators=(",", ":"), ensure_ascii=False).encode()
        if low <= len(body) <= high:
            templates.append(body)
            if len(templates) == count:
                return templates
    raise SystemExit(f"the sandbox gave only {len(templates)} orders of {low} to {high} bytes")


class SignedDeliveries:
    """Unique signed deliveries: each a template with an order id never used before, under a new webhook id."""

    def __init__(self, templates: list[bytes]) -> None:
        self.templates = templates
        self.next_order_id = 9_000_000_000_000

    def take(self, count: int) -> Iterator[tuple[dict[str, str], bytes]]:
        mark = _ORDER_ID_MARK.encode()
        for _ in range(count):
            order_id = self.next_order_id
            self.next_order_id += 1
            body = self.templates[order_id % len(self.templates)].replace(mark, b"%d" % order_id)
            headers = build_headers(
                topic=ORDERS_UPDATE, body=body, secret=SECRET, shop_domain=SHOP, api_version=DEFAULT_API_VERSION
            )
            yield headers, body


# --- the run -----------------------------------------------------------------------------------------------------


@dataclass
class Server:
    port: int
    pids: list[int]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def serving(args: argparse.Namespace, scratch: Path, extra_env: dict[str, str] | None = None) -> Iterator[Server]:
    """gunicorn serving `--app` (`bench.webhooks:wsgi_app()`) as deployed, and the Redis it publishes to."""
    redis_binary = shutil.which("redis-server")
    if redis_binary is None:
        raise SystemExit("bench/webhooks.py needs redis-server (the broker the intake publishes to)")
    redis_port, web_port = free_port(), free_port()
    redis = subprocess.Popen(
        [redis_binary, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(scratch)], stdout=subprocess.DEVNULL,
    )
    env = {
        **os.environ,
        # As deployed: the broker and the shared counters in one Redis.
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/1",
        "SECURE_SSL_REDIRECT": "0",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH")))),
        **(extra_env or {}),
    }
    # Threads as deployed (oma.gunicorn_conf's OMA_GUNICORN_THREADS) unless --threads says otherwise.
    threads = [f"--threads={args.threads}"] if args.threads else []
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", args.app, "--config=python:oma.gunicorn_conf",
         f"--bind=127.0.0.1:{web_port}", f"--workers={args.workers}", *threads,
         "--worker-class=gthread", "--backlog=512", "--keep-alive=30", "--log-level=warning"],
        cwd=ROOT, env=env,
    )
    try:
        wait_for_port(redis_port, 10, redis)
        wait_for_port(web_port, 30, web)
        yield Server(web_port, [web.pid, redis.pid])
    finally:
        web.send_signal(signal.SIGTERM)
        web.wait(timeout=30)
        redis.kill()
        redis.wait(timeout=10)


def stored_deliveries() -> int:
    """Rows in the delivery table once the server has finished what it was sent (the count stops moving)."""
    # why: inside the function, the models are importable only once setup_django has run
    from webhooks.models import WebhookDelivery

    count, deadline = -1, time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = WebhookDelivery.objects.count()
        if now == count:
            break
        count = now
    return count


@dataclass
class Run:
    """One wrk run against the server, with how its CPU fell on the gunicorn workers."""

    load: WrkResult
    worker_cpu: list[float]  # CPU seconds of each gunicorn worker during the run
    stored: int = 0  # deliveries the run stored (webhook runs)

    @property
    def busiest_worker_share(self) -> float:
        """The busiest worker's part of the workers' CPU: wrk opens its connections at once, and a gthread worker
        keeps every keep-alive connection it accepted, so one worker may get most of them (or all)."""
        total = sum(self.worker_cpu)
        return max(self.worker_cpu) / total if total else 0.0

    @property
    def stored_once(self) -> bool:
        """Every delivery answered was stored, nothing twice, none failed, none replayed: each answered one is in
        the table, and rows beyond the answers are at most the requests still in flight when wrk stopped."""
        load = self.load
        return load.wrapped == 0 and load.failed == 0 and load.requests <= self.stored <= load.sent


class Bench:
    """The requests files, the server and wrk of one benchmark run."""

    def __init__(
        self, args: argparse.Namespace, server: Server, scratch: Path, deliveries: SignedDeliveries, database: str
    ) -> None:
        self.args = args
        self.database = database  # PostgreSQL's CPU is that of this database's backends (and its WAL writers)
        self.server = server
        self.scratch = scratch
        self.deliveries = deliveries
        self.fastest_delivery_rate = 2000.0  # until measured: sizes the first request file
        self.files = 0

    def new_requests(self, seconds: int) -> Path:
        """A request file holding 2.5 times what the fastest webhook run so far would send in `seconds`."""
        self.files += 1
        prefix = self.scratch / f"requests-{self.files}"
        count = math.ceil(2.5 * self.fastest_delivery_rate * seconds) + 1000
        wrk_request_files(prefix, self.deliveries.take(count), threads=self.args.wrk_threads)
        return prefix

    def drop(self, prefix: Path) -> None:
        wrk_request_files_remove(prefix, threads=self.args.wrk_threads)

    def load(self, url: str, path: str, prefix: Path, seconds: int, *, reuse: bool) -> WrkResult:
        return wrk_run(
            url=url, path=path, requests_prefix=prefix, seconds=seconds, connections=self.args.connections,
            threads=self.args.wrk_threads, reuse=reuse, server_pids=self.server.pids, database=self.database,
        )

    def served(self, path: str, prefix: Path, seconds: int, *, reuse: bool) -> Run:
        workers = child_pids(self.server.pids[0])
        before = [process_cpu_seconds(pid) for pid in workers]
        load = self.load(self.server.url, path, prefix, seconds, reuse=reuse)
        return Run(load, [process_cpu_seconds(pid) - cpu for pid, cpu in zip(workers, before, strict=True)])

    def floor(self, prefix: Path, seconds: int) -> Run:
        return self.served(FLOOR_PATH, prefix, seconds, reuse=True)

    def webhooks(self, prefix: Path, seconds: int) -> Run:
        before = stored_deliveries()
        run = self.served(WEBHOOK_PATH, prefix, seconds, reuse=False)
        run.stored = stored_deliveries() - before
        if run.load.wrapped:
            raise SystemExit("a webhook run sent more requests than were prepared for it: each must be new")
        self.fastest_delivery_rate = max(self.fastest_delivery_rate, run.load.per_second)
        return run

    def round(self, number: int) -> tuple[Run, Run]:
        prefix = self.new_requests(self.args.seconds)
        try:
            # Floor and webhooks side by side, in turns (the machine's speed drifts; a pair sees the same machine).
            if number % 2:
                hooks = self.webhooks(prefix, self.args.seconds)
                floor = self.floor(prefix, self.args.seconds)
            else:
                floor = self.floor(prefix, self.args.seconds)
                hooks = self.webhooks(prefix, self.args.seconds)
        finally:
            self.drop(prefix)
        return floor, hooks

    def ceiling(self) -> WrkResult:
        """The same wrk, script and requests against a server that does no work: what the generator can reach."""
        prefix = self.new_requests(self.args.seconds)
        try:
            with canned_http_server() as port:
                return self.load(f"http://127.0.0.1:{port}", WEBHOOK_PATH, prefix, self.args.seconds, reuse=True)
        finally:
            self.drop(prefix)


def _database_commits(vendor: str) -> int:
    """Transactions committed in the benchmark's database so far (PostgreSQL's statistics; 0 elsewhere)."""
    if vendor != "postgresql":
        return 0
    # why: inside the function, Django's connection is configured by setup_django at run time
    from django.db import connection

    time.sleep(1.5)  # backends report their statistics about once a second
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def _spread(values: list[float]) -> str:
    if max(values) >= 10:
        return f"{min(values):,.0f} to {max(values):,.0f}"
    return f"{min(values):.2f} to {max(values):.2f}"


def _shares(run: Run) -> str:
    load = run.load
    database = f", PostgreSQL {load.share(load.database_cpu):.2f}" if run.stored else ""
    return (
        f"CPUs: wrk {load.share(load.generator_cpu):.2f}, server {load.share(load.server_cpu):.2f}{database}, "
        f"other processes {load.share(load.others_cpu):.2f}; busiest worker {run.busiest_worker_share:.0%}"
    )


def _describe_round(number: int, floor: Run, hooks: Run) -> str:
    load = hooks.load
    return (
        f"round {number + 1}: floor {floor.load.per_second:,.0f} req/s ({_shares(floor)}); webhooks "
        f"{load.per_second:,.0f}/s ({_shares(hooks)}); ratio {load.per_second / floor.load.per_second:.2f}; "
        f"delivery p50 {load.latency_ms['p50']:.1f} ms, p99 {load.latency_ms['p99']:.1f} ms; stored once: "
        f"{'yes' if hooks.stored_once else 'no'} ({hooks.stored:,} stored, {load.requests:,} answered, "
        f"{load.sent:,} sent, {load.failed} failed)"
    )


def _median(runs: list[Run], value: Callable[[WrkResult], float]) -> float:
    return statistics.median(value(run.load) for run in runs)


def _cpu_figures(floors: list[Run], hooks: list[Run]) -> None:
    """CPU shares (CPUs kept busy on average, the median round's) and CPU per request over every round."""
    figure("wrk CPU share, floor runs", round(_median(floors, lambda load: load.share(load.generator_cpu)), 2), "CPUs")
    figure("wrk CPU share, webhook runs", round(_median(hooks, lambda load: load.share(load.generator_cpu)), 2), "CPUs")
    figure("server CPU share, floor runs", round(_median(floors, lambda load: load.share(load.server_cpu)), 2), "CPUs")
    figure("server CPU share, webhook runs", round(_median(hooks, lambda load: load.share(load.server_cpu)), 2), "CPUs")
    figure("PostgreSQL CPU share, webhook runs", round(_median(hooks, lambda load: load.share(load.database_cpu)), 2),
           "CPUs")
    figure("other processes' CPU share (noise), all runs",
           round(statistics.median(run.load.share(run.load.others_cpu) for run in floors + hooks), 2), "CPUs")
    floor_requests = sum(run.load.requests for run in floors)
    stored = sum(run.stored for run in hooks)
    figure("server CPU per floor request", round(sum(run.load.server_cpu for run in floors) / floor_requests * 1e3, 3),
           "ms")
    figure("server CPU per delivery", round(sum(run.load.server_cpu for run in hooks) / stored * 1e3, 3), "ms")
    figure("PostgreSQL CPU per delivery", round(sum(run.load.database_cpu for run in hooks) / stored * 1e3, 3), "ms")
    figure("wrk CPU per request", round(sum(run.load.generator_cpu for run in floors + hooks)
                                        / (floor_requests + stored) * 1e3, 3), "ms")
    figure("busiest gunicorn worker's part of the workers' CPU, median run",
           round(statistics.median(run.busiest_worker_share for run in floors + hooks), 2), "")


def _report(floors: list[Run], hooks: list[Run], ceiling: WrkResult, deliveries_per_commit: float | None) -> None:
    floor_rates = [run.load.per_second for run in floors]
    hook_rates = [run.load.per_second for run in hooks]
    ratios = [hook / floor for hook, floor in zip(hook_rates, floor_rates, strict=True)]
    floor_rate, hook_rate, ratio = (statistics.median(v) for v in (floor_rates, hook_rates, ratios))
    stored_once = all(run.stored_once for run in hooks)
    print(f"floor req/s {_spread(floor_rates)}; deliveries/s {_spread(hook_rates)}; ratio {_spread(ratios)}")
    print(f"generator ceiling {ceiling.per_second:,.0f} req/s = {ceiling.per_second / floor_rate:.1f} x floor "
          f"(wrk {ceiling.share(ceiling.generator_cpu):.2f} CPUs, the same requests to a server that does no work)")
    print(f"stored once: {'yes' if stored_once else 'no'}")
    if not stored_once:
        raise SystemExit("webhook requests failed or were not stored once: the figures would not mean anything")
    rounds = f"median of {len(floors)} rounds"
    figure(f"floor (trivial 200 view) requests/s, {rounds}", round(floor_rate, 1), "req/s")
    figure("floor requests/s spread", _spread(floor_rates), "req/s")
    figure(f"signed deliveries/s, {rounds}", round(hook_rate, 1), "req/s", f">= {floor_rate * TARGET_RATIO:.0f}")
    figure("signed deliveries/s spread", _spread(hook_rates), "req/s")
    figure(f"deliveries/s vs floor, {rounds}", round(ratio, 2), "x", f">= {TARGET_RATIO}")
    figure("deliveries/s vs floor spread", _spread(ratios), "x")
    figure("delivery p50 latency (median round)", round(_median(hooks, lambda load: load.latency_ms["p50"]), 1), "ms")
    figure("delivery p99 latency (median round)", round(_median(hooks, lambda load: load.latency_ms["p99"]), 1), "ms",
           f"< {TARGET_P99_MS:.0f}")
    figure("delivery p99 latency (worst round)", round(max(run.load.latency_ms["p99"] for run in hooks), 1), "ms",
           f"< {TARGET_P99_MS:.0f}")
    figure("floor p99 latency (median round)", round(_median(floors, lambda load: load.latency_ms["p99"]), 1), "ms")
    figure("stored once", "yes" if stored_once else "no", "", "yes")
    _cpu_figures(floors, hooks)
    figure("generator ceiling (same requests, no-work server)", round(ceiling.per_second, 1), "req/s")
    figure("generator ceiling vs floor", round(ceiling.per_second / floor_rate, 1), "x", ">= 2")
    if deliveries_per_commit:  # group commit: how many deliveries one database commit carried, on average
        figure("deliveries per database commit", round(deliveries_per_commit, 1), "")


def _measure(vendor: str, bench: Bench) -> None:
    warmup = bench.new_requests(2)
    try:
        bench.floor(warmup, 2)
        bench.webhooks(warmup, 2)
    finally:
        bench.drop(warmup)
    floors: list[Run] = []
    hooks: list[Run] = []
    commits_before = _database_commits(vendor)
    for number in range(bench.args.rounds):
        floor, hook = bench.round(number)
        floors.append(floor)
        hooks.append(hook)
        print(_describe_round(number, floor, hook), flush=True)
    commits = _database_commits(vendor) - commits_before
    ceiling = bench.ceiling()
    per_commit = sum(run.stored for run in hooks) / commits if commits else None
    _report(floors, hooks, ceiling, per_commit)


def _profile(args: argparse.Namespace, bench: Bench) -> None:
    """Webhook runs (a short one to warm up, then one of --seconds) under the profiling server."""
    warmup = bench.new_requests(2)
    try:
        bench.webhooks(warmup, 2)
    finally:
        bench.drop(warmup)
    prefix = bench.new_requests(args.seconds)
    try:
        run = bench.webhooks(prefix, args.seconds)
    finally:
        bench.drop(prefix)
    load = run.load
    print(f"profiled run: {load.per_second:,.0f} deliveries/s (the profiler slows the server: not a figure); "
          f"CPU per delivery: server {load.server_cpu / run.stored * 1000:.3f} ms, PostgreSQL "
          f"{load.database_cpu / run.stored * 1000:.3f} ms, wrk {load.generator_cpu / run.stored * 1000:.3f} ms")


def _print_profile(directory: Path, deliveries: int) -> None:
    """The workers' profiles merged into `directory`/intake.prof, and its heaviest functions, per delivery."""
    files = sorted(directory.glob("*.prof"))
    if not files:
        raise SystemExit(f"no profile was written to {directory}")
    stats = pstats.Stats(str(files[0]))
    for file in files[1:]:
        stats.add(str(file))
    merged = directory / "intake.prof"
    stats.dump_stats(str(merged))
    total = stats.total_tt  # type: ignore[attr-defined]
    print(f"request threads' CPU: {total / deliveries * 1000:.3f} ms per delivery (profiler's own cost included); "
          f"merged profile: {merged}")
    stats.sort_stats("cumulative").print_stats(45)
    stats.sort_stats("tottime").print_stats(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5, help="length of each measured wrk run")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, each measuring the floor and the webhooks")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (one drives far more than needed)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads per gunicorn worker (default: as deployed, oma.gunicorn_conf)")
    parser.add_argument("--profile", type=Path, help="profile one webhook run into this directory instead")
    parser.add_argument("--app", default="bench.webhooks:wsgi_app()",
                        help="the WSGI app gunicorn serves (a prototype to compare; it must serve the floor path too)")
    args = parser.parse_args()

    wrk_binary()  # before anything else: installed now, or the reason it cannot be
    vendor = setup_django("oma_bench_webhooks")
    # why: inside the function, the models are importable only once setup_django has run
    from django.db import connection

    from oma.stores.models import Store

    Store.objects.create(domain=SHOP, access_token="bench-token", client_secret=SECRET)
    templates = seed_sized_templates()
    sizes = [len(template) for template in templates]
    threads = args.threads or DEPLOYED_THREADS
    print(f"database: {vendor}; gunicorn gthread {args.workers}x{threads}; wrk {args.wrk_threads} thread, "
          f"{args.connections} connections; {args.rounds} rounds of {args.seconds} s per path; {os.cpu_count()} CPUs; "
          f"orders/update bodies of {statistics.mean(sizes):,.0f} bytes on average ({min(sizes):,} to "
          f"{max(sizes):,} bytes); load average {os.getloadavg()[0]:.2f} at the start", flush=True)
    scratch = Path(tempfile.mkdtemp(prefix="oma-bench-webhooks-"))
    extra_env = None
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        for old in args.profile.glob("*.prof"):
            old.unlink()
        extra_env = {PROFILE_ENV: str(args.profile.resolve())}
    try:
        with serving(args, scratch, extra_env) as server:
            database = str(connection.settings_dict["NAME"]) if vendor == "postgresql" else ""
            bench = Bench(args, server, scratch, SignedDeliveries(templates), database)
            if args.profile:
                _profile(args, bench)
            else:
                _measure(vendor, bench)
        if args.profile:  # the workers write their profiles as they exit; every profiled request was a delivery
            _print_profile(args.profile, stored_deliveries())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
