"""Big CSV uploads are imported by a worker, not inside the admin request: queued after the file checks, run once,
the report on the import's own page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from oma.channels.csv_import import csv_import_run_queued, csv_imports_enqueue_stalled, tracking_csv_import
from oma.channels.models import CsvImport
from oma.stores.models import Store
from tests.channels.conftest import order_record, sync_orders
from tests.channels.test_csv_import import row, to_csv
from tests.faults.processes import celery_app_publishing_to
from tests.fixtures_celery import celery_worker_factory, private_redis, subprocess_env, wait_until  # noqa: F401
from tracking.models import Shipment


def _file(count: int, *, bad: int = 0) -> bytes:
    rows = [row(str(7000 + n), f"PARCEL7{n:05d}") for n in range(count)]
    rows += [row("7000", "X") for _ in range(bad)]  # malformed tracking numbers
    return to_csv(rows)


@pytest.mark.django_db
def test_a_file_above_the_threshold_is_queued_then_imported_once(store: Store, django_capture_on_commit_callbacks):
    sync_orders(store, [order_record(str(7000 + n)) for n in range(12)])
    with django_capture_on_commit_callbacks() as callbacks:
        report = tracking_csv_import(store=store, data=_file(12, bad=1), file_name="big.csv", via="admin",
                                     queue_above_rows=10)
    assert report.queued and report.rows == 13 and report.summary() == "big.csv: 13 rows queued for import"
    assert len(callbacks) == 1  # the task is published once the upload is committed
    queued = CsvImport.objects.get(pk=report.import_id)
    assert queued.queued_file is not None and queued.finished_at is None and not Shipment.objects.exists()

    done = csv_import_run_queued(csv_import_id=queued.pk)
    assert done is not None and done.count("created") == 12 and done.count("rejected") == 1
    queued.refresh_from_db()
    assert queued.queued_file is None and queued.finished_at is not None
    assert (queued.shipments_created, queued.rejected) == (12, 1)
    assert [p["line"] for p in queued.report["problems"]] == [14]
    assert Shipment.objects.count() == 12
    assert csv_import_run_queued(csv_import_id=queued.pk) is None  # a task delivered twice does nothing more


@pytest.mark.django_db
def test_an_import_whose_task_was_lost_is_queued_again_and_a_claimed_one_is_not_run_twice(
    store: Store, django_capture_on_commit_callbacks, eager_celery
):
    sync_orders(store, [order_record(str(7000 + n)) for n in range(4)])
    with django_capture_on_commit_callbacks(execute=False):  # the broker never gets the task
        report = tracking_csv_import(store=store, data=_file(4), file_name="lost.csv", queue_above_rows=2)
    now = timezone.now()
    queued = CsvImport.objects.filter(pk=report.import_id)
    assert csv_imports_enqueue_stalled(now=now) == 0  # a worker usually takes it within seconds
    queued.update(claimed_at=now)  # an attempt is running...
    assert csv_import_run_queued(csv_import_id=report.import_id, now=now) is None  # ...so a second one stops
    queued.update(started_at=now - timedelta(hours=3), claimed_at=now - timedelta(minutes=30))
    assert csv_imports_enqueue_stalled(now=now) == 0  # nor is it queued again while that attempt may still run
    # That attempt died with its worker: once its claim has expired, the sweep queues the file again.
    queued.update(claimed_at=now - timedelta(hours=2))
    assert csv_imports_enqueue_stalled() == 1
    csv_import = queued.get()
    assert csv_import.finished_at is not None and csv_import.shipments_created == 4 and csv_import.queued_file is None
    assert csv_imports_enqueue_stalled() == 0


def test_the_sweep_for_stalled_imports_is_on_the_beat_schedule():
    from oma.celery import BEAT_SCHEDULE

    assert "channels.enqueue_stalled_csv_imports" in {entry["task"] for entry in BEAT_SCHEDULE.values()}


@pytest.mark.django_db
def test_small_files_and_dry_runs_are_imported_at_once(store: Store):
    sync_orders(store, [order_record(str(7000 + n)) for n in range(3)])
    dry = tracking_csv_import(store=store, data=_file(3), file_name="a.csv", dry_run=True, queue_above_rows=1)
    assert not dry.queued and dry.count("created") == 3 and not Shipment.objects.exists()
    small = tracking_csv_import(store=store, data=_file(3), file_name="a.csv", queue_above_rows=3)
    assert not small.queued and small.count("created") == 3


@pytest.mark.django_db
def test_a_bad_file_is_refused_at_upload_not_queued(store: Store):
    report = tracking_csv_import(store=store, data=b"just,some\nwords,here\n", file_name="bad.csv",
                                 queue_above_rows=0)
    assert report.file_error and not report.queued and not CsvImport.objects.exists()


@pytest.mark.postgres
@pytest.mark.slow
def test_an_admin_upload_above_the_threshold_is_imported_by_a_real_worker(
    transactional_db, private_redis, celery_worker_factory, client, django_user_model, settings  # noqa: F811
):
    store = Store.objects.create(domain="csvq.genmystore.com", name="Q", access_token="t", client_secret="s")
    sync_orders(store, [order_record(str(7000 + n)) for n in range(40)])
    settings.OMA_CSV_QUEUE_ABOVE_ROWS = 25
    worker = celery_worker_factory(env=subprocess_env(broker_url=private_redis.url()), concurrency=1)
    client.force_login(django_user_model.objects.create_superuser("boss", "boss@example.com", "pw"))
    with celery_app_publishing_to(private_redis.url()):
        response = client.post(reverse("admin:channels_csvimport_upload"), {
            "store": store.pk, "file": SimpleUploadedFile("big.csv", _file(40, bad=2), "text/csv"),
        })
    csv_import = CsvImport.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:channels_csvimport_change", args=[csv_import.pk])

    def finished() -> bool:
        assert worker.process is not None and worker.process.poll() is None, worker.log_tail()
        return CsvImport.objects.filter(pk=csv_import.pk, finished_at__isnull=False).exists()

    wait_until(finished, timeout=90, interval=0.5, what="the worker to import the file")
    csv_import.refresh_from_db()
    assert (csv_import.shipments_created, csv_import.rejected, csv_import.queued_file) == (40, 2, None)
    assert Shipment.objects.filter(store=store).count() == 40
    page = client.get(response["Location"]).content.decode()
    assert "<div class=\"readonly\">done</div>" in page and "<td>42</td>" in page and "<td>43</td>" in page
