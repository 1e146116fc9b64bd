"""Channel webhooks (/webhooks/channels/<slug>/) against odd headers and payloads, replays and probing.

Through Django's test client with raise_request_exception=False, so a crash is seen as the 500 a sender would get.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest
from django.test import Client

from oma.channels.connectors.webhook import sign
from oma.channels.models import Channel
from oma.channels.services import channel_create
from oma.stores.models import Store
from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.django_db

PAYLOAD = {"externalOrderId": "IG-1001", "shipments": [{"trackingNumber": "PARCEL0000001"}]}


@pytest.fixture(autouse=True)
def _in_process_webhook_settings(settings: Any) -> None:
    # Publish from the request's thread: a background publisher would use a connection outside the test's transaction.
    settings.OMA_WEBHOOK_BACKGROUND_PUBLISH = 0


@pytest.fixture
def http() -> Client:
    return Client(raise_request_exception=False)


@pytest.fixture
def store() -> Store:
    return Store.objects.create(domain="shop1.genmystore.com", access_token="token", client_secret="secret")


@pytest.fixture
def channel(store: Store) -> Channel:
    return channel_create(store=store, kind="webhook", name="Marketplace")


def signed_headers(channel: Channel, body: bytes, *, msg_id: str = "msg_1", at: float | None = None) -> dict[str, str]:
    timestamp = int(at if at is not None else time.time())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret=channel.signing_secret, msg_id=msg_id, timestamp=timestamp, body=body),
    }


def post(http: Client, slug: str, body: bytes, headers: dict[str, str]) -> Any:
    return http.post(f"/webhooks/channels/{slug}/", data=body, content_type="application/json", headers=headers)


def answer(response: Any) -> tuple[int, bytes, list[tuple[str, str]]]:
    """Everything a caller sees of a response."""
    return response.status_code, response.content, sorted(response.items())


@pytest.mark.parametrize(
    ("case", "timestamp"),
    [
        ("superscript two", "²"),
        ("400 nines", "9" * 400),
        ("5000 nines", "9" * 5000),
        ("13 digits", "0" + str(int(time.time())) + "0"),
        ("leading plus", "+" + str(int(time.time()))),
        ("underscores", f"{int(time.time()):_}"),
    ],
    # Named by the case alone: a timestamp in the id would differ between pytest-xdist workers collecting a second
    # apart, and xdist refuses to run when its workers collect different tests.
    ids=lambda value: value if value.isalpha() or " " in value else "",
)
def test_channel_webhook_answers_401_to_a_timestamp_that_is_not_1_to_12_ascii_digits(http, channel, case, timestamp):
    body = json.dumps(PAYLOAD).encode()
    headers = {**signed_headers(channel, body), "webhook-timestamp": timestamp}
    response = post(http, channel.slug, body, headers)
    assert response.status_code == 401, case
    assert not WebhookDelivery.objects.exists()


def test_channel_webhook_refuses_non_ascii_digits_even_when_they_spell_a_valid_signed_time(http, channel):
    body = json.dumps(PAYLOAD).encode()
    headers = signed_headers(channel, body)  # signed over the ASCII timestamp
    arabic_indic = headers["webhook-timestamp"].translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    response = post(http, channel.slug, body, {**headers, "webhook-timestamp": arabic_indic})
    assert response.status_code == 401
    assert not WebhookDelivery.objects.exists()


def test_channel_webhook_gives_one_identical_401_whatever_the_reason(http, store, channel, caplog):
    body = json.dumps(PAYLOAD).encode()
    good = signed_headers(channel, body)
    csv_channel = channel_create(store=store, kind="csv", name="Sheet")  # exists, but takes no webhooks
    cases = {
        "unknown channel": (
            "no-such-channel", good),
        "channel taking no webhooks": (
            csv_channel.slug, good),
        "missing signature": (
            channel.slug, {k: v for k, v in good.items() if k != "webhook-signature"}),
        "no signature matches": (
            channel.slug, {**good, "webhook-signature": sign(secret="whsec_" + "QUJD" * 8, msg_id="msg_1",
                                                             timestamp=int(good["webhook-timestamp"]), body=body)}),
        "expired timestamp": (
            channel.slug, signed_headers(channel, body, at=time.time() - 600)),
        "malformed timestamp": (
            channel.slug, {**good, "webhook-timestamp": "²"}),
        "malformed webhook-id": (
            channel.slug, {**good, "webhook-id": "a.b"}),
    }
    answers = {}
    with caplog.at_level(logging.WARNING, logger="oma.channels"):
        for case, (slug, headers) in cases.items():
            answers[case] = answer(post(http, slug, body, headers))
    assert {status for status, _, _ in answers.values()} == {401}
    assert len(set(map(repr, answers.values()))) == 1, answers  # nothing tells one reason from another
    assert b"unknown" not in answers["unknown channel"][1]
    # The operator still learns why, from the log.
    for reason in ("unknown channel", "missing", "no signature matches", "5 minutes", "webhook-timestamp",
                   "webhook-id is malformed"):
        assert reason in caplog.text
    assert not WebhookDelivery.objects.exists()


def test_channel_webhook_refuses_a_signed_body_resent_under_another_webhook_id(http, channel):
    """Standard Webhooks signs the id with the body, so a captured delivery cannot be replayed as a new one."""
    body = json.dumps(PAYLOAD).encode()
    headers = signed_headers(channel, body, msg_id="msg_original")
    assert post(http, channel.slug, body, headers).status_code == 200
    assert post(http, channel.slug, body, {**headers, "webhook-id": "msg_new"}).status_code == 401
    assert post(http, channel.slug, body, headers).status_code == 401  # the same id again: a replay
    assert WebhookDelivery.objects.count() == 1


@pytest.mark.parametrize(
    ("case", "quantity"),
    [("superscript digit", "²"), ("5000 digits", "9" * 5000), ("4000-digit number", 10**4000),
     ("Arabic-Indic digits", "٣")],
    ids=lambda value: value if isinstance(value, str) and len(value) < 20 and value.isascii() else "",
)
def test_channel_webhook_answers_400_to_an_authentic_payload_with_an_unusable_quantity(http, channel, case, quantity):
    payload = {"externalOrderId": "IG-1", "shipments": [
        {"trackingNumber": "PARCEL0000001", "lineItems": [{"sku": "SKU-A", "quantity": quantity}]}]}
    body = json.dumps(payload).encode()
    response = post(http, channel.slug, body, signed_headers(channel, body))
    assert response.status_code == 400, case
    assert any("quantity" in problem for problem in response.json()["problems"]), response.json()
    assert not WebhookDelivery.objects.exists()


def test_channel_webhook_stores_the_same_body_again_under_a_new_signed_id(http, channel):
    """A platform may resend the same shipments as a new message (a resync): its signed id makes it no replay."""
    body = json.dumps(PAYLOAD).encode()
    assert post(http, channel.slug, body, signed_headers(channel, body, msg_id="msg_first")).status_code == 200
    assert post(http, channel.slug, body, signed_headers(channel, body, msg_id="msg_resync")).status_code == 200
    assert WebhookDelivery.objects.count() == 2
