"""GET /healthz: 200 when database, broker, beat and a worker are fine; 503 naming what is not."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from oma.ops.beat import lease_acquire_or_renew
from oma.ops.models import BeatLease, Heartbeat
from oma.ops.tasks import heartbeat

pytestmark = [pytest.mark.django_db, pytest.mark.redis]


@pytest.fixture
def alive() -> None:
    """Beat holds its lease and a worker ran the heartbeat task just now."""
    assert lease_acquire_or_renew(holder="test-beat", seconds=30)
    heartbeat()


def test_healthy_when_every_part_answers(client, ops_redis, alive) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok" and body["failing"] == []
    assert set(body["checks"]) == {"database", "broker", "beat", "worker"}
    assert "test-beat" in body["checks"]["beat"]["detail"]


def test_no_beat_ever_and_no_worker_heartbeat_are_failures(client, ops_redis) -> None:
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["beat", "worker"]
    assert response.json()["checks"]["beat"]["detail"] == "beat has never run"


def test_a_stale_beat_or_worker_turns_it_503(client, ops_redis, alive, settings) -> None:
    BeatLease.objects.update(renewed_at=timezone.now() - timedelta(seconds=61))
    response = client.get("/healthz")
    assert response.status_code == 503 and response.json()["failing"] == ["beat"]
    assert "stale after 60 s" in response.json()["checks"]["beat"]["detail"]

    lease_acquire_or_renew(holder="test-beat", seconds=30)
    Heartbeat.objects.update(beat_at=timezone.now() - timedelta(seconds=settings.OMA_WORKER_STALE_SECONDS + 1))
    assert client.get("/healthz").json()["failing"] == ["worker"]


def test_turns_503_within_seconds_of_redis_stopping_and_200_once_it_is_back(client, ops_redis, alive) -> None:
    assert client.get("/healthz").status_code == 200
    ops_redis.stop()
    started = time.monotonic()
    response = client.get("/healthz")
    answered_in = time.monotonic() - started
    assert response.status_code == 503
    assert response.json()["failing"] == ["broker"]
    assert "Connection" in response.json()["checks"]["broker"]["detail"]
    assert answered_in < 5  # a bound, not a speed target: a dead broker must never hang the check

    ops_redis.start()
    assert client.get("/healthz").status_code == 200


def test_liveness_needs_nothing(client, ops_redis) -> None:
    assert client.get("/healthz/live").status_code == 200


def test_healthz_and_metrics_are_served_over_plain_http_in_production(client, ops_redis, alive, settings) -> None:
    """The HTTPS redirect exempts them: probes and scrapers inside the private network use plain HTTP."""
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.get("/admin/login/").status_code == 301
