"""Redis (the broker and the app's Redis) stopped and restarted while webhooks stream in.

The production shape on a private redis-server: gunicorn, a Celery worker and beat (its outbox entry every 2 s).
Redis is SIGKILLed mid-stream (losing every message it held) and started again, empty, a few seconds later.

Checked: /healthz turns 503 naming the broker within seconds of the stop and 200 again after the restart; every
delivery is answered 200 throughout (stored first, enqueued after); once Redis is back the worker reconnects, the
outbox re-enqueues what was lost, and every delivery is processed exactly once, leaving every order at its newest
version. /metrics keeps answering through the outage.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from tests.faults.conftest import fast_schedule
from tests.faults.load import (
    GenstoreLikeSender,
    assert_orders_at_version,
    assert_stored_once_and_processed,
    http_status,
    order_deliveries,
    wait_until_processed,
    webhook_store,
)
from tests.fixtures_celery import wait_until
from webhooks.models import WebhookDelivery

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.redis]


def test_redis_stopped_and_restarted_under_load_loses_nothing_and_processes_nothing_twice(
    transactional_db, private_redis, app_env, gunicorn_factory, celery_worker_factory, beat_factory
):
    fast_schedule(**{"webhooks.dispatch_outbox": 2, "ops.heartbeat": 2})
    store = webhook_store()
    env = {**app_env, "OMA_WORKER_STALE_SECONDS": "60"}
    web = gunicorn_factory(env=env, workers=2, threads=4)
    worker = celery_worker_factory(env=env, concurrency=2)
    beat_factory(env=env)
    healthz = f"{web.base_url}/healthz"
    wait_until(lambda: http_status(healthz)[0] == 200, timeout=90, interval=0.5, what=f"a healthy stack: "
               f"{http_status(healthz)[1]}")

    order_ids = [str(300_000 + n) for n in range(60)]
    deliveries = order_deliveries(order_ids, versions=4, seed=5)  # 240 distinct deliveries
    sender = GenstoreLikeSender(f"{web.base_url}/webhooks/genstore/", deliveries, concurrency=2, pace=0.03).start()
    wait_until(lambda: sender.done >= 60, timeout=60, what="the stream to be under way")

    private_redis.stop()
    stopped = time.monotonic()
    wait_until(lambda: http_status(healthz)[0] == 503, timeout=15, interval=0.2, what="/healthz to notice")
    noticed_in = time.monotonic() - stopped
    status, report = http_status(healthz)
    assert (status, report["failing"]) == (503, ["broker"]), report
    assert http_status(f"{web.base_url}/metrics")[0] == 200  # metrics still answer, without the broker's part
    time.sleep(3)  # the stream goes on against a dead broker
    answered_during_outage = sender.done

    private_redis.start()  # the same port, empty: whatever it held is gone
    restarted = time.monotonic()
    wait_until(lambda: http_status(healthz)[0] == 200, timeout=60, interval=0.2, what="/healthz to recover")
    recovered_in = time.monotonic() - restarted
    sender.join()

    assert Counter(sender.final) == {200: len(deliveries)}
    assert sender.answers.keys() == {200}, sender.answers  # never refused, not even during the outage
    assert answered_during_outage < len(deliveries), "the stream must outlast the outage"
    wait_until_processed(len(deliveries), timeout=120, worker_log=worker.log_tail())
    attempts = assert_stored_once_and_processed(len(deliveries))
    assert attempts == {1: len(deliveries)}, f"a delivery was processed twice: {attempts}"
    assert_orders_at_version(store, order_ids, 4)
    redispatched = WebhookDelivery.objects.filter(dispatch_count__gt=0).count()
    assert redispatched > 0  # the outbox did the catching up for what Redis lost

    metrics = http_status(f"{web.base_url}/metrics")
    assert metrics[0] == 200
    print(f"\n/healthz 503 {noticed_in:.1f} s after Redis stopped, 200 {recovered_in:.1f} s after it restarted; "
          f"{answered_during_outage} of {len(deliveries)} answered by the end of the outage; "
          f"{redispatched} re-enqueued by the outbox")
