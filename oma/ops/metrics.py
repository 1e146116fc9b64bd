"""Prometheus metrics: event counters shared by every process through Redis, gauges read from the database.

Counters (webhook answers, rejection reasons, upstream 429s and 5xx) happen in many processes at once (gunicorn
workers, Celery pool children on several hosts), so they are kept in one Redis hash (`HINCRBY`, atomic) rather
than in process memory; a scrape of any web process sees them all. Each process counts in memory and adds its
counts to the hash at most a second later, from a timer thread, so counting costs a request no Redis call. Without
REDIS_URL (the embedded `make run`), they stay in process memory and a scrape sees those of the process that
serves it. During a Redis outage counts wait in memory and are added when it is back: counting never raises and
never waits (see `_CounterStore`).

Everything else is computed from the database at scrape time (the database is the truth: deliveries waiting,
sweep drift, shipments due per carrier, pushes by state) and from the broker (queue depth). A scrape is cached for
OMA_METRICS_CACHE_SECONDS in each process, so an eager scraper cannot load the database.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache
from typing import Any

import redis
import requests
from django.conf import settings
from django.db import connection
from django.db.models import Avg, Count, F, Max, Min, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone
from redis.backoff import NoBackoff
from redis.retry import Retry

from oma.fulfillment.models import FulfillmentPush
from oma.ops.health import broker_queue_depths, run_checks
from oma.orders.models import SyncRun
from oma.stores.models import Store
from tracking.models import CarrierAccount, Shipment
from webhooks.models import WebhookDelivery

logger = logging.getLogger(__name__)

COUNTERS_KEY = "oma:ops:counters"
# After a failed Redis call, counting stays in memory this long before Redis is tried again (no per-event waits).
_REDIS_RETRY_SECONDS = 5.0
# Counts reach the shared hash this long after they happen, at most: one Redis call per process and second.
_FLUSH_SECONDS = 1.0

COUNTER_HELP: dict[str, str] = {
    "oma_webhook_requests_total": "Genstore webhook POSTs answered, by outcome (accepted, duplicate, ignored, "
    "rejected, unavailable).",
    "oma_webhooks_rejected_total": "Genstore webhook POSTs refused, by reason.",
    "oma_channel_webhook_requests_total": "Channel (Standard Webhooks) POSTs answered, by HTTP status.",
    "oma_upstream_rate_limited_total": "429 answers received from outbound APIs (Genstore, carriers, ShipStation), "
    "by host.",
    "oma_upstream_server_errors_total": "5xx answers received from outbound APIs, by host and status.",
}


@lru_cache(maxsize=1024)
def _field(name: str, labels: tuple[tuple[str, str], ...]) -> str:
    """The hash field of one counter: its name and sorted labels as JSON (labels have few distinct values)."""
    return json.dumps([name, labels], separators=(",", ":"))


def _unfield(text: str) -> tuple[str, dict[str, str]]:
    name, labels = json.loads(text)
    return name, dict(labels)


@lru_cache(maxsize=4)
def _counter_client(url: str) -> Any:
    # Counting sits in request and task paths: one quick attempt, never redis-py's default retries with backoff.
    return redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))


class _CounterStore:
    """Counters kept in memory and added to the Redis hash at most every _FLUSH_SECONDS (by a timer thread), so a
    request never waits for Redis; a scrape sees the hash plus what this process has not flushed yet."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local: Counter[str] = Counter()  # not yet in Redis (no Redis, Redis unreachable, or not yet flushed)
        self._redis_down_until = 0.0
        self._timer: threading.Timer | None = None
        self._timer_pid = 0

    def _redis(self) -> Any:
        url = settings.REDIS_URL
        return _counter_client(url) if url else None

    def increment(self, name: str, labels: dict[str, str], amount: int = 1) -> None:
        key = _field(name, tuple(sorted(labels.items())))
        with self._lock:
            self._local[key] += amount
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        """(Under the lock.) A flush in _FLUSH_SECONDS, unless one is due already in this process."""
        if self._timer is not None and self._timer_pid == os.getpid():
            return
        if not settings.REDIS_URL:
            return  # memory is where the counters live
        delay = max(_FLUSH_SECONDS, self._redis_down_until - time.monotonic())
        if self._timer_pid != os.getpid():
            atexit.register(self.flush)  # what the last second counted, when the process ends normally
        self._timer = threading.Timer(delay, self._timed_flush)
        self._timer.daemon = True
        self._timer_pid = os.getpid()
        self._timer.start()

    def _timed_flush(self) -> None:
        with self._lock:
            self._timer = None
        self.flush()

    def flush(self) -> None:
        """Add what this process counted to Redis; on a Redis failure keep it, and try again after a pause."""
        client = self._redis()
        if client is None or time.monotonic() < self._redis_down_until:
            with self._lock:
                if self._local:
                    self._schedule_flush()
            return
        with self._lock:
            pending, self._local = self._local, Counter()
        if not pending:
            return
        try:
            pipe = client.pipeline(transaction=False)
            for key, amount in pending.items():
                pipe.hincrby(COUNTERS_KEY, key, amount)
            pipe.execute()
        except Exception as exc:  # any Redis failure: keep counting in memory, never fail or hold up a caller
            with self._lock:
                self._local.update(pending)
                self._redis_down_until = time.monotonic() + _REDIS_RETRY_SECONDS
                self._schedule_flush()
            logger.warning("metrics: Redis unavailable for counters (%s); counting in memory meanwhile", exc)

    def read(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], int]:
        totals: Counter[str] = Counter()
        client = self._redis()
        if client is not None and time.monotonic() >= self._redis_down_until:
            try:
                totals.update({k.decode() if isinstance(k, bytes) else k: int(v)
                               for k, v in client.hgetall(COUNTERS_KEY).items()})
            except Exception as exc:
                logger.warning("metrics: cannot read counters from Redis: %s", exc)
        with self._lock:
            totals.update(self._local)
        result = {}
        for key, value in totals.items():
            name, labels = _unfield(key)
            result[(name, tuple(sorted(labels.items())))] = value
        return result

    def reset(self) -> None:
        """Tests only."""
        with self._lock:
            self._local.clear()
            self._redis_down_until = 0.0
        client = self._redis()
        if client is not None:
            client.delete(COUNTERS_KEY)


