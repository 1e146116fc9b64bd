"""The nightly reconciliation: a beat entry routed to the sweeps queue, run by a real worker for every active store
(report only), its result kept per store (bounded history) and shown on the dashboard and the reconciliation page;
the `reconcile` command keeps its result too."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from celery.schedules import crontab
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from oma.celery import BEAT_SCHEDULE, app
from oma.core.beat import beat_schedule_sync
from oma.fulfillment.models import RECONCILE_RUNS_KEPT, FulfillmentPush, ReconcileRun
from oma.fulfillment.reconciliation import FINDING_TITLES, Finding, reconcile_run, store_reconcile
from oma.fulfillment.services.push import PushResult, shipment_push
from oma.fulfillment.tasks import reconcile_all_stores
from oma.stores.models import Store
from tests.fixtures_celery import (  # noqa: F401 (fixtures)
    celery_worker_factory,
    private_redis,
    subprocess_env,
    wait_until,
)
from tests.fulfillment.conftest import add_shipment, open_orders
from tracking.models import Shipment

pytestmark = [pytest.mark.postgres]

NIGHTLY = "fulfillment.reconcile_all_stores"
CANCEL = "PUT /fulfillments/{id}/cancel"


def voided_label_left_live(sandbox, store: Store) -> Shipment:
    """A label pushed, then voided while an older OMA only skipped it: its Genstore fulfillment is still live."""
    shipment = add_shipment(store, open_orders(store)[0])
    assert shipment_push(shipment_id=shipment.pk).result == PushResult.CREATED
    Shipment.objects.filter(pk=shipment.pk).update(status="cancelled", next_poll_at=None)
    FulfillmentPush.objects.filter(shipment=shipment).update(
        state=FulfillmentPush.State.SKIPPED, source_status="cancelled", state_reason="Genstore not updated"
    )
    return shipment


def test_the_nightly_entry_runs_once_a_day_on_the_sweeps_queue(db):
    [entry] = [spec for spec in BEAT_SCHEDULE.values() if spec["task"] == NIGHTLY]
    assert isinstance(entry["schedule"], crontab)
    assert entry["schedule"].hour == {4} and entry["schedule"].minute == {23}  # after the 03:17 full sweep
    assert settings.CELERY_TASK_ROUTES[NIGHTLY] == {"queue": "sweeps"}
    assert settings.CELERY_TASK_ROUTES["fulfillment.reconcile_store"] == {"queue": "sweeps"}
    assert app.amqp.router.route({}, "fulfillment.reconcile_store")["queue"].name == "sweeps"
    beat_schedule_sync()
    task = PeriodicTask.objects.get(task=NIGHTLY)
    assert task.enabled and task.crontab is not None and (task.crontab.hour, task.crontab.minute) == ("4", "23")


@pytest.mark.slow
def test_a_worker_reconciles_every_active_store_and_keeps_the_result_without_fixing(
    transactional_db, broker, private_redis, sandbox, store, celery_worker_factory  # noqa: F811
):
    voided = voided_label_left_live(sandbox, store)
    inactive = Store.objects.create(domain="closed.genmystore.com", access_token="t", client_secret="s",
                                    is_active=False)
    expected = store_reconcile(store=store).counts
    assert expected[Finding.FULFILLMENT_OF_VOIDED_LABEL] == 1
    env = subprocess_env(broker_url=broker, extra={"LOG_LEVEL": "WARNING", "REDIS_URL": private_redis.url(1)})
    worker = celery_worker_factory(env=env, concurrency=2)

    reconcile_all_stores.delay()  # what beat sends at 04:23

    try:
        wait_until(lambda: ReconcileRun.objects.filter(store=store, finished_at__isnull=False).exists(),
                   timeout=60, what="the nightly reconciliation")
    except TimeoutError:
        print(worker.log_tail())
        raise
    [run] = ReconcileRun.objects.filter(store=store)
    assert run.trigger == ReconcileRun.Trigger.NIGHTLY and run.error == ""
    assert run.refreshed and run.refresh_error == ""  # Genstore was re-read first (an incremental sweep)
    assert run.counts == {kind: count for kind, count in expected.items() if count}
    assert run.findings == sum(expected.values())
    assert run.shipments_checked >= 1 and run.fulfillments_checked >= 1
    assert not ReconcileRun.objects.filter(store=inactive).exists()
    # Report only: the voided label's fulfillment is still live, nothing was pushed or cancelled.
    assert sandbox.stats("shop1")["by_endpoint"].get(CANCEL, 0) == 0
    assert FulfillmentPush.objects.get(shipment=voided).state == FulfillmentPush.State.SKIPPED


@pytest.mark.django_db
def test_the_history_is_bounded_and_a_run_whose_worker_died_is_closed(sandbox, store):
    now = timezone.now()
    ReconcileRun.objects.bulk_create([
        ReconcileRun(store=store, started_at=now - timedelta(days=n + 1), finished_at=now - timedelta(days=n + 1))
        for n in range(RECONCILE_RUNS_KEPT + 5)
    ])
    dead = ReconcileRun.objects.create(store=store, started_at=now - timedelta(hours=2))
    running = ReconcileRun.objects.create(store=store, started_at=now - timedelta(minutes=5))
    other = Store.objects.create(domain="other.genmystore.com", access_token="t", client_secret="s")
    theirs = ReconcileRun.objects.create(store=other, started_at=now - timedelta(days=400), finished_at=now)

    run, report = reconcile_run(store=store, refresh=False)

    assert report is not None and run.finished_at and run.findings == len(report.disagreements)
    assert ReconcileRun.objects.filter(store=store).count() == RECONCILE_RUNS_KEPT
    assert ReconcileRun.objects.filter(pk=run.pk).exists()
    dead.refresh_from_db()
    assert dead.finished_at and dead.error == "did not finish (its worker stopped)"
    running.refresh_from_db()
    assert running.finished_at is None and running.error == ""  # may still be at work: left alone
    assert ReconcileRun.objects.filter(pk=theirs.pk).exists()  # another store's history is its own


@pytest.mark.django_db
def test_a_genstore_that_cannot_be_reread_is_said_and_the_mirror_compared(sandbox, store):
    sandbox.set_access_token("rotated-token")
    run, report = reconcile_run(store=store, refresh=True)
    assert report is not None and not run.refreshed and run.refresh_error
    assert run.error == "" and run.findings == len(report.disagreements) > 0


@pytest.mark.django_db
def test_the_dashboard_shows_the_last_result_by_kind_with_a_link_to_the_reconcile_page(sandbox, store):
    admin = get_user_model().objects.create_superuser("root", password="pw")
    browser = Client()
    browser.force_login(admin)
    page = browser.get("/admin/dashboard/").content.decode()
    assert 'id="reconciliation"' in page and "not run yet" in page

    voided_label_left_live(sandbox, store)
    old, _ = reconcile_run(store=store, refresh=False)
    ReconcileRun.objects.filter(pk=old.pk).update(started_at=timezone.now() - timedelta(days=1),
                                                  counts={Finding.NUMBER_ON_TWO_ORDERS: 99})
    _, report = reconcile_run(store=store, refresh=False)
    assert report is not None

    page = browser.get("/admin/dashboard/").content.decode()
    section = page[page.index('id="reconciliation"'):page.index('id="webhook-health"')]
    for kind, count in report.counts.items():  # every kind found, with its count; none that was not
        shown = f'<strong class="oma-warn">{count}</strong><span>{FINDING_TITLES[kind]}</span>'
        assert (shown in section) == bool(count), kind
    assert report.count(Finding.FULFILLMENT_OF_VOIDED_LABEL) == 1
    assert ">99<" not in section  # the latest run, not an older one
    assert f'href="/admin/fulfillment/fulfillmentpush/reconcile/?store={store.pk}"' in section
    assert "nightly (beat)" in section and "not run yet" not in section


@pytest.mark.django_db
def test_the_command_keeps_its_run_and_the_reconcile_page_shows_it(sandbox, store):
    voided = voided_label_left_live(sandbox, store)
    out = io.StringIO()
    call_command("reconcile", "--store", store.domain, "--no-refresh", stdout=out)
    text = out.getvalue()
    assert "fulfillment_of_voided_label (1, fixable with --fix):" in text
    [run] = ReconcileRun.objects.filter(store=store)
    assert run.trigger == ReconcileRun.Trigger.COMMAND and run.counts[Finding.FULFILLMENT_OF_VOIDED_LABEL] == 1

    admin = get_user_model().objects.create_superuser("root", password="pw")
    browser = Client()
    browser.force_login(admin)
    page = browser.get(f"/admin/fulfillment/fulfillmentpush/reconcile/?store={store.pk}").content.decode()
    assert "Live Genstore fulfillments of voided labels (1)" in page
    assert voided.tracking_number in page
    assert "Last kept reconciliation (reconcile command)" in page
    runs = browser.get(f"/admin/fulfillment/reconcilerun/?store__id__exact={store.pk}")
    assert runs.status_code == 200 and "1 fulfillment_of_voided_label" in runs.content.decode()
    detail = browser.get(f"/admin/fulfillment/reconcilerun/{run.pk}/change/")
    assert detail.status_code == 200 and "1 fulfillment_of_voided_label" in detail.content.decode()

    # --fix cancels it, once; the fix is the merchant's call, never the nightly run's.
    out = io.StringIO()
    call_command("reconcile", "--store", store.domain, "--no-refresh", "--fix", stdout=out)
    assert "1 cancelled" in out.getvalue()
    assert sandbox.stats("shop1")["by_endpoint"].get(CANCEL, 0) == 1
    assert FulfillmentPush.objects.get(shipment=voided).state == FulfillmentPush.State.CANCELLED
