"""Delivering events: signed the Standard Webhooks way, each once, retried on 5xx/408/429/timeouts with backoff,
stopped by any other 4xx, through the SSRF guard, with a delivery row per event and subscription."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from oma.events import services
from oma.events.models import Event, EventDelivery
from oma.events.services import NewEvent, deliveries_send_again, deliveries_send_due, events_record
from oma.events.watch import events_enqueue_due
from tests.admin.factories import StoreFactory
from tests.events.conftest import signature_valid, subscribe

pytestmark = pytest.mark.django_db


def _record(store, event_type="alert.push_failed", data=None):
    return events_record([NewEvent(store.pk, event_type, data or {"hello": "world"})])


def test_an_event_reaches_its_receiver_signed_and_only_once(
    store, receiver, trusted_localhost, eager_celery, django_capture_on_commit_callbacks
):
    subscription = subscribe(store, receiver, "alert.*")
    with django_capture_on_commit_callbacks(execute=True):
        (delivery_id,) = _record(store, data={"push": {"id": 7}})
    assert len(receiver.received) == 1  # the worker (eager here) sent it once the transaction committed
    request = receiver.received[0]
    assert signature_valid(secret=subscription.secret, headers=request.headers, body=request.body)
    event = Event.objects.get()
    assert request.headers["webhook-id"] == event.msg_id
    assert request.headers["content-type"] == "application/json"
    assert request.json["type"] == "alert.push_failed" and request.json["data"] == {"push": {"id": 7}}

    delivery = EventDelivery.objects.get(pk=delivery_id)
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("delivered", 1, 200)
    assert delivery.delivered_at is not None and delivery.next_attempt_at is None

    # Nothing is sent twice: not by another worker run, not by beat, not later.
    deliveries_send_due(now=timezone.now() + timedelta(days=1))
    events_enqueue_due(now=timezone.now() + timedelta(hours=1))
    assert len(receiver.received) == 1


def test_a_503_is_tried_again_after_a_backoff_then_delivered(store, receiver, trusted_localhost):
    subscription = subscribe(store, receiver, "alert.*")
    receiver.answer(503)
    (delivery_id,) = _record(store)
    deliveries_send_due()
    delivery = EventDelivery.objects.get(pk=delivery_id)
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("pending", 1, 503)
    assert "receiver says no" in delivery.last_error
    wait = delivery.next_attempt_at - timezone.now()
    assert timedelta(seconds=25) < wait <= timedelta(seconds=61)  # the first backoff step, half of it jittered
    assert delivery.dispatch_at == delivery.next_attempt_at  # beat publishes it when it is due

    deliveries_send_due()  # not due yet: nothing is sent
    assert len(receiver.received) == 1
    deliveries_send_due(now=timezone.now() + timedelta(minutes=2))
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.last_status, delivery.last_error) == ("delivered", 2, 200, "")
    first, second = receiver.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"]  # one message, two attempts
    assert all(signature_valid(secret=subscription.secret, headers=r.headers, body=r.body) for r in receiver.received)


def test_a_400_stops_at_once_and_send_again_starts_over(store, receiver, trusted_localhost):
    subscribe(store, receiver, "alert.*")
    receiver.answer(400)
    (delivery_id,) = _record(store)
    deliveries_send_due()
    delivery = EventDelivery.objects.get(pk=delivery_id)
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("failed", 1, 400)
    deliveries_send_due(now=timezone.now() + timedelta(days=2))
    assert len(receiver.received) == 1

    assert deliveries_send_again(deliveries=EventDelivery.objects.filter(pk=delivery_id)) == 1
    deliveries_send_due()
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("delivered", 1, 200)
    assert len(receiver.received) == 2


@pytest.mark.parametrize("status", [408, 429, 500, 502])
def test_408_429_and_5xx_are_transient(store, receiver, trusted_localhost, status):
    subscribe(store, receiver, "alert.*")
    receiver.answer(status)
    (delivery_id,) = _record(store)
    deliveries_send_due()
    assert EventDelivery.objects.get(pk=delivery_id).state == "pending"


@pytest.mark.parametrize("status", [301, 401, 403, 404, 410, 422])
def test_redirects_and_other_4xx_are_final(store, receiver, trusted_localhost, status):
    subscribe(store, receiver, "alert.*")
    receiver.answer((status, {"Location": "http://127.0.0.1:1/elsewhere"}) if status == 301 else status)
    (delivery_id,) = _record(store)
    deliveries_send_due()
    delivery = EventDelivery.objects.get(pk=delivery_id)
    assert (delivery.state, delivery.last_status) == ("failed", status)
    assert len(receiver.received) == 1  # a redirect is not followed


def test_a_429_retry_after_is_waited_out(store, receiver, trusted_localhost):
    subscribe(store, receiver, "alert.*")
    receiver.answer((429, {"Retry-After": "900"}))
    (delivery_id,) = _record(store)
    deliveries_send_due()
    delivery = EventDelivery.objects.get(pk=delivery_id)
    assert delivery.next_attempt_at - timezone.now() > timedelta(seconds=890)


def test_a_timeout_is_tried_again(store, receiver, trusted_localhost, monkeypatch):
    monkeypatch.setattr(services, "TIMEOUT", (2.0, 0.3))
    subscribe(store, receiver, "alert.*")
    receiver.delay = 1.0
    (delivery_id,) = _record(store)
    deliveries_send_due()
    delivery = EventDelivery.objects.get(pk=delivery_id)
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("pending", 1, None)
    assert "Timeout" in delivery.last_error


def test_gives_up_after_the_last_attempt(store, receiver, trusted_localhost):
    subscribe(store, receiver, "alert.*")
    receiver.answer(*[503] * services.DELIVERY_RETRY.max_attempts)
    (delivery_id,) = _record(store)
    now = timezone.now()
    for attempt in range(services.DELIVERY_RETRY.max_attempts):
        deliveries_send_due(now=now + timedelta(days=attempt))
    delivery = EventDelivery.objects.get(pk=delivery_id)
    assert (delivery.state, delivery.attempts) == ("failed", services.DELIVERY_RETRY.max_attempts)
    deliveries_send_due(now=now + timedelta(days=30))
    assert len(receiver.received) == services.DELIVERY_RETRY.max_attempts


def test_a_private_address_is_refused_unless_the_operator_allows_it(store, receiver, settings):
    settings.OMA_MERCHANT_API_HOSTS = []
    subscribe(store, receiver, "alert.*")
    (delivery_id,) = _record(store)
    deliveries_send_due()
    delivery = EventDelivery.objects.get(pk=delivery_id)
    assert delivery.state == "failed" and "loopback" in delivery.last_error
    assert receiver.received == []  # no connection at all


def test_only_subscriptions_that_take_the_type_get_a_delivery(store, receiver, trusted_localhost):
    alerts = subscribe(store, receiver, "alert.*")
    shipments = subscribe(store, receiver, "shipment.updated")
    subscribe(StoreFactory(), receiver, "alert.*", "shipment.updated")  # another store's
    _record(store, "alert.carrier_account_failed")
    _record(store, "shipment.updated")
    _record(store, "order.status_changed")  # nobody takes it: not even recorded
    pairs = sorted(EventDelivery.objects.values_list("subscription_id", "event__event_type"))
    assert pairs == sorted([(alerts.pk, "alert.carrier_account_failed"), (shipments.pk, "shipment.updated")])
    assert Event.objects.count() == 2


def test_a_disabled_subscription_gets_nothing_and_its_pending_deliveries_fail(store, receiver, trusted_localhost):
    subscription = subscribe(store, receiver, "alert.*")
    (delivery_id,) = _record(store)
    subscription.is_enabled = False
    subscription.save()
    assert _record(store) == []
    deliveries_send_due()
    delivery = EventDelivery.objects.get(pk=delivery_id)
    assert delivery.state == "failed" and "disabled" in delivery.last_error
    assert receiver.received == []


def test_an_event_of_a_rolled_back_transaction_is_never_sent(
    store, receiver, trusted_localhost, eager_celery, django_capture_on_commit_callbacks
):
    subscribe(store, receiver, "alert.*")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        try:
            from django.db import transaction

            with transaction.atomic():
                _record(store)
                raise RuntimeError("the change failed")
        except RuntimeError:
            pass
    assert callbacks == [] and Event.objects.count() == 0 and EventDelivery.objects.count() == 0
    events_enqueue_due()
    assert receiver.received == []


def test_beat_publishes_a_delivery_whose_task_was_lost(store, receiver, trusted_localhost, eager_celery):
    subscribe(store, receiver, "alert.*")
    (delivery_id,) = _record(store)  # in the test's transaction: its on-commit publish never runs (a lost task)
    assert receiver.received == []
    events_enqueue_due(now=timezone.now() + services.REDISPATCH_AFTER + timedelta(seconds=1))
    assert EventDelivery.objects.get(pk=delivery_id).state == "delivered"
    assert len(receiver.received) == 1


def test_a_task_out_of_time_leaves_the_rest_to_beat(store, receiver, trusted_localhost):
    subscribe(store, receiver, "alert.*")
    ids = _record(store) + _record(store)
    summary = deliveries_send_due(delivery_ids=ids, time_budget=0)
    assert summary.statuses == [] and receiver.received == []
    assert all(d.dispatch_at <= timezone.now() for d in EventDelivery.objects.filter(pk__in=ids))  # due for beat
    deliveries_send_due(delivery_ids=ids)
    assert len(receiver.received) == 2