counters = _CounterStore()


def count(name: str, amount: int = 1, **labels: str) -> None:
    """Add to a counter (a name of COUNTER_HELP); labels must have few distinct values."""
    counters.increment(name, {k: str(v)[:100] for k, v in labels.items()}, amount)


def count_upstream_response(*, host: str, status: int) -> None:
    if status == 429:
        count("oma_upstream_rate_limited_total", host=host)
    else:
        count("oma_upstream_server_errors_total", host=host, status=str(status))


def observe_upstream_response(host: str, outcome: int | requests.RequestException) -> None:
    """oma.core.outbound's response observer (registered in OpsConfig.ready): every 429 and 5xx answer of every
    outbound API (Genstore, carriers, ShipStation) is counted per host, whichever client sent the request."""
    if isinstance(outcome, int) and (outcome == 429 or outcome >= 500):
        count_upstream_response(host=host, status=outcome)


# --- exposition -------------------------------------------------------------------------------------------------


@dataclass
class Family:
    name: str
    kind: str  # counter | gauge
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float, **labels: Any) -> Family:
        self.samples.append(({k: str(v) for k, v in labels.items()}, float(value)))
        return self


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _number(value: float) -> str:
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    return repr(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(value)


def render(families: Iterable[Family]) -> str:
    """Prometheus text exposition format 0.0.4."""
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {family.help.replace(chr(10), ' ')}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for labels, value in family.samples:
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
            lines.append(f"{family.name}{{{label_text}}} {_number(value)}" if label_text
                         else f"{family.name} {_number(value)}")
    return "\n".join(lines) + "\n"


# --- collectors -------------------------------------------------------------------------------------------------


def collect_counters() -> list[Family]:
    families = {name: Family(name, "counter", help_text) for name, help_text in COUNTER_HELP.items()}
    for (name, labels), value in sorted(counters.read().items()):
        family = families.get(name)
        if family is not None:
            family.add(value, **dict(labels))
    return list(families.values())


def collect_webhooks() -> list[Family]:
    now = timezone.now()
    State = WebhookDelivery.State
    waiting = Family("oma_webhook_deliveries_unfinished", "gauge",
                     "Stored deliveries not processed yet, by state (received, processing, retrying).")
    by_state = dict(
        WebhookDelivery.objects.filter(state__in=WebhookDelivery.UNFINISHED_STATES)
        .values_list("state").annotate(n=Count("pk"))
    )
    for state in WebhookDelivery.UNFINISHED_STATES:
        waiting.add(by_state.get(state, 0), state=state)
    failed = Family("oma_webhook_deliveries_failed", "gauge", "Deliveries that gave up (replayable in admin).").add(
        WebhookDelivery.objects.filter(state=State.FAILED).count()
    )
    oldest = WebhookDelivery.objects.filter(state__in=WebhookDelivery.UNFINISHED_STATES).aggregate(
        oldest=Min("received_at")
    )["oldest"]
    oldest_age = Family("oma_webhook_oldest_unfinished_age_seconds", "gauge",
                        "Age of the oldest delivery still waiting for processing (0 when none).").add(
        (now - oldest).total_seconds() if oldest else 0
    )
    window = settings.OMA_METRICS_LAG_WINDOW_SECONDS
    recent = WebhookDelivery.objects.filter(
        state=State.PROCESSED, processed_at__isnull=False, received_at__gte=now - timedelta(seconds=window)
    ).annotate(lag=F("processed_at") - F("received_at"))
    lag = recent.aggregate(avg=Avg("lag"), max=Max("lag"), n=Count("pk"))
    processing_lag = Family(
        "oma_webhook_processing_lag_seconds", "gauge",
        f"Receipt to processed, over the deliveries received in the last {window} s (avg and max).",
    )
    processing_lag.add(lag["avg"].total_seconds() if lag["avg"] else 0, stat="avg")
    processing_lag.add(lag["max"].total_seconds() if lag["max"] else 0, stat="max")
    processed = Family("oma_webhook_processed_recent", "gauge",
                       f"Deliveries received in the last {window} s and processed.").add(lag["n"])
    return [waiting, failed, oldest_age, processing_lag, processed]


def collect_sweeps() -> list[Family]:
    now = timezone.now()
    drift = Family("oma_sweep_drift_orders", "gauge",
                   "Orders the last successful incremental sweep had to create or update: what webhooks missed.")
    age = Family("oma_sweep_last_success_age_seconds", "gauge",
                 "Seconds since the start of the last successful sweep, by store and kind.")
    running = Family("oma_sweeps_running", "gauge", "Sweeps in progress.")

    def last(kind: str) -> QuerySet[SyncRun]:
        return SyncRun.objects.filter(store_id=OuterRef("pk"), kind=kind, state=SyncRun.State.SUCCEEDED).order_by(
            "-started_at"
        )

    incremental, full = last(SyncRun.Kind.INCREMENTAL), last(SyncRun.Kind.FULL)
    stores = Store.objects.filter(is_active=True).annotate(
        incremental_at=Subquery(incremental.values("started_at")[:1]),
        incremental_drift=Subquery(incremental.annotate(drift=F("created") + F("updated")).values("drift")[:1]),
        full_at=Subquery(full.values("started_at")[:1]),
    ).values("domain", "incremental_at", "incremental_drift", "full_at")
    for store in stores:
        if store["incremental_at"] is not None:
            age.add((now - store["incremental_at"]).total_seconds(), store=store["domain"], kind="incremental")
            drift.add(store["incremental_drift"] or 0, store=store["domain"])
        if store["full_at"] is not None:
            age.add((now - store["full_at"]).total_seconds(), store=store["domain"], kind="full")
    running.add(SyncRun.objects.filter(state=SyncRun.State.RUNNING).count())
    return [drift, age, running]


def collect_tracking() -> list[Family]:
    now = timezone.now()
    due = Family("oma_shipments_due", "gauge", "Shipments whose next carrier poll is due, by carrier.")
    lag = Family("oma_shipments_polling_lag_seconds", "gauge",
                 "How overdue the most overdue shipment's poll is, by carrier (0 when none is due).")
    for row in (
        Shipment.objects.filter(next_poll_at__lte=now)
        .values("carrier").annotate(n=Count("pk"), oldest=Min("next_poll_at")).order_by("carrier")
    ):
        carrier = row["carrier"] or "unknown"
        due.add(row["n"], carrier=carrier)
        lag.add((now - row["oldest"]).total_seconds(), carrier=carrier)
    backed_off = Family("oma_carrier_accounts_backed_off", "gauge",
                        "Active carrier accounts resting after failures, by carrier.")
    for account_row in (
        CarrierAccount.objects.filter(is_active=True, backoff_until__gt=now)
        .values("carrier").annotate(n=Count("pk")).order_by("carrier")
    ):
        backed_off.add(account_row["n"], carrier=account_row["carrier"])
    return [due, lag, backed_off]


def collect_pushes() -> list[Family]:
    pushes = Family("oma_fulfillment_pushes", "gauge",
                    "Fulfillment pushes to Genstore by state (succeeded: done; failed: gave up, needs a person).")
    by_state = dict(FulfillmentPush.objects.values_list("state").annotate(n=Count("pk")).order_by())
    for state in FulfillmentPush.State.values:
        pushes.add(by_state.get(state, 0), state=state)
    due = Family("oma_fulfillment_pushes_due", "gauge", "Pending pushes whose next attempt is due now.").add(
        FulfillmentPush.objects.filter(
            Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=timezone.now()),
            state=FulfillmentPush.State.PENDING,
        ).count()
    )
    return [pushes, due]


