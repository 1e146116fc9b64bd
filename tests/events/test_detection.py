"""Which events are found, when, and how often: shipment.updated and order.status_changed from the moment a store
subscribes (the baseline sends nothing), alert.* once per transition into failure (not on every retry), found at
once through the lower apps' signals and otherwise by beat, and never for a change that was rolled back."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from oma.channels.models import Channel, ExternalOrder
from oma.events.models import Event, EventWatch, OpenAlert
from oma.events.services import subscription_create
from oma.events.watch import events_enqueue_due, watches_sync
from oma.fulfillment.models import FulfillmentPush
from oma.orders.signals import orders_changed_send
from tests.admin.factories import OrderFactory, ShipmentFactory, StoreFactory
from tracking.carriers.base import TrackingEventRecord, TrackingResult
from tracking.carriers.transport import CarrierAuthError
from tracking.models import CarrierAccount, Shipment
from tracking.polling import account_back_off, account_recovered
from tracking.services import shipment_add, shipment_apply_result

pytestmark = pytest.mark.django_db


def _subscribe(store, *event_types):
    return subscription_create(store=store, url="https://hooks.example.com/oma", event_types=list(event_types))


def _events(event_type):
    return list(Event.objects.filter(event_type=event_type).order_by("pk"))


@pytest.fixture
def store(db):
    return StoreFactory(name="Teapots")


@pytest.fixture
def parcel(store):
    return ShipmentFactory(order=OrderFactory(store=store, name="#1001"), tracking_number="1Z999AA10123456784",
                           carrier="ups", status="in_transit")


# --- shipment.updated -----------------------------------------------------------------------------------------


def test_a_status_from_the_carrier_is_sent_at_once_with_what_it_was_before(
    store, parcel, django_capture_on_commit_callbacks
):
    _subscribe(store, "shipment.updated")
    watches_sync()
    assert Event.objects.count() == 0  # the baseline sends nothing
    when = timezone.now() - timedelta(hours=1)
    result = TrackingResult(
        tracking_number=parcel.tracking_number, carrier="ups", status="delivered",
        events=(TrackingEventRecord(occurred_at=when, status="delivered", raw_text="Delivered, front door",
                                    location="Louisville, KY, US"),),
    )
    with django_capture_on_commit_callbacks(execute=True):
        shipment_apply_result(shipment=parcel, result=result)  # tracking's own write, its own signal

    (event,) = _events("shipment.updated")
    data = event.payload
    assert data["store"]["domain"] == store.domain
    assert data["order"] == {"id": parcel.order.order_id, "omaId": parcel.order.pk, "name": "#1001"}
    shipment = data["shipment"]
    assert (shipment["trackingNumber"], shipment["carrier"], shipment["status"]) == (
        "1Z999AA10123456784", "ups", "delivered")
    assert "1Z999AA10123456784" in shipment["trackingUrl"] and "/track/" in shipment["trackingPageUrl"]
    assert shipment["lastEvent"]["description"] == "Delivered, front door"
    assert shipment["lastEvent"]["location"] == "Louisville, KY, US"
    assert data["previous"]["status"] == "in_transit" and data["changed"] == ["status"]

    assert events_enqueue_due()["shipments"] == 0  # beat finds nothing more: sent once
    assert len(_events("shipment.updated")) == 1


def test_an_estimated_delivery_that_moves_without_a_signal_is_found_by_beat(store, parcel):
    _subscribe(store, "shipment.updated")
    events_enqueue_due()
    eta = timezone.now().date() + timedelta(days=2)
    Shipment.objects.filter(pk=parcel.pk).update(estimated_delivery_date=eta, substatus="delayed")
    assert events_enqueue_due()["shipments"] == 1
    (event,) = _events("shipment.updated")
    assert event.payload["changed"] == ["substatus", "estimatedDelivery"]
    assert event.payload["shipment"]["estimatedDelivery"] == eta.isoformat()
    assert event.payload["previous"]["estimatedDelivery"] is None
    assert events_enqueue_due()["shipments"] == 0


def test_a_shipment_added_after_subscribing_is_an_event(store, django_capture_on_commit_callbacks):
    order = OrderFactory(store=store)
    _subscribe(store, "shipment.updated")
    watches_sync()
    with django_capture_on_commit_callbacks(execute=True):
        shipment_add(store=store, tracking_number="1Z999AA10123456784", order=order)
    (event,) = _events("shipment.updated")
    assert event.payload["previous"] is None and event.payload["shipment"]["trackingNumber"] == "1Z999AA10123456784"


def test_only_subscribed_stores_are_watched(store, parcel):
    other = ShipmentFactory(order=OrderFactory(store=StoreFactory()))
    _subscribe(store, "alert.*")  # no shipment events wanted
    events_enqueue_due()
    Shipment.objects.filter(pk__in=[parcel.pk, other.pk]).update(status="delivered")
    events_enqueue_due()
    assert not EventWatch.objects.exists() and Event.objects.count() == 0


def test_a_store_that_unsubscribes_stops_being_watched_and_starts_afresh_later(store, parcel):
    subscription = _subscribe(store, "shipment.updated")
    events_enqueue_due()
    subscription.is_enabled = False
    subscription.save()
    events_enqueue_due()
    assert not EventWatch.objects.exists()
    Shipment.objects.filter(pk=parcel.pk).update(status="delivered")  # while nobody listened
    subscription.is_enabled = True
    subscription.save()
    events_enqueue_due()  # a new baseline: what changed meanwhile is not news
    assert Event.objects.count() == 0


# --- order.status_changed -----------------------------------------------------------------------------------------


def test_an_order_cancelled_in_genstore_is_sent_with_its_old_and_new_status(
    store, django_capture_on_commit_callbacks
):
    order = OrderFactory(store=store, unified_status="unfulfilled", fulfillment_status="")
    _subscribe(store, "order.status_changed")
    watches_sync()
    order.cancelled_at = timezone.now()
    order.cancel_reason = "customer"
    order.save()
    with django_capture_on_commit_callbacks(execute=True):
        transaction.on_commit(lambda: orders_changed_send(store=store, order_ids=[order.pk]))  # as the upsert does
    order.refresh_from_db()
    assert order.unified_status == "cancelled"  # oma.fulfillment's receiver recomputed it first
    (event,) = _events("order.status_changed")
    assert event.payload["order"]["id"] == order.order_id
    assert (event.payload["previousStatus"], event.payload["status"]) == ("unfulfilled", "cancelled")
    assert events_enqueue_due()["orders"] == 0


def test_a_status_written_without_a_signal_is_found_by_beat_and_new_orders_are_not_changes(store):
    order = OrderFactory(store=store, unified_status="in_transit")
    _subscribe(store, "order.status_changed")
    events_enqueue_due()
    OrderFactory(store=store, unified_status="unfulfilled")  # new since the baseline: a first status, no change
    type(order).objects.filter(pk=order.pk).update(unified_status="delivered")
    assert events_enqueue_due()["orders"] == 1
    (event,) = _events("order.status_changed")
    assert (event.payload["previousStatus"], event.payload["status"]) == ("in_transit", "delivered")


# --- alerts --------------------------------------------------------------------------------------------------------


def _push(store, **fields):
    order = OrderFactory(store=store)
    shipment = ShipmentFactory(order=order)
    key = FulfillmentPush.key_for(store_id=store.pk, order_id=order.order_id, shipment_id=shipment.pk)
    return FulfillmentPush.objects.create(key=key, store=store, order=order, shipment=shipment, **fields)


def _fail(push, reason="Genstore refused the push: line item is already fulfilled"):
    push.state, push.state_reason, push.last_error = FulfillmentPush.State.FAILED, reason, reason
    push.save(update_fields=["state", "state_reason", "last_error", "updated_at"])  # as services/push.py saves


def test_a_failed_push_raises_one_alert_per_failure_not_per_retry(store):
    _subscribe(store, "alert.*")
    push = _push(store, tracking_number="1ZPUSH")
    _fail(push)
    (event,) = _events("alert.push_failed")  # at once, in the transaction that failed it
    assert event.payload["push"]["trackingNumber"] == "1ZPUSH"
    assert "already fulfilled" in event.payload["message"]
    assert event.payload["adminUrl"].endswith(f"/fulfillment/fulfillmentpush/{push.pk}/change/")

    _fail(push)  # saved again while failed
    push.state = FulfillmentPush.State.PENDING  # the shipment changed: retried...
    push.save(update_fields=["state"])
    _fail(push)  # ...and refused again: the same failure
    events_enqueue_due()
    assert len(_events("alert.push_failed")) == 1

    push.state = FulfillmentPush.State.SUCCEEDED
    push.fulfill_id = "F1"
    push.save(update_fields=["state", "fulfill_id"])
    assert events_enqueue_due()["cleared"] == 1
    _fail(push)  # a new failure after a success is news again
    assert len(_events("alert.push_failed")) == 2


def test_a_failure_that_was_rolled_back_raises_nothing(store):
    _subscribe(store, "alert.*")
    push = _push(store)
    with pytest.raises(RuntimeError), transaction.atomic():
        _fail(push)
        assert len(_events("alert.push_failed")) == 1  # written with the change...
        raise RuntimeError("the push's transaction failed")
    assert Event.objects.count() == 0 and OpenAlert.objects.count() == 0  # ...and gone with it
    events_enqueue_due()
    assert Event.objects.count() == 0


def test_a_failure_before_subscribing_is_not_sent_later(store):
    _fail(_push(store))
    assert OpenAlert.objects.count() == 1 and Event.objects.count() == 0  # nobody to tell
    _subscribe(store, "alert.*")
    events_enqueue_due()
    assert Event.objects.count() == 0


def test_an_external_order_genstore_refused_raises_an_alert(store):
    _subscribe(store, "alert.external_order_failed")
    channel = Channel.objects.create(store=store, name="Amazon", slug="amazon-1", kind="csv")
    row = ExternalOrder.objects.create(store=store, channel=channel, external_order_id="114-1", source_name="amazon",
                                       ordered_at=timezone.now(), currency="USD", content_sha256="x" * 64)
    row.state, row.last_error, row.last_error_status = ExternalOrder.State.FAILED, "email is invalid", 422
    row.save(update_fields=["state", "last_error", "last_error_status"])
    (event,) = _events("alert.external_order_failed")
    assert event.payload["externalOrder"]["externalOrderId"] == "114-1"
    assert (event.payload["error"], event.payload["errorStatus"]) == ("email is invalid", 422)


def _poll_outcome(channel, *, error, pause):
    now = timezone.now()  # the way oma.channels.services.channel_poll records a poll (one UPDATE, no post_save)
    Channel.objects.filter(pk=channel.pk).update(
        last_polled_at=now, last_error=error, poll_paused_until=now + pause if pause else None
    )


def test_a_channel_whose_credentials_are_refused_raises_an_alert_found_by_beat(store):
    _subscribe(store, "alert.channel_auth_failed")
    channel = Channel.objects.create(store=store, name="ShipStation", slug="ss-1", kind="shipstation")
    _poll_outcome(channel, error="ShipStation timed out", pause=timedelta(minutes=5))  # transient: not an alert
    events_enqueue_due()
    assert Event.objects.count() == 0
    _poll_outcome(channel, error="ShipStation refused the API key and secret (401)", pause=timedelta(hours=1))
    events_enqueue_due()
    _poll_outcome(channel, error="ShipStation refused the API key and secret (401)", pause=timedelta(hours=1))
    events_enqueue_due()  # the hourly retry fails again: the same alert
    (event,) = _events("alert.channel_auth_failed")
    assert event.payload["channel"]["name"] == "ShipStation" and "401" in event.payload["message"]

    _poll_outcome(channel, error="", pause=None)  # fixed: the next poll worked
    events_enqueue_due()
    _poll_outcome(channel, error="ShipStation refused the API key and secret (401)", pause=timedelta(hours=1))
    events_enqueue_due()
    assert len(_events("alert.channel_auth_failed")) == 2


def test_a_carrier_account_that_keeps_failing_raises_one_alert(store):
    _subscribe(store, "alert.*")
    account = CarrierAccount.objects.create(store=store, carrier="ups", client_id="id", client_secret="secret")
    now = timezone.now()
    for _ in range(2):  # a blip or two is not news
        account_back_off(account=account, error=CarrierAuthError("UPS refused the client id"), now=now)
    assert Event.objects.count() == 0
    for _ in range(3):
        account_back_off(account=account, error=CarrierAuthError("UPS refused the client id"), now=now)
    (event,) = _events("alert.carrier_account_failed")  # at the third failure in a row, once
    assert event.payload["carrierAccount"]["carrier"] == "ups" and event.payload["consecutiveFailures"] == 3

    account_recovered(account=account, now=now)
    events_enqueue_due()
    for _ in range(3):
        account_back_off(account=account, error=CarrierAuthError("UPS refused the client id"), now=now)
    assert len(_events("alert.carrier_account_failed")) == 2
