from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import override_settings

from oma.ops import metrics
from tests.fixtures_celery import (  # noqa: F401 (fixtures)
    RedisServer,
    celery_worker_factory,
    gunicorn_factory,
    private_redis,
)


@pytest.fixture
def ops_redis(private_redis: RedisServer) -> Iterator[RedisServer]:  # noqa: F811
    """The app's Redis and broker are a private redis-server: counters start at zero, outages are ours to cause."""
    with override_settings(REDIS_URL=private_redis.url(), CELERY_BROKER_URL=private_redis.url(1)):
        metrics.counters.reset()
        yield private_redis
    metrics.counters.reset()


@pytest.fixture(autouse=True)
def _fresh_metrics_cache() -> Iterator[None]:
    metrics._cache = None
    yield
    metrics._cache = None
