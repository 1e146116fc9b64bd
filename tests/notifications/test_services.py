"""Detecting milestones and sending the emails, in process (Django's locmem mail backend stands for the server)."""

from __future__ import annotations

import smtplib
from datetime import timedelta

import pytest
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend
from django.utils import timezone

from oma.merchant.models import StoreBranding
from oma.merchant.tokens import tracking_path_for
from oma.notifications.models import OrderUnsubscribe, ShipmentNotification, StoreNotificationSettings
from oma.notifications.services import (
    MAX_ATTEMPTS,
    SENDING_UNCONFIRMED_AFTER,
    notification_settings_save,
    notification_unconfirmed,
    notifications_detect,
    notifications_send_again,
    notifications_send_due,
    order_unsubscribe,
    store_notifications_enable,
)
from oma.notifications.tokens import unsubscribe_path_for
from tests.notifications.conftest import PUBLIC_URL, carrier_says, new_order, new_shipment

State = ShipmentNotification.State
pytestmark = pytest.mark.urls("tests.notifications.urls")


def rows(shipment) -> list[tuple[str, str]]:
    return sorted(ShipmentNotification.objects.filter(shipment=shipment).values_list("milestone", "state"))


def detect(*shipments) -> int:
    return notifications_detect(shipment_ids=[s.pk for s in shipments])


# --- detection ------------------------------------------------------------------------------------------------


def test_one_row_per_milestone_the_parcel_passes_and_never_a_second(store, opted_in):
    shipment = new_shipment(store, new_order(store))
    for status in ("info_received", "in_transit", "exception", "in_transit", "out_for_delivery", "attempt_failed",
                   "out_for_delivery", "delivered"):
        carrier_says([shipment], status)
        detect(shipment)
        detect(shipment)  # a repeated signal changes nothing
    assert [m for m, _ in rows(shipment)] == sorted(
        ["in_transit", "exception", "out_for_delivery", "attempt_failed", "delivered"]
    )


def test_the_receiver_records_due_rows_after_the_tracking_write_commits(store, opted_in,
                                                                         django_capture_on_commit_callbacks):
    shipment = new_shipment(store, new_order(store))
    with django_capture_on_commit_callbacks(execute=True):
        carrier_says([shipment], "in_transit")
    assert rows(shipment) == [("in_transit", State.DUE)]


def test_no_backlog_when_a_store_opts_in(store):
    moving, delivered = new_shipment(store, new_order(store)), new_shipment(store, new_order(store))
    carrier_says([moving], "in_transit", at=timezone.now() - timedelta(hours=3))
    carrier_says([delivered], "delivered", at=timezone.now() - timedelta(hours=2))
    store_notifications_enable(store_id=store.pk)
    assert detect(moving, delivered) == 0
    carrier_says([moving], "out_for_delivery")
    detect(moving, delivered)
    assert rows(moving) == [("out_for_delivery", State.DUE)]
    assert rows(delivered) == []


def test_a_milestone_switched_on_later_counts_from_then(store):
    shipment = new_shipment(store, new_order(store))
    store_notifications_enable(store_id=store.pk, milestones=["delivered"], now=timezone.now() - timedelta(hours=5))
    carrier_says([shipment], "in_transit", at=timezone.now() - timedelta(hours=2))
    assert detect(shipment) == 0  # in_transit is off
    settings_row = StoreNotificationSettings.objects.get(store=store)
    settings_row.notify_in_transit = True
    notification_settings_save(settings_row=settings_row)
    assert detect(shipment) == 0  # reached before it was switched on
    settings_row.refresh_from_db()
    assert set(settings_row.active_since) == {"in_transit", "delivered"}


def test_nothing_for_stores_that_did_not_opt_in_orders_missing_or_cancelled(store):
    other = new_shipment(store, new_order(store))
    carrier_says([other], "in_transit")
    assert detect(other) == 0  # emails off
    store_notifications_enable(store_id=store.pk, now=timezone.now() - timedelta(hours=1))
    orphan = new_shipment(store, None)
    cancelled = new_shipment(store, new_order(store, cancelled_at=timezone.now()))
    carrier_says([orphan, cancelled], "in_transit")
    assert detect(orphan, cancelled) == 0


# --- sending --------------------------------------------------------------------------------------------------


