"""The unsubscribe link, and the merchant's admin: settings, the email log, template previews (tenant-scoped)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from oma.merchant.tokens import tracking_token_for
from oma.notifications.models import OrderUnsubscribe, ShipmentNotification, StoreNotificationSettings
from oma.notifications.services import SENDING_UNCONFIRMED_AFTER, notifications_detect
from oma.notifications.tokens import unsubscribe_path_for
from tests.admin.factories import StoreFactory
from tests.admin.world import merchant
from tests.notifications.conftest import carrier_says, new_order, new_shipment

pytestmark = pytest.mark.urls("tests.notifications.urls")
State = ShipmentNotification.State


# --- unsubscribe ----------------------------------------------------------------------------------------------


def test_the_link_asks_first_then_unsubscribes(client, store):
    order = new_order(store, name="#2001")
    url = unsubscribe_path_for(order)
    page = client.get(url)
    assert page.status_code == 200
    assert "Stop emails about order #2001?" in page.content.decode()
    assert "Acme &amp; Sons" in page.content.decode()
    assert not OrderUnsubscribe.objects.exists()  # opening the link (a mail filter does) changes nothing
    done = client.post(url)
    assert done.status_code == 200 and "You are unsubscribed" in done.content.decode()
    assert OrderUnsubscribe.objects.filter(order=order, store=store).count() == 1
    assert "You are unsubscribed" in client.get(url).content.decode()


def test_one_click_unsubscribe_from_a_mail_program(client, store):
    order = new_order(store)
    response = client.post(unsubscribe_path_for(order), data="List-Unsubscribe=One-Click",
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert OrderUnsubscribe.objects.filter(order=order).exists()


def test_forged_or_tracking_tokens_unsubscribe_nobody(client, store):
    order = new_order(store)
    for token in ("nonsense", tracking_token_for(order), unsubscribe_path_for(order).split("/")[-2] + "x"):
        response = client.post(reverse("notifications:unsubscribe", args=[token]))
        assert response.status_code == 404
    assert not OrderUnsubscribe.objects.exists()


# --- admin ----------------------------------------------------------------------------------------------------


@pytest.fixture
def two_stores(db):
    return StoreFactory(name="Mine"), StoreFactory(name="Theirs")


@pytest.fixture
def merchant_client(client, two_stores):
    client.force_login(merchant("mona", two_stores[0]))
    return client


def test_the_merchant_turns_emails_on_and_only_later_milestones_count(merchant_client, two_stores):
    mine, _ = two_stores
    add = reverse("admin:notifications_storenotificationsettings_add")
    form = {"store": mine.pk, "is_enabled": "on", "notify_delivered": "on", "language": "en", "reply_to": ""}
    response = merchant_client.post(add, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    row = StoreNotificationSettings.objects.get(store=mine)
    assert row.is_enabled and row.notify_delivered and not row.notify_in_transit
    assert set(row.active_since) == {"delivered"}
    page = merchant_client.get(reverse("admin:notifications_storenotificationsettings_change", args=[row.pk]))
    assert page.status_code == 200 and "Preview every email" in page.content.decode()


def test_the_log_shows_unconfirmed_rows_and_send_again_requeues_them(merchant_client, two_stores):
    mine, theirs = two_stores
    for store in two_stores:
        StoreNotificationSettings.objects.create(store=store, is_enabled=True,
                                                 active_since={"in_transit": "2000-01-01T00:00:00+00:00"})
    shipments = [new_shipment(store, new_order(store)) for store in (mine, theirs)]
    carrier_says(shipments, "in_transit")
    notifications_detect(shipment_ids=[s.pk for s in shipments])
    stuck = ShipmentNotification.objects.get(store=mine)
    ShipmentNotification.objects.update(
        state=State.SENDING, sending_started_at=timezone.now() - SENDING_UNCONFIRMED_AFTER - timedelta(seconds=5)
    )
    changelist = reverse("admin:notifications_shipmentnotification_changelist")
    page = merchant_client.get(changelist)
    assert [row.pk for row in page.context["cl"].result_list] == [stuck.pk]
    assert "may not have been sent" in page.content.decode()
    theirs_row = ShipmentNotification.objects.get(store=theirs)
    merchant_client.post(changelist, {"action": "send_again", "_selected_action": [stuck.pk, theirs_row.pk]})
    assert ShipmentNotification.objects.get(pk=stuck.pk).state == State.DUE
    assert ShipmentNotification.objects.get(pk=theirs_row.pk).state == State.SENDING  # not the merchant's


def test_the_preview_renders_every_milestone_for_the_merchants_own_store(merchant_client, two_stores, settings):
    settings.OMA_PUBLIC_URL = ""
    mine, theirs = two_stores
    url = reverse("admin:notifications_shipmentnotification_preview")
    page = merchant_client.get(url, {"store": theirs.pk})  # another tenant's id falls back to the merchant's own
    assert page.status_code == 200
    body = page.content.decode()
    assert page.context["chosen"] == mine and "Theirs" not in body
    for subject in ("Your order #1001 is on its way", "Your order #1001 is out for delivery",
                    "Your order #1001 is ready for pickup", "Delivery attempted: your order #1001",
                    "Your order #1001 has been delivered", "An update on the delivery of your order #1001"):
        assert subject in body
    assert "OMA_PUBLIC_URL is not set" in body
    assert "srcdoc=" in body and "https://oma.example.com/track/preview/" in body
