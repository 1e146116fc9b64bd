"""Queues per workload (settings.CELERY_TASK_ROUTES): every OMA task is routed by name to the queue of its kind,
and a long import on the `imports` queue does not hold back webhook processing (real workers, a real broker)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import ModelEntry

from oma.celery import BEAT_SCHEDULE, app
from oma.channels.csv_import import tracking_csv_import
from oma.channels.models import CsvImport
from oma.core.beat import beat_schedule_sync
from oma.orders.services import orders_upsert_page
from oma.stores.models import Store
from tests.channels.conftest import order_record
from tests.channels.test_csv_import import row, to_csv
from tests.faults.processes import celery_app_publishing_to
from tests.fixtures_celery import CeleryWorker, RedisServer, subprocess_env, wait_until
from tests.webhooks.payloads import encode, order_json
from webhooks.dispatch import deliveries_publish
from webhooks.models import WebhookDelivery
from webhooks.receive import delivery_content_sha256

DEFAULT_QUEUE = "celery"
WORKLOAD_QUEUES = {"webhooks", "pushes", "polls", "sweeps", "imports"}


def _project_tasks() -> list[str]:
    app.loader.import_default_modules()  # what a worker imports at start: every app's tasks module
    return sorted(name for name, task in app.tasks.items()
                  if task.__module__.split(".")[0] in ("oma", "tracking", "webhooks"))


def _queue_of(task_name: str) -> str:
    return app.amqp.router.route({}, task_name)["queue"].name


def test_the_queue_list_is_defined_once_and_celery_stays_the_default():
    assert set(settings.OMA_CELERY_QUEUES) == {DEFAULT_QUEUE} | WORKLOAD_QUEUES
    assert app.conf.task_default_queue == DEFAULT_QUEUE
    # A worker started without -Q consumes all of them (compose's single worker, the test workers).
    assert set(app.amqp.queues) == set(settings.OMA_CELERY_QUEUES)


def test_every_oma_task_is_routed_by_name_to_the_queue_of_its_workload():
    tasks = _project_tasks()
    assert len(tasks) >= 20
    unrouted = [name for name in tasks if name not in settings.CELERY_TASK_ROUTES]
    assert unrouted == [], "route each new task to its workload's queue in settings._TASKS_BY_QUEUE"
    queues = {name: _queue_of(name) for name in tasks}
    assert set(queues.values()) <= set(settings.OMA_CELERY_QUEUES)
    # The default queue carries only the heartbeat (which proves a worker consumes it); work has a queue of its kind.
    assert [name for name, queue in queues.items() if queue == DEFAULT_QUEUE] == ["ops.heartbeat"]
    assert queues["webhooks.process_deliveries"] == "webhooks"
    assert queues["fulfillment.push_shipment"] == "pushes"
    assert queues["tracking.poll_due"] == "polls" and queues["channels.poll_channel"] == "polls"
    assert queues["orders.sweep_store"] == "sweeps"
    assert queues["channels.import_queued_csv"] == "imports"
    assert _queue_of("celery.chord_unlock") == DEFAULT_QUEUE  # anything unrouted


@pytest.mark.django_db
def test_beat_sends_its_entries_by_name_so_they_take_their_tasks_routes():
    beat_schedule_sync()
    for entry in BEAT_SCHEDULE.values():
        assert entry["task"] in settings.CELERY_TASK_ROUTES
    for task in PeriodicTask.objects.filter(task__in=[entry["task"] for entry in BEAT_SCHEDULE.values()]):
        # No queue of its own on the beat entry: the route by task name decides.
        assert "queue" not in ModelEntry(task, app=app).options, task.name


# --- acceptance: a long import does not delay webhook processing ----------------------------------------------

SHOP = "queues.genmystore.com"
# The figure is a 100,000-row import. What matters is that an import holds its worker for the whole webhook
# batch, which a file of 5,000 rows matching mirrored orders does (about 6 s here since imports write in batches,
# against 1.5 to 2 s for the batch; the test checks it was still running when the batch was done) in a suite-sized
# run. The import does the same work per row whatever the file's length.
IMPORT_ROWS = 5000


def _store_deliveries(store: Store, order_ids: list[str]) -> list[int]:
    """Authentic orders/create deliveries as the web process stores them (received, processing not yet published)."""
    now = timezone.now()
    rows = []
    for order_id in order_ids:
        body = encode(order_json(order_id))
        sha = delivery_content_sha256(topic="orders/create", body=body)
        rows.append(WebhookDelivery(
            store=store, shop_domain=store.domain, topic="orders/create", webhook_id=f"wh-{order_id}",
            dedupe_key=f"wh-{order_id}", content_sha256=sha, resource_id=order_id, body=body.decode(),
            received_at=now, state=WebhookDelivery.State.RECEIVED, next_dispatch_at=now + timedelta(hours=1),
        ))
    return [delivery.pk for delivery in WebhookDelivery.objects.bulk_create(rows)]


def _process(ids: list[int], *, broker: str, workers: list[CeleryWorker], timeout: float = 60) -> float:
    """Publish the deliveries' processing as the web process does (50 ids a message); seconds until the last one
    was processed."""
    started = timezone.now()
    with celery_app_publishing_to(broker):
        assert deliveries_publish(ids)
    pending = WebhookDelivery.objects.filter(pk__in=ids).exclude(state=WebhookDelivery.State.PROCESSED)

    def done() -> bool:
        for worker in workers:
            assert worker.process is not None and worker.process.poll() is None, worker.log_tail()
        return not pending.exists()

    wait_until(done, timeout=timeout, interval=0.05, what=f"{len(ids)} deliveries processed")
    last: datetime = max(WebhookDelivery.objects.filter(pk__in=ids).values_list("processed_at", flat=True))
    return (last - started).total_seconds()


def _tracking_file(order_ids: list[str]) -> bytes:
    return to_csv([row(order_id, f"1Z999AA1{int(order_id):010d}") for order_id in order_ids])


@pytest.mark.postgres
@pytest.mark.slow
def test_a_long_import_on_the_imports_queue_does_not_delay_webhook_processing(
    transactional_db, private_redis: RedisServer, celery_worker_factory: Callable[..., CeleryWorker]
):
    store = Store.objects.create(domain=SHOP, name="Q", access_token="token", client_secret="secret",
                                 api_base_url="http://127.0.0.1:9")  # nothing here may call the API
    import_orders = [str(500_000 + n) for n in range(IMPORT_ROWS)]
    started = time.monotonic()
    for start in range(0, len(import_orders), 250):
        orders_upsert_page(store=store, records=[order_record(o) for o in import_orders[start:start + 250]])
    print(f"\n{IMPORT_ROWS} orders mirrored in {time.monotonic() - started:.1f} s")

    env = subprocess_env(broker_url=private_redis.url(), extra={"LOG_LEVEL": "WARNING"})
    webhooks_worker = celery_worker_factory(env=env, concurrency=2, queues="webhooks")
    imports_worker = celery_worker_factory(env=env, concurrency=1, queues="imports")
    workers = [webhooks_worker, imports_worker]

    def batch(first_order: int) -> float:
        ids = _store_deliveries(store, [str(first_order + n) for n in range(1000)])
        return _process(ids, broker=private_redis.url(), workers=workers)

    # Warm-up: every measured batch finds the worker's connections and caches ready.
    _process(_store_deliveries(store, [str(100_000 + n) for n in range(50)]), broker=private_redis.url(),
             workers=workers)
    before = batch(200_000)

    with celery_app_publishing_to(private_redis.url()):
        report = tracking_csv_import(store=store, data=_tracking_file(import_orders), file_name="big.csv",
                                     queue_above_rows=0)
    assert report.queued
    csv_import = CsvImport.objects.filter(pk=report.import_id)
    wait_until(lambda: csv_import.filter(claimed_at__isnull=False).exists(), timeout=30, what="the import to start")
    import_started = time.monotonic()
    during = batch(300_000)
    still_running = not csv_import.filter(finished_at__isnull=False).exists()
    wait_until(lambda: csv_import.filter(finished_at__isnull=False).exists(), timeout=300, what="the import")
    import_seconds = time.monotonic() - import_started
    # "Alone" is measured before and after the import: the mean of the two evens out whatever else the machine
    # was doing meanwhile (the import's own share of the CPUs is what this test lets count).
    alone = (before + batch(400_000)) / 2
    print(f"1,000 deliveries processed in {alone:.1f} s alone (before {before:.1f} s), {during:.1f} s while the "
          f"import ran (import: {IMPORT_ROWS} rows, {import_seconds:.1f} s)")
    assert still_running, "the import ended before the batch did: make the file longer"
    assert during - alone < 5
    assert csv_import.get().shipments_created == IMPORT_ROWS
    # The import ran on the imports worker; the webhooks worker never saw it.
    received = "Task channels.import_queued_csv["  # the worker's log line (its banner lists every task)
    assert received in imports_worker.log_path.read_text()
    assert received not in webhooks_worker.log_path.read_text()