def test_the_email_has_the_branding_the_tracking_link_and_an_unsubscribe_link(store, opted_in, public_url):
    StoreBranding.objects.create(store=store, display_name="Acme & Sons Shop", support_email="help@acme.test",
                                 accent_colour="#aa3300")
    order = new_order(store, name="#4711", email="jane@example.com")
    shipment = new_shipment(store, order)
    carrier_says([shipment], "out_for_delivery")
    detect(shipment)
    run = notifications_send_due()
    assert run.counts == {State.SENT: 1}
    [message] = mail.outbox
    assert message.to == ["jane@example.com"]
    assert message.subject == "Your order #4711 is out for delivery"
    assert message.message()["From"] == "Acme & Sons Shop <oma@localhost>"
    assert message.reply_to == ["help@acme.test"]
    tracking_url = PUBLIC_URL + tracking_path_for(order)
    unsubscribe_url = PUBLIC_URL + unsubscribe_path_for(order)
    assert tracking_url in message.body and unsubscribe_url in message.body
    assert "Acme & Sons Shop" in message.body  # plain text is not HTML-escaped
    html, mimetype = message.alternatives[0]
    assert mimetype == "text/html"
    assert f'href="{tracking_url}"' in html and "#aa3300" in html and "Acme &amp; Sons Shop" in html
    assert message.extra_headers["List-Unsubscribe"] == f"<{unsubscribe_url}>"
    assert message.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    row = ShipmentNotification.objects.get(shipment=shipment)
    assert (row.state, row.attempts, row.subject) == (State.SENT, 1, message.subject)
    assert message.extra_headers["X-OMA-Notification"] == str(row.pk)
    assert notifications_send_due().total == 0  # nothing twice
    assert len(mail.outbox) == 1


def test_orders_without_email_unsubscribed_or_without_public_url_are_skipped_and_counted(
    store, opted_in, settings, caplog
):
    no_email = new_shipment(store, new_order(store, email=""))
    gone = new_shipment(store, new_order(store))
    order_unsubscribe(order=gone.order)
    fine = new_shipment(store, new_order(store))
    carrier_says([no_email, gone, fine], "in_transit")
    detect(no_email, gone, fine)
    settings.OMA_PUBLIC_URL = ""
    run = notifications_send_due()
    assert run.counts == {State.SKIPPED_NO_EMAIL: 1, State.SKIPPED_UNSUBSCRIBED: 1, State.SKIPPED_NO_PUBLIC_URL: 1}
    assert "OMA_PUBLIC_URL is not set" in caplog.text
    assert mail.outbox == []
    assert rows(no_email) == [("in_transit", State.SKIPPED_NO_EMAIL)]


def test_emails_turned_off_before_their_turn_are_not_sent(store, opted_in, public_url):
    shipment = new_shipment(store, new_order(store))
    carrier_says([shipment], "in_transit")
    detect(shipment)
    opted_in.notify_in_transit = False
    notification_settings_save(settings_row=opted_in)
    assert notifications_send_due().counts == {State.SKIPPED_DISABLED: 1}
    assert rows(shipment) == [("in_transit", State.SKIPPED_DISABLED)]
    assert mail.outbox == []


def test_stale_rows_are_skipped(store, opted_in, public_url):
    shipment = new_shipment(store, new_order(store))
    carrier_says([shipment], "in_transit")
    detect(shipment)
    ShipmentNotification.objects.filter(shipment=shipment).update(due_at=timezone.now() - timedelta(days=2))
    assert notifications_send_due().counts == {State.SKIPPED_STALE: 1}
    assert mail.outbox == []


class DownServer(LocmemBackend):
    def send_messages(self, messages):
        raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")


class RefusingServer(LocmemBackend):
    def send_messages(self, messages):
        raise smtplib.SMTPRecipientsRefused({"x@example.com": (550, b"no such user")})


