"""The daily alert digest: thresholds the merchant sets, one email per store and day, nothing when all is well."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from oma.merchant.alerts import alert_digest_send, alert_digests_send_due
from oma.merchant.models import AlertDigest, AlertPolicy
from oma.merchant.tasks import send_alert_digests
from tests.admin.factories import OrderFactory, ShipmentFactory, StoreFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def now():
    return timezone.now().replace(hour=12, minute=0, second=0, microsecond=0)


@pytest.fixture
def store(now):
    store = StoreFactory(name="Teapots")
    AlertPolicy.objects.create(store=store, recipients="ops@teapots.example\nboss@teapots.example",
                               not_picked_up_after_days=3, stuck_after_days=5, late_after_days=1, send_hour_utc=7)
    return store


def _parcel(store, **fields):
    return ShipmentFactory(order=OrderFactory(store=store), **fields)


def test_digest_lists_what_crosses_the_merchants_thresholds(store, now):
    exception = _parcel(store, status="exception", substatus="customs_hold", raw_text="Held in customs",
                        status_changed_at=now - timedelta(hours=3))
    _parcel(store, status="exception", status_changed_at=now - timedelta(days=5))  # old news: not new
    not_picked = _parcel(store, status="info_received", last_event_at=None)
    type(not_picked).objects.filter(pk=not_picked.pk).update(created_at=now - timedelta(days=4))
    _parcel(store, status="info_received", last_event_at=None)  # label made today: fine
    stuck = _parcel(store, status="in_transit", last_event_at=now - timedelta(days=6))
    _parcel(store, status="in_transit", last_event_at=now - timedelta(days=4))  # under the 5-day threshold
    late = _parcel(store, status="in_transit", last_event_at=now - timedelta(hours=1),
                   estimated_delivery_date=(now - timedelta(days=3)).date())
    _parcel(store, status="in_transit", last_event_at=now - timedelta(hours=1),
            estimated_delivery_date=now.date())  # due today: not late yet
    _parcel(StoreFactory(), status="exception", status_changed_at=now)  # another store's

    digest = alert_digest_send(store=store, now=now)
    assert digest.state == AlertDigest.State.SENT
    assert digest.counts == {"exceptions": 1, "not_picked_up": 1, "stuck": 1, "late": 1}
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["ops@teapots.example", "boss@teapots.example"]
    assert "Teapots" in message.subject and "1 exceptions" in message.subject
    for parcel in (exception, not_picked, stuck, late):
        assert parcel.tracking_number in message.body
    assert "Held in customs" in message.body


def test_sent_once_a_day_and_only_from_the_chosen_hour(store, now):
    _parcel(store, status="exception", status_changed_at=now - timedelta(hours=1))
    early = now.replace(hour=6)
    assert alert_digests_send_due(now=early) == 0
    assert alert_digests_send_due(now=now) == 1
    assert alert_digests_send_due(now=now + timedelta(hours=2)) == 0
    assert len(mail.outbox) == 1
    assert AlertDigest.objects.filter(store=store).count() == 1


def test_nothing_to_report_sends_nothing(store, now):
    _parcel(store, status="delivered", last_event_at=now - timedelta(days=30))
    digest = alert_digest_send(store=store, now=now)
    assert digest.state == AlertDigest.State.NOTHING
    assert mail.outbox == []


def test_new_exceptions_are_those_since_the_previous_digest(store, now):
    _parcel(store, status="exception", status_changed_at=now - timedelta(days=1, hours=2))
    alert_digest_send(store=store, now=now - timedelta(days=1))
    second = _parcel(store, status="attempt_failed", status_changed_at=now - timedelta(hours=2))
    digest = alert_digest_send(store=store, now=now)
    assert digest.counts["exceptions"] == 1
    assert second.tracking_number in digest.body


def test_a_failed_send_is_retried_by_the_next_run(store, now, settings):
    _parcel(store, status="exception", status_changed_at=now)
    settings.EMAIL_BACKEND = "tests.admin.test_alert_digest.FailingBackend"
    digest = alert_digest_send(store=store, now=now)
    assert digest.state == AlertDigest.State.PENDING and digest.attempts == 1 and "refused" in digest.last_error
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert alert_digests_send_due(now=now + timedelta(minutes=15)) == 1
    digest.refresh_from_db()
    assert digest.state == AlertDigest.State.SENT and digest.attempts == 2
    assert len(mail.outbox) == 1


def test_the_beat_task_runs_the_same_service(store):
    _parcel(store, status="exception", status_changed_at=timezone.now())
    AlertPolicy.objects.filter(store=store).update(send_hour_utc=0)
    assert send_alert_digests.apply().get() == 1
    assert send_alert_digests.apply().get() == 0


class FailingBackend:
    def __init__(self, *args, **kwargs):
        pass

    def send_messages(self, messages):
        raise ConnectionRefusedError("SMTP server refused")
