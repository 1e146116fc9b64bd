"""The fault battery: real processes (gunicorn, Celery workers and beat, redis-server, a PostgreSQL cluster) and
real faults (SIGKILL, a broker or database stopped mid-load, storms of 429 and 503, a carrier down, two beats).

Each test builds the production shape it needs on private servers (a redis-server of its own; for the database
restart, a PostgreSQL cluster of its own): the shared 6379 and 5432 are never stopped. Every scenario ends by
checking that nothing was lost and nothing was done twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from oma.ops import metrics
from tests.faults.processes import BeatProcess, celery_app_publishing_to
from tests.fixtures_celery import (  # noqa: F401 (fixtures)
    RedisServer,
    celery_worker_factory,
    gunicorn_factory,
    private_redis,
    subprocess_env,
)


@pytest.fixture
def broker(private_redis: RedisServer) -> Iterator[str]:  # noqa: F811
    """The private Redis is the broker (db 0) and the app's Redis (db 1); this process publishes there too."""
    with celery_app_publishing_to(private_redis.url()):
        yield private_redis.url()


@pytest.fixture
def app_env(broker: str, private_redis: RedisServer) -> dict[str, str]:  # noqa: F811
    """Environment for the subprocesses: the test database, the private broker and Redis, short fault timers."""
    return subprocess_env(broker_url=broker, extra={
        "REDIS_URL": private_redis.url(1),
        "LOG_LEVEL": "WARNING",
        "OMA_METRICS_PUBLIC": "1",  # the battery scrapes /metrics as a scraper on a private network would
        "OMA_BEAT_LEASE_SECONDS": "4",
        "OMA_WEBHOOK_REDISPATCH_SECONDS": "3",
        "OMA_WEBHOOK_LEASE_SECONDS": "5",
        "TRACKING_CLAIM_LEASE_SECONDS": "5",
        "TRACKING_BACKOFF_BASE_SECONDS": "2",
        "TRACKING_BACKOFF_MAX_SECONDS": "4",
    })


@pytest.fixture(autouse=True)
def _public_metrics(settings) -> None:
    """In-process scrapes (`Client().get("/metrics")`) too: /metrics needs a token unless made public."""
    settings.OMA_METRICS_PUBLIC = True


@pytest.fixture
def beat_factory(tmp_path: Path) -> Iterator[Callable[..., BeatProcess]]:
    beats: list[BeatProcess] = []

    def start(*, env: dict[str, str]) -> BeatProcess:
        beat = BeatProcess(env=env, log_path=tmp_path / f"beat-{len(beats)}.log").start()
        beats.append(beat)
        return beat

    yield start
    for beat in beats:
        beat.stop()


@pytest.fixture
def counters_in(private_redis: RedisServer, settings) -> Iterator[None]:  # noqa: F811
    """This process reads (and scrapes) the counters the subprocesses write to the private Redis."""
    settings.REDIS_URL = private_redis.url(1)
    metrics._cache = None
    yield
    metrics._cache = None


def fast_schedule(**every: int) -> None:
    """Beat runs the named tasks every N seconds (instead of every minute) and nothing else: a test's minutes."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask, PeriodicTasks

    PeriodicTask.objects.update(enabled=False)
    for task, seconds in every.items():
        interval, _ = IntervalSchedule.objects.get_or_create(every=seconds, period=IntervalSchedule.SECONDS)
        updated = PeriodicTask.objects.filter(task=task).update(
            interval=interval, crontab=None, enabled=True, expire_seconds=max(1, seconds - 1), last_run_at=None
        )
        assert updated, f"no beat entry for {task}"
    PeriodicTasks.update_changed()

