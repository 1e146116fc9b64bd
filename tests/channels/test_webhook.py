"""Inbound channel webhooks: Standard Webhooks signatures, and deliveries through real HTTP (live_server)."""

from __future__ import annotations

import base64
import io
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
from django.core.management import call_command

from oma.channels.connectors.base import PayloadError
from oma.channels.connectors.webhook import (
    SignatureError,
    generate_secret,
    parse_payload,
    secret_key,
    sign,
    verify,
)
from oma.channels.models import Channel, ExternalShipment
from oma.channels.services import channel_create, channel_rotate_signing_secret
from oma.orders.models import LineItem
from tests.channels.conftest import order_record, sync_orders
from tracking.models import Shipment
from webhooks.models import WebhookDelivery

# --- signatures (no database) -------------------------------------------------------------------------------


def test_secret_is_whsec_and_base64_of_random_bytes():
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert 24 <= len(secret_key(secret)) <= 64
    assert generate_secret() != secret


def test_signature_matches_the_standard_webhooks_reference_vector():
    # The Standard Webhooks spec's example (libraries' shared test vector).
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert sign(secret=secret, msg_id="msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp=1614265330, body=body) == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def headers_for(secret: str, body: bytes, *, msg_id: str = "msg_1", at: float | None = None) -> dict[str, str]:
    timestamp = int(at if at is not None else time.time())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret=secret, msg_id=msg_id, timestamp=timestamp, body=body),
        "Content-Type": "application/json",
    }


def test_verify_accepts_any_matching_signature_among_several_and_checks_time_both_ways():
    secret, other = generate_secret(), generate_secret()
    body = b'{"a": 1}'
    good = headers_for(secret, body)
    several = dict(good, **{"webhook-signature": f"v1,bm90IGl0 {headers_for(other, body)['webhook-signature']} "
                                                f"{good['webhook-signature']}"})
    assert verify(secrets_=[secret], headers=several, body=body).msg_id == "msg_1"
    assert verify(secrets_=[other, secret], headers=good, body=body)  # a rotation: the previous secret matches
    with pytest.raises(SignatureError, match="no signature matches"):
        verify(secrets_=[secret], headers=good, body=b'{"a": 2}')
    with pytest.raises(SignatureError, match="5 minutes"):
        verify(secrets_=[secret], headers=headers_for(secret, body, at=time.time() - 301), body=body)
    with pytest.raises(SignatureError, match="5 minutes"):
        verify(secrets_=[secret], headers=headers_for(secret, body, at=time.time() + 301), body=body)
    with pytest.raises(SignatureError, match="missing"):
        verify(secrets_=[secret], headers={"webhook-id": "x"}, body=body)
    with pytest.raises(SignatureError, match="no v1 signature"):
        verify(secrets_=[secret], headers=dict(good, **{"webhook-signature": "v1a,abc"}), body=body)


def test_payload_problems_are_all_listed():
    with pytest.raises(PayloadError) as caught:
        parse_payload({"shipments": [{"trackingNumber": "1"}, {"trackingNumber": "PARCEL0001",
                                                                 "lineItems": [{"quantity": 0}]}, 5]})
    problems = caught.value.problems
    assert "externalOrderId is missing" in problems
    assert any("shipments[0].trackingNumber" in p and "malformed" in p for p in problems)
    assert "shipments[1].lineItems[0] needs a sku or a lineItemId" in problems
    assert "shipments[1].lineItems[0].quantity must be a whole number of at least 1" in problems
    assert "shipments[2] must be an object" in problems
    records = parse_payload({"externalOrderId": 1234, "shipments": [
        {"trackingNumber": "1z 999 aa1 0123456784", "carrier": "UPS", "status": "VOIDED",
         "shippedAt": "2024-05-01T10:00:00Z", "lineItems": [{"sku": "A", "quantity": "2"}]}]})
    assert records[0].external_order_id == "1234" and records[0].tracking_number == "1Z999AA10123456784"
    assert records[0].voided and records[0].carrier == "ups" and records[0].lines[0].quantity == 2


# --- through real HTTP -------------------------------------------------------------------------------------


@pytest.fixture
def webhook_channel(store) -> Channel:
    out = io.StringIO()
    call_command("channel", "add", "--store", store.domain, "--kind", "webhook", "--name", "Marketplace",
                 "--source-names", "instagram,tiktok", stdout=out)
    created = json.loads(out.getvalue())
    assert created["secret"].startswith("whsec_") and created["webhookPath"] == f"/webhooks/channels/{created['slug']}/"
    return Channel.objects.get(slug=created["slug"])


