from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import Client, override_settings

from oma.ops import metrics
from tests.fixtures_celery import (  # noqa: F401 (fixtures)
    RedisServer,
    celery_worker_factory,
    gunicorn_factory,
    private_redis,
)

OPERATOR_TOKEN = "ops-tests-metrics-token-0123456789"


@pytest.fixture
def client(settings) -> Client:
    """These tests are the operator's monitoring: the metrics token is configured and sent, so /metrics answers and
    /healthz shows its details (what anonymous callers see is tested in tests/security/test_disclosure_*)."""
    settings.OMA_METRICS_TOKEN = OPERATOR_TOKEN
    return Client(headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})


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
