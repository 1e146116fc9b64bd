"""The daily digest's sections for what stopped working: failed pushes, failed external-order creates, tracking
records waiting more than a day for their order, channels refused by their platform, failing carrier accounts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from oma.channels.models import Channel, ExternalOrder, ExternalShipment
from oma.fulfillment.models import FulfillmentPush
from oma.merchant.alerts import alert_digest_send
from oma.merchant.models import AlertPolicy
from tests.admin.factories import OrderFactory, ShipmentFactory, StoreFactory
from tracking.models import CarrierAccount

pytestmark = pytest.mark.django_db


@pytest.fixture
def now():
    return timezone.now().replace(hour=12, minute=0, second=0, microsecond=0)


@pytest.fixture
def store():
    store = StoreFactory(name="Teapots")
    AlertPolicy.objects.create(store=store, recipients="ops@teapots.example", send_hour_utc=7)
    return store


def _push(store, state, reason=""):
    order = OrderFactory(store=store, name=f"#{state}")
    shipment = ShipmentFactory(order=order, tracking_number=f"1ZPUSH{state.upper()}")
    return FulfillmentPush.objects.create(
        key=FulfillmentPush.key_for(store_id=store.pk, order_id=order.order_id, shipment_id=shipment.pk),
        store=store, order=order, shipment=shipment, state=state, state_reason=reason,
        source_tracking_number=shipment.tracking_number, fulfill_id="F1" if state == "succeeded" else "",
    )


def _record(channel, number, *, received, state=ExternalShipment.State.UNMATCHED):
    record = ExternalShipment.objects.create(store=channel.store, channel=channel, external_order_id=f"X-{number}",
                                             tracking_number=number, dedupe_key=number, state=state)
    ExternalShipment.objects.filter(pk=record.pk).update(received_at=received)
    return record


def test_the_digest_lists_what_stopped_working_and_only_the_stores_own(store, now):
    _push(store, "failed", "Genstore refused the push: line item is already fulfilled")
    _push(store, "succeeded")
    csv = Channel.objects.create(store=store, name="Amazon CSV", slug="amazon-csv", kind="csv")
    _record(csv, "1ZOLDWAITING", received=now - timedelta(days=2))
    _record(csv, "1ZNEWWAITING", received=now - timedelta(hours=3))  # waiting for hours only: not news yet
    _record(csv, "1ZMATCHED", received=now - timedelta(days=3), state=ExternalShipment.State.MATCHED)
    ExternalOrder.objects.create(store=store, channel=csv, external_order_id="114-1", source_name="amazon",
                                 ordered_at=now, currency="USD", content_sha256="x" * 64, state="failed",
                                 last_error="email is invalid")
    refused = Channel.objects.create(store=store, name="ShipStation", slug="ss", kind="shipstation",
                                     last_polled_at=now, poll_paused_until=now + timedelta(hours=1),
                                     last_error="ShipStation refused the API key and secret (401)")
    Channel.objects.create(store=store, name="Flaky", slug="flaky", kind="shipstation", last_polled_at=now,
                           poll_paused_until=now + timedelta(minutes=5), last_error="timed out")  # transient
    CarrierAccount.objects.create(store=store, carrier="fedex", consecutive_failures=4,
                                  last_error="FedEx refused the client id")
    CarrierAccount.objects.create(store=store, carrier="ups", consecutive_failures=1, last_error="HTTP 503")  # blip
    CarrierAccount.objects.create(carrier="dhl", consecutive_failures=9, last_error="shared: the operator's")
    other = StoreFactory()
    _push(other, "failed", "another store's")

    digest = alert_digest_send(store=store, now=now)
    assert digest.counts["failed_pushes"] == 1
    assert digest.counts["external_failed"] == 1
    assert digest.counts["unmatched_records"] == 1
    assert digest.counts["channels_failing"] == 1
    assert digest.counts["carrier_accounts_failing"] == 1
    body = mail.outbox[0].body
    assert "already fulfilled" in body and "1ZPUSHFAILED" in body and "another store's" not in body
    assert "email is invalid" in body
    assert "1ZOLDWAITING" in body and "1ZNEWWAITING" not in body and "1ZMATCHED" not in body
    assert "refused the API key" in body and f"/channels/channel/{refused.pk}/change/" in body
    assert "timed out" not in body
    assert "FedEx refused the client id" in body and "HTTP 503" not in body and "the operator's" not in body
    assert "1 failed pushes" in mail.outbox[0].subject


def test_sections_with_nothing_in_them_are_left_out(store, now):
    ShipmentFactory(order=OrderFactory(store=store), status="exception", status_changed_at=now)
    digest = alert_digest_send(store=store, now=now)
    assert set(digest.counts) == {"exceptions", "not_picked_up", "stuck", "late"}
    assert "Fulfillments Genstore refused" not in digest.body