def collect_queue() -> list[Family]:
    depth = Family("oma_celery_queue_depth", "gauge", "Messages waiting in the broker, by queue.")
    unacked = Family("oma_celery_unacked_messages", "gauge",
                     "Messages handed to workers and not acknowledged yet (running or prefetched).")
    depths, reserved = broker_queue_depths()
    for queue, value in sorted(depths.items()):
        depth.add(value, queue=queue)
    if reserved is not None:
        unacked.add(reserved)
    return [depth, unacked]


def collect_health() -> list[Family]:
    report = run_checks()
    ok = Family("oma_health_check_ok", "gauge", "1 when the /healthz check passes, 0 when it fails.")
    for check in report.checks:
        ok.add(1 if check.ok else 0, check=check.name)
    ages = Family("oma_heartbeat_age_seconds", "gauge", "Seconds since beat renewed its lease / a worker ran the "
                  "heartbeat task.")
    for name, value in report.heartbeat_ages.items():
        if value is not None:
            ages.add(value, role=name)
    return [ok, ages]


COLLECTORS: dict[str, Callable[[], list[Family]]] = {
    "counters": collect_counters,
    "webhooks": collect_webhooks,
    "sweeps": collect_sweeps,
    "tracking": collect_tracking,
    "pushes": collect_pushes,
    "queue": collect_queue,
    "health": collect_health,
}

_cache_lock = threading.Lock()
_cache: tuple[float, str] | None = None


def metrics_text(*, use_cache: bool = True) -> str:
    """The whole exposition; a collector that fails (database or Redis down) is reported, the others still are."""
    global _cache
    ttl = float(settings.OMA_METRICS_CACHE_SECONDS)
    with _cache_lock:
        if use_cache and _cache is not None and time.monotonic() - _cache[0] < ttl:
            return _cache[1]
        started = time.monotonic()
        families: list[Family] = []
        errors = Family("oma_metrics_collector_up", "gauge", "1 when a collector could read its source, else 0.")
        for name, collector in COLLECTORS.items():
            try:
                families.extend(collector())
                errors.add(1, collector=name)
            except Exception as exc:
                logger.warning("metrics: collector %s failed: %s", name, exc)
                errors.add(0, collector=name)
                _close_broken_connection()
        families.append(errors)
        families.append(Family("oma_metrics_scrape_seconds", "gauge", "Time to compute this scrape.").add(
            time.monotonic() - started
        ))
        text = render(families)
        _cache = (time.monotonic(), text)
        return text


def _close_broken_connection() -> None:
    try:
        if connection.connection is not None and not connection.is_usable():
            connection.close()
    except Exception:
        connection.close()
