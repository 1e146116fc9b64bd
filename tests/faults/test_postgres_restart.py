"""PostgreSQL restarted while webhooks stream in.

The database is a private PostgreSQL cluster (initdb + pg_ctl on a free port, a copy of the test database), so it
can be stopped without touching the shared server. gunicorn, a Celery worker and beat run against it.

Checked: /healthz turns 503 naming the database while it is down and 200 after; deliveries that arrive during the
outage are refused with 503 (not acknowledged without being stored), so the sender sends them again; processing
interrupted by the stop is picked up again by the outbox; in the end every delivery is stored once and processed,
every order is at its newest version, and beat holds its lease again.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest
from django.db import connection

from oma.ops.models import BeatLease
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
from tests.faults.processes import PrivatePostgres, default_database_at
from tests.fixtures_celery import database_url_for_subprocesses, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def private_postgres(transactional_db) -> Iterator[PrivatePostgres]:
    """Set up before (so torn down after) the processes that use it."""
    cluster = PrivatePostgres().init()
    cluster.start()
    yield cluster
    cluster.destroy()


def test_postgres_restarted_under_load_loses_nothing_and_processes_nothing_twice(
    private_postgres, private_redis, app_env, gunicorn_factory, celery_worker_factory, beat_factory
):
    fast_schedule(**{"webhooks.dispatch_outbox": 2, "ops.heartbeat": 2})  # copied with the database
    private_postgres.create_database_from(database_url_for_subprocesses())
    env = {**app_env, "DATABASE_URL": private_postgres.url(), "OMA_WORKER_STALE_SECONDS": "60"}

    with default_database_at(host="127.0.0.1", port=private_postgres.port, name="oma"):
        store = webhook_store()
        web = gunicorn_factory(env=env, workers=2, threads=4)
        worker = celery_worker_factory(env=env, concurrency=2)
        beat_factory(env=env)
        healthz = f"{web.base_url}/healthz"
        wait_until(lambda: http_status(healthz)[0] == 200, timeout=90, interval=0.5,
                   what=f"a healthy stack: {http_status(healthz)[1]}")

        order_ids = [str(400_000 + n) for n in range(50)]
        deliveries = order_deliveries(order_ids, versions=4, seed=9)  # 200 distinct deliveries
        sender = GenstoreLikeSender(f"{web.base_url}/webhooks/genstore/", deliveries, concurrency=2,
                                    pace=0.03).start()
        wait_until(lambda: sender.done >= 60, timeout=60, what=f"the stream to be under way ({sender.answers})")

        private_postgres.stop("fast")  # connections cut, new ones refused
        stopped = time.monotonic()
        wait_until(lambda: http_status(healthz)[0] == 503, timeout=15, interval=0.2, what="/healthz to notice")
        noticed_in = time.monotonic() - stopped
        status, report = http_status(healthz)
        assert status == 503 and report["failing"] == ["database"], report
        time.sleep(3)  # deliveries keep coming while the database is down

        private_postgres.start()
        connection.close()  # this process's own connection died with the server
        restarted = time.monotonic()
        wait_until(lambda: http_status(healthz)[0] == 200, timeout=60, interval=0.3,
                   what=f"/healthz to recover: {http_status(healthz)[1]}")
        recovered_in = time.monotonic() - restarted
        sender.join()

        assert Counter(sender.final) == {200: len(deliveries)}, Counter(sender.final)
        refused = sum(n for status, n in sender.answers.items() if status != 200)
        assert refused > 0, "some deliveries must have met the outage (and been refused, not lost)"
        assert set(sender.answers) <= {200, 503, -1}, sender.answers  # refused as unavailable, never 4xx/500

        wait_until_processed(len(deliveries), timeout=120, worker_log=worker.log_tail())
        attempts = assert_stored_once_and_processed(len(deliveries))
        assert_orders_at_version(store, order_ids, 4)
        assert BeatLease.objects.get(name="beat").holder  # beat took its lease back
        print(f"\n/healthz 503 {noticed_in:.1f} s after PostgreSQL stopped, 200 {recovered_in:.1f} s after it "
              f"restarted; {refused} sends refused during the outage and sent again; processing attempts per "
              f"delivery {dict(attempts)}")