def post(live_server, channel: Channel, payload: object, *, secret: str | None = None, msg_id: str = "msg_1",
         at: float | None = None, slug: str | None = None, raw: bytes | None = None) -> requests.Response:
    body = raw if raw is not None else json.dumps(payload).encode()
    headers = headers_for(secret or channel.signing_secret, body, msg_id=msg_id, at=at)
    return requests.post(f"{live_server.url}/webhooks/channels/{slug or channel.slug}/", data=body, headers=headers,
                         timeout=10)


def delivery(order: str, *shipments: dict) -> dict:
    return {"externalOrderId": order, "shipments": list(shipments)}


def run_worker() -> int:
    """What the Celery worker does with the deliveries the view stored: the same service, called here."""
    from webhooks.processing import deliveries_process

    pending = list(
        WebhookDelivery.objects.filter(state=WebhookDelivery.State.RECEIVED).order_by("pk").values_list("pk", flat=True)
    )
    for delivery_id in pending:
        deliveries_process(delivery_ids=[delivery_id])[delivery_id]
    return len(pending)


@pytest.mark.postgres
def test_forged_expired_replayed_rejected_valid_creates_and_late_order_matches_on_sync(
    live_server, store, webhook_channel
):
    sync_orders(store, [order_record("1001", [("L1", "SKU-A", 2), ("L2", "SKU-B", 1)], source_name="instagram",
                                     source_identifier="IG-1001")])
    payload = delivery(
        "IG-1001",
        {"trackingNumber": "1Z999AA10123456784", "carrier": "ups", "lineItems": [{"sku": "SKU-A", "quantity": 1}]},
        {"trackingNumber": "PARCEL0000002", "lineItems": [{"lineItemId": "L1", "quantity": 1},
                                                          {"sku": "SKU-B", "quantity": 1}],
         "shippedAt": "2024-05-01T10:00:00Z"},
    )

    forged = post(live_server, webhook_channel, payload, secret=generate_secret(), msg_id="msg_forged")
    expired = post(live_server, webhook_channel, payload, msg_id="msg_old", at=time.time() - 360)
    unknown = post(live_server, webhook_channel, payload, slug="no-such-channel", msg_id="msg_x")
    unsigned = requests.post(f"{live_server.url}/webhooks/channels/{webhook_channel.slug}/",
                             data=json.dumps(payload), timeout=10)
    assert [r.status_code for r in (forged, expired, unknown, unsigned)] == [401, 401, 401, 401]
    assert not Shipment.objects.exists() and not WebhookDelivery.objects.exists()

    valid = post(live_server, webhook_channel, payload, msg_id="msg_valid")
    assert valid.status_code == 200, valid.text
    assert WebhookDelivery.objects.get().state == WebhookDelivery.State.RECEIVED  # stored first
    assert run_worker() == 1
    shipments = {s.tracking_number: s for s in Shipment.objects.filter(store=store)}
    assert set(shipments) == {"1Z999AA10123456784", "PARCEL0000002"}
    assert sorted((line.line_item.sku, line.quantity) for s in shipments.values() for line in s.lines.all()) == [
        ("SKU-A", 1), ("SKU-A", 1), ("SKU-B", 1)]
    assert all(s.source == Shipment.Source.WEBHOOK for s in shipments.values())
    stored = WebhookDelivery.objects.get()
    assert stored.state == WebhookDelivery.State.PROCESSED and stored.topic == "channels/shipments"

    replay_same_bytes = post(live_server, webhook_channel, payload, msg_id="msg_valid")
    replay_resigned_later = post(live_server, webhook_channel, {**payload, "shipments": [
        {"trackingNumber": "PARCEL0000003"}]}, msg_id="msg_valid", at=time.time() + 5)
    assert replay_same_bytes.status_code == 401 and replay_resigned_later.status_code == 401
    assert run_worker() == 0
    assert Shipment.objects.count() == 2 and WebhookDelivery.objects.count() == 1

    # A record for an order that is not mirrored yet waits, and is matched when the order syncs.
    late = post(live_server, webhook_channel, delivery("IG-2002", {"trackingNumber": "PARCEL0000009"}),
                msg_id="msg_late")
    assert late.status_code == 200
    run_worker()
    waiting = ExternalShipment.objects.get(tracking_number="PARCEL0000009")
    assert waiting.state == ExternalShipment.State.UNMATCHED and not Shipment.objects.filter(
        tracking_number="PARCEL0000009").exists()
    sync_orders(store, [order_record("2002", [("L1", "SKU-Z", 3)], source_name="tiktok",
                                     source_identifier="IG-2002")])
    waiting.refresh_from_db()
    assert waiting.state == ExternalShipment.State.MATCHED
    late_shipment = Shipment.objects.get(tracking_number="PARCEL0000009")
    assert late_shipment.order.order_id == "2002"
    assert [(line.line_item.sku, line.quantity) for line in late_shipment.lines.all()] == [("SKU-Z", 3)]


