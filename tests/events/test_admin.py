"""Subscriptions and the delivery log in admin: a merchant subscribes (the secret shown once), sends a test event,
sees only their stores' deliveries and sends one again; a view-only login cannot."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse

from oma.events.models import Event, EventDelivery, EventSubscription
from oma.events.services import NewEvent, deliveries_send_due, events_record, subscription_create
from oma.stores.models import StoreMembership
from tests.admin.factories import StoreFactory
from tests.admin.world import merchant

pytestmark = pytest.mark.django_db

ADD = reverse("admin:events_eventsubscription_add")
SUBSCRIPTIONS = reverse("admin:events_eventsubscription_changelist")
LOG = reverse("admin:events_eventdelivery_changelist")


@pytest.fixture
def stores():
    return StoreFactory(name="amark shop"), StoreFactory(name="bmark shop")


@pytest.fixture
def merchant_client(client, stores):
    client.force_login(merchant("amy", stores[0]))
    return client


def _form(store, url, *event_types):
    return {"store": store.pk, "description": "our ERP", "url": url, "event_types": list(event_types),
            "is_enabled": "on"}


def test_a_merchant_subscribes_and_sees_the_secret_once(merchant_client, stores):
    mine, theirs = stores
    refused = merchant_client.post(ADD, _form(mine, "http://erp.example.com/hooks", "shipment.updated"))
    assert b"Use an https URL." in refused.content
    refused = merchant_client.post(ADD, _form(theirs, "https://erp.example.com/hooks", "shipment.updated"))
    assert refused.status_code == 200 and not EventSubscription.objects.exists()  # not one of their stores
    response = merchant_client.post(ADD, _form(mine, "https://erp.example.com/hooks", "alert.*", "shipment.updated"),
                                    follow=True)
    subscription = EventSubscription.objects.get()
    assert (subscription.store, subscription.event_types) == (mine, ["alert.*", "shipment.updated"])
    assert subscription.secret.startswith("whsec_") and subscription.secret in response.content.decode()
    page = merchant_client.get(reverse("admin:events_eventsubscription_change", args=[subscription.pk]))
    assert page.status_code == 200 and subscription.secret not in page.content.decode()


def test_send_a_test_event_and_the_log_shows_only_the_merchants_deliveries(merchant_client, stores):
    mine, theirs = stores
    ours = subscription_create(store=mine, url="https://erp.example.com/hooks", event_types=["shipment.updated"])
    other = subscription_create(store=theirs, url="https://bmark.example.com/hooks", event_types=["alert.*"])
    events_record([NewEvent(theirs.pk, "alert.push_failed", {"secret": "bmark payload"})])
    merchant_client.post(SUBSCRIPTIONS, {"action": "send_test_event", "_selected_action": [ours.pk, other.pk]})
    (event,) = Event.objects.filter(event_type="oma.test")  # theirs was not in the merchant's queryset
    assert event.deliveries.get().subscription == ours

    page = merchant_client.get(LOG).content.decode()
    assert "oma.test" in page and "bmark" not in page and EventDelivery.objects.count() == 2
    delivery = event.deliveries.get()
    detail = merchant_client.get(reverse("admin:events_eventdelivery_change", args=[delivery.pk])).content.decode()
    assert event.msg_id in detail and "A test event from OMA" in detail
    theirs_delivery = EventDelivery.objects.get(subscription=other)
    assert merchant_client.get(reverse("admin:events_eventdelivery_change", args=[theirs_delivery.pk])).status_code \
        in (302, 404)


def test_send_again_needs_the_change_permission(client, merchant_client, stores, settings):
    mine, _ = stores
    settings.OMA_MERCHANT_API_HOSTS = []
    subscription_create(store=mine, url="http://127.0.0.1:9/hooks", event_types=["alert.*"])
    (delivery_id,) = events_record([NewEvent(mine.pk, "alert.push_failed", {})])
    deliveries_send_due()  # refused: a loopback address
    assert EventDelivery.objects.get(pk=delivery_id).state == "failed"

    viewer = get_user_model().objects.create_user("viewer", password="pw", is_staff=True)
    StoreMembership.objects.create(user=viewer, store=mine)
    viewer.user_permissions.add(*Permission.objects.filter(codename="view_eventdelivery"))
    client.force_login(viewer)
    assert client.get(LOG).status_code == 200
    client.post(LOG, {"action": "send_again", "_selected_action": [delivery_id]})
    assert EventDelivery.objects.get(pk=delivery_id).state == "failed"

    merchant_client.force_login(merchant("amy", mine))
    merchant_client.post(LOG, {"action": "send_again", "_selected_action": [delivery_id]})
    delivery = EventDelivery.objects.get(pk=delivery_id)
    assert (delivery.state, delivery.attempts) == ("pending", 0)
