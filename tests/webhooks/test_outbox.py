"""The outbox: deliveries the broker never got (or lost) are enqueued again; old ones are pruned."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from oma.orders.models import Order
from tests.webhooks.payloads import encode, order_json
from webhooks.dispatch import deliveries_dispatch_due
from webhooks.models import CustomerDataExport, WebhookDelivery
from webhooks.receive import delivery_receive
from webhooks.retention import deliveries_prune

pytestmark = pytest.mark.django_db
State = WebhookDelivery.State


def _received(store, order_id: str, **fields) -> WebhookDelivery:
    result = delivery_receive(store=store, topic="orders/update", body=encode(order_json(order_id)), headers={})
    WebhookDelivery.objects.filter(pk=result.delivery_id).update(**fields)
    return WebhookDelivery.objects.get(pk=result.delivery_id)


def test_outbox_enqueues_due_unfinished_deliveries_only(store, eager_celery):
    now = timezone.now()
    due = _received(store, "1", next_dispatch_at=now - timedelta(seconds=1))  # publish failed at receipt
    waiting = _received(store, "2", next_dispatch_at=now + timedelta(minutes=4))  # still within its deadline
    stuck = _received(  # its worker died mid-processing; the lease is over
        store, "3", state=State.PROCESSING, attempts=1, lease_expires_at=now - timedelta(seconds=10),
        next_dispatch_at=now - timedelta(seconds=5),
    )
    done = _received(store, "4", state=State.PROCESSED, next_dispatch_at=None)

    result = deliveries_dispatch_due()

    assert (result.dispatched, result.broker_down) == (2, False)
    states = {d.pk: (d.state, d.attempts, d.dispatch_count) for d in WebhookDelivery.objects.all()}
    assert states[due.pk] == (State.PROCESSED, 1, 1)
    assert states[stuck.pk] == (State.PROCESSED, 2, 1)
    assert states[waiting.pk] == (State.RECEIVED, 0, 0)
    assert states[done.pk] == (State.PROCESSED, 0, 0)
    assert sorted(Order.objects.values_list("order_id", flat=True)) == ["1", "3"]


def test_outbox_leaves_rows_due_when_the_broker_is_down(store, monkeypatch):
    from kombu.exceptions import OperationalError

    from webhooks.tasks import process_deliveries

    def broker_down(*args, **kwargs):
        raise OperationalError("Connection refused")

    monkeypatch.setattr(process_deliveries, "apply_async", broker_down)
    now = timezone.now()
    for order_id in ("1", "2", "3"):
        _received(store, order_id, next_dispatch_at=now - timedelta(seconds=1))
    result = deliveries_dispatch_due(now=now)
    assert (result.dispatched, result.broker_down) == (0, True)
    assert set(WebhookDelivery.objects.values_list("next_dispatch_at", flat=True)) == {now}


def test_dispatch_webhooks_command_runs_the_outbox_once(store, eager_celery):
    _received(store, "1", next_dispatch_at=timezone.now() - timedelta(seconds=1))
    call_command("dispatch_webhooks", verbosity=0)
    assert WebhookDelivery.objects.get().state == State.PROCESSED


def test_outbox_task_is_scheduled_every_minute():
    from oma.celery import BEAT_SCHEDULE

    entries = [entry for entry in BEAT_SCHEDULE.values() if entry["task"] == "webhooks.dispatch_outbox"]
    assert len(entries) == 1
    assert entries[0]["schedule"] == 60


def test_deliveries_and_exports_older_than_the_retention_are_pruned(store, settings):
    settings.OMA_WEBHOOK_RETENTION_DAYS = 30
    now = timezone.now()
    old = [_received(store, str(n), received_at=now - timedelta(days=31)) for n in range(5)]
    recent = _received(store, "recent", received_at=now - timedelta(days=29))
    export = CustomerDataExport.objects.create(store=store, data={})
    CustomerDataExport.objects.filter(pk=export.pk).update(created_at=now - timedelta(days=40))

    first = deliveries_prune(now=now, batch_size=3)  # bounded: a big backlog drains over several runs
    assert (first.deliveries, first.exports) == (3, 1)
    second = deliveries_prune(now=now, batch_size=3)
    assert second.deliveries == 2
    assert list(WebhookDelivery.objects.all()) == [recent]
    assert not WebhookDelivery.objects.filter(pk__in=[d.pk for d in old]).exists()
    assert not CustomerDataExport.objects.exists()