@pytest.mark.postgres
def test_bad_payload_disabled_channel_and_rotation(live_server, store, webhook_channel):
    bad = post(live_server, webhook_channel, {"externalOrderId": "1", "shipments": [{"trackingNumber": "x"}]},
               msg_id="msg_bad")
    assert bad.status_code == 400 and any("malformed" in p for p in bad.json()["problems"])
    nested = post(live_server, webhook_channel, None, raw=b"[" * 10_000 + b"]" * 10_000, msg_id="msg_deep")
    assert nested.status_code == 400
    too_big = post(live_server, webhook_channel, None, raw=b"{" + b" " * (2 * 1024 * 1024) + b"}",
                   msg_id="msg_big")
    assert too_big.status_code == 413

    old_secret = webhook_channel.signing_secret
    channel_rotate_signing_secret(channel=webhook_channel)
    webhook_channel.refresh_from_db()
    sync_orders(store, [order_record("3003")])
    with_old = post(live_server, webhook_channel, delivery("3003", {"trackingNumber": "PARCEL0000031"}),
                    secret=old_secret, msg_id="msg_old_secret")
    assert with_old.status_code == 200  # during the rotation the previous secret still works
    run_worker()
    Channel.objects.filter(pk=webhook_channel.pk).update(
        previous_signing_secret_expires_at=datetime.now(tz=UTC) - timedelta(seconds=1)
    )
    expired_secret = post(live_server, webhook_channel, delivery("3003", {"trackingNumber": "PARCEL0000032"}),
                          secret=old_secret, msg_id="msg_old_secret_2")
    assert expired_secret.status_code == 401

    Channel.objects.filter(pk=webhook_channel.pk).update(is_enabled=False)
    disabled = post(live_server, webhook_channel, delivery("3003", {"trackingNumber": "PARCEL0000033"}),
                    msg_id="msg_disabled")
    assert disabled.status_code == 403
    assert set(Shipment.objects.values_list("tracking_number", flat=True)) == {"PARCEL0000031"}


@pytest.mark.postgres
def test_voided_status_withdraws_and_replaying_the_delivery_log_changes_nothing(
    live_server, store, webhook_channel
):
    from webhooks.replay import deliveries_replay

    sync_orders(store, [order_record("4004", [("L1", "SKU-A", 1)])])
    first = post(live_server, webhook_channel, delivery("4004", {"trackingNumber": "PARCEL0000041"}), msg_id="m1")
    assert first.status_code == 200
    run_worker()
    assert deliveries_replay(deliveries=WebhookDelivery.objects.all()) == 1
    assert run_worker() == 1
    assert Shipment.objects.count() == 1 and ExternalShipment.objects.count() == 1

    voided = post(live_server, webhook_channel,
                  delivery("4004", {"trackingNumber": "PARCEL0000041", "status": "voided"}), msg_id="m2")
    assert voided.status_code == 200
    run_worker()
    shipment = Shipment.objects.get()
    assert shipment.status == "cancelled" and shipment.next_poll_at is None
    assert set(ExternalShipment.objects.values_list("state", flat=True)) == {"withdrawn"}
    # The voided label freed the item: a reissued label takes it.
    reissued = post(live_server, webhook_channel, delivery("4004", {"trackingNumber": "PARCEL0000042"}), msg_id="m3")
    assert reissued.status_code == 200
    run_worker()
    live = Shipment.objects.exclude(status="cancelled").get()
    assert live.tracking_number == "PARCEL0000042" and live.lines.get().line_item == LineItem.objects.get()


def test_only_webhook_channels_get_a_secret(store):
    assert channel_create(store=store, kind="csv", name="Sheet").signing_secret == ""
    assert base64.b64decode(channel_create(store=store, kind="webhook", name="Hook").signing_secret[6:])
