"""Health checks for /healthz: the database, the broker, beat and the workers, each answered within seconds.

* database: `SELECT 1` on the default connection (a broken connection is closed, so the next check reconnects).
* broker: a PING to the Redis broker with one-second timeouts (or the filesystem broker's folder is writable).
* beat: the beat lease (oma.ops.beat) was renewed within OMA_BEAT_STALE_SECONDS; beat renews it on every tick.
* worker: a worker ran the `ops.heartbeat` task (sent by beat every 30 s) within OMA_WORKER_STALE_SECONDS: beat,
  broker and at least one worker all work.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import redis
from celery import current_app as app
from django.conf import settings
from django.db import connection
from django.utils import timezone
from kombu import Connection
from redis.backoff import NoBackoff
from redis.retry import Retry

from oma.ops.models import BeatLease, Heartbeat
from oma.ops.redaction import redact

BEAT_LEASE_NAME = "beat"
WORKER_HEARTBEAT_NAME = "worker"


def beat_stale_seconds() -> float:
    return float(settings.OMA_BEAT_STALE_SECONDS)


def worker_stale_seconds() -> float:
    return float(settings.OMA_WORKER_STALE_SECONDS)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    seconds: float = 0.0


@dataclass
class HealthReport:
    checks: list[Check]
    heartbeat_ages: dict[str, float | None] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def failing(self) -> list[str]:
        return [check.name for check in self.checks if not check.ok]

    def summary(self) -> dict[str, Any]:
        """What anyone may see: the overall status and the names of the failing parts, no details."""
        return {"status": "ok" if self.ok else "failing", "failing": self.failing}

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "checks": {
                check.name: {"ok": check.ok, "detail": check.detail, "seconds": round(check.seconds, 3)}
                for check in self.checks
            },
        }


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return redact(f"{type(exc).__name__}: {text}"[:300])


def _timed(name: str, probe: Any) -> Check:
    started = time.monotonic()
    try:
        ok, detail = probe()
    except Exception as exc:
        ok, detail = False, _error_text(exc)
    return Check(name=name, ok=ok, detail=detail, seconds=time.monotonic() - started)


def _probe_database() -> tuple[bool, str]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception:
        # The connection may be dead (server restarted): drop it so the next request opens a new one.
        connection.close()
        raise
    return True, connection.vendor


@lru_cache(maxsize=4)
def _broker_redis(url: str) -> Any:
    # One attempt, short timeouts: a health check must answer within seconds, never hang on a dead broker.
    return redis.Redis.from_url(
        url, socket_timeout=1.0, socket_connect_timeout=1.0, retry=Retry(NoBackoff(), 0), health_check_interval=0
    )


def _broker_url() -> str:
    return str(settings.CELERY_BROKER_URL or "")


def _filesystem_folder() -> Path | None:
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    folder = options.get("data_folder_in")
    return Path(folder) if folder else None


def _probe_broker() -> tuple[bool, str]:
    url = _broker_url()
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("redis", "rediss"):
        _broker_redis(url).ping()
        return True, "redis"
    if scheme == "filesystem":
        folder = _filesystem_folder()
        if folder is None:
            return False, "filesystem broker without data_folder_in"
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):
            return False, f"filesystem broker folder {folder} is not writable"
        return True, "filesystem"
    if scheme == "memory":
        return True, "memory (tests)"

    with Connection(url, connect_timeout=2) as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
    return True, scheme


def _heartbeat_age(*, lease: bool) -> tuple[float | None, str]:
    now = timezone.now()
    if lease:
        row = BeatLease.objects.filter(name=BEAT_LEASE_NAME).values("renewed_at", "holder").first()
        if row is None or row["renewed_at"] is None:
            return None, "beat has never run"
        return (now - row["renewed_at"]).total_seconds(), f"held by {row['holder'] or 'nobody'}"
    heartbeat = Heartbeat.objects.filter(name=WORKER_HEARTBEAT_NAME).values("beat_at", "detail").first()
    if heartbeat is None:
        return None, "no worker has run the heartbeat task yet"
    return (now - heartbeat["beat_at"]).total_seconds(), heartbeat["detail"]


def run_checks() -> HealthReport:
    """Every check; beat and worker are judged only when the database (where their heartbeats live) answers."""
    database = _timed("database", _probe_database)
    broker = _timed("broker", _probe_broker)
    checks = [database, broker]
    ages: dict[str, float | None] = {"beat": None, "worker": None}
    if not database.ok:
        checks.append(Check("beat", True, "not checked: the database is unavailable"))
        checks.append(Check("worker", True, "not checked: the database is unavailable"))
        return HealthReport(checks=checks, heartbeat_ages=ages)
    for role, lease, limit in (("beat", True, beat_stale_seconds()), ("worker", False, worker_stale_seconds())):
        started = time.monotonic()
        try:
            age, holder = _heartbeat_age(lease=lease)
        except Exception as exc:
            checks.append(Check(role, False, _error_text(exc), time.monotonic() - started))
            continue
        ages[role] = age
        if age is None:
            checks.append(Check(role, False, holder, time.monotonic() - started))
        else:
            ok = age <= limit
            detail = f"last heartbeat {age:.0f} s ago ({holder})" + ("" if ok else f"; stale after {limit:.0f} s")
            checks.append(Check(role, ok, detail, time.monotonic() - started))
    return HealthReport(checks=checks, heartbeat_ages=ages)


def broker_queue_depths() -> tuple[dict[str, int], int | None]:
    """Messages waiting per queue, and messages reserved by workers but not acknowledged (Redis only)."""
    url = _broker_url()
    scheme = url.split("://", 1)[0].lower()
    queues = {app.conf.task_default_queue or "celery"}
    for queue in app.conf.task_queues or ():
        queues.add(getattr(queue, "name", str(queue)))
    if scheme in ("redis", "rediss"):
        options = app.conf.broker_transport_options or {}
        separator = options.get("sep", "\x06\x16")
        steps = options.get("priority_steps", [0, 3, 6, 9])
        prefix = options.get("global_keyprefix", "")
        client = _broker_redis(url)
        pipe = client.pipeline(transaction=False)
        names = sorted(queues)
        for queue in names:
            for step in steps:
                pipe.llen(f"{prefix}{queue}{separator}{step}" if step else f"{prefix}{queue}")
        pipe.hlen(f"{prefix}{options.get('unacked_key', 'unacked')}")
        results = pipe.execute()
        depths = {queue: sum(results[i * len(steps):(i + 1) * len(steps)]) for i, queue in enumerate(names)}
        return depths, int(results[-1])
    if scheme == "filesystem":
        folder = _filesystem_folder()
        depths = dict.fromkeys(queues, 0)
        if folder is not None and folder.exists():
            for entry in folder.iterdir():
                parts = entry.name.split(".")
                if len(parts) >= 3 and parts[-1] == "msg" and parts[-2] in depths:
                    depths[parts[-2]] += 1
        return depths, None
    return {}, None