def test_a_mail_server_that_is_down_means_due_again_later_then_failed(store, opted_in, public_url):
    shipment = new_shipment(store, new_order(store))
    carrier_says([shipment], "in_transit")
    detect(shipment)
    assert notifications_send_due(connection=DownServer()).counts == {State.DUE: 1}
    row = ShipmentNotification.objects.get(shipment=shipment)
    assert (row.state, row.attempts) == (State.DUE, 1)
    assert row.due_at > timezone.now() and "SMTPServerDisconnected" in row.last_error
    assert notifications_send_due(connection=DownServer()).total == 0  # not due yet
    for _attempt in range(2, MAX_ATTEMPTS + 1):
        ShipmentNotification.objects.filter(pk=row.pk).update(due_at=timezone.now())
        notifications_send_due(connection=DownServer())
    row.refresh_from_db()
    assert (row.state, row.attempts) == (State.FAILED, MAX_ATTEMPTS)


def test_a_refused_recipient_fails_at_once(store, opted_in, public_url):
    shipment = new_shipment(store, new_order(store))
    carrier_says([shipment], "in_transit")
    detect(shipment)
    assert notifications_send_due(connection=RefusingServer()).counts == {State.FAILED: 1}


def test_a_row_left_sending_is_never_sent_again_unless_the_merchant_says_so(store, opted_in, public_url):
    shipment = new_shipment(store, new_order(store))
    carrier_says([shipment], "in_transit")
    detect(shipment)
    # What a worker killed between the SMTP hand-over and the `sent` commit leaves behind.
    started = timezone.now() - SENDING_UNCONFIRMED_AFTER - timedelta(minutes=1)
    ShipmentNotification.objects.filter(shipment=shipment).update(
        state=State.SENDING, attempts=1, sending_started_at=started
    )
    assert notifications_send_due().total == 0
    detect(shipment)
    assert mail.outbox == [] and ShipmentNotification.objects.filter(shipment=shipment).count() == 1
    row = ShipmentNotification.objects.get(shipment=shipment)
    assert notification_unconfirmed(row)
    assert notifications_send_again(notification_ids=[row.pk]) == 1
    assert notifications_send_due().counts == {State.SENT: 1}
    assert len(mail.outbox) == 1


def test_unsubscribing_after_detection_still_stops_the_email(store, opted_in, public_url):
    shipment = new_shipment(store, new_order(store))
    carrier_says([shipment], "delivered")
    detect(shipment)
    order_unsubscribe(order=shipment.order)
    order_unsubscribe(order=shipment.order)  # idempotent
    assert OrderUnsubscribe.objects.count() == 1
    assert notifications_send_due().counts == {State.SKIPPED_UNSUBSCRIBED: 1}


def test_a_merchant_template_for_one_store_wins(store, opted_in, public_url, settings, tmp_path):
    own = tmp_path / "notifications" / store.domain
    own.mkdir(parents=True)
    (own / "delivered_subject.txt").write_text("{{ store_name }}: {{ order_label }} arrived!")
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [tmp_path, *settings.TEMPLATES[0]["DIRS"]]}]
    shipment = new_shipment(store, new_order(store, name="#77"))
    carrier_says([shipment], "delivered")
    detect(shipment)
    notifications_send_due()
    assert mail.outbox[0].subject == "Acme & Sons: #77 arrived!"
    assert "has been delivered" in mail.outbox[0].body  # the other templates are still the shipped ones


def test_the_store_language_is_used(store, opted_in, public_url):
    opted_in.language = "fr"
    notification_settings_save(settings_row=opted_in)
    shipment = new_shipment(store, new_order(store))
    carrier_says([shipment], "delivered")
    detect(shipment)
    notifications_send_due()
    row = ShipmentNotification.objects.get(shipment=shipment)
    assert row.language == "fr"
    assert '<html lang="fr">' in mail.outbox[0].alternatives[0][0]


def test_a_merchant_template_that_does_not_render_fails_the_row_and_says_why(store, opted_in, public_url, settings,
                                                                            tmp_path):
    (tmp_path / "notifications").mkdir()
    (tmp_path / "notifications" / "delivered.txt").write_text("{% extends 'notifications/missing.txt' %}")
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [tmp_path, *settings.TEMPLATES[0]["DIRS"]]}]
    shipment = new_shipment(store, new_order(store))
    carrier_says([shipment], "delivered")
    detect(shipment)
    assert notifications_send_due().counts == {State.FAILED: 1}
    row = ShipmentNotification.objects.get(shipment=shipment)
    assert "TemplateDoesNotExist" in row.last_error and row.attempts == 0
    assert mail.outbox == []
