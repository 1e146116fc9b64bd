"""External orders through the channel webhook (real HTTP, the shared delivery worker), and customers/redact on them.

An order payload is checked by the view (400 listing every problem, nothing stored), stored once whatever the number
of webhook-ids it comes under, and handled before the shipments of the same delivery: their record waits for the
order, and matches it once it is created in Genstore.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from oma.channels.connectors.webhook import sign
from oma.channels.inbound import CHANNEL_TOPIC
from oma.channels.models import Channel, ExternalOrder, ExternalShipment
from oma.channels.order_create import external_orders_drain
from oma.channels.order_intake import external_orders_receive
from oma.channels.services import channel_create
from oma.orders.compliance import customer_deliveries_erase, customer_redact, delivery_body_without_personal_data
from oma.sandbox.server import GenstoreSandbox
from oma.stores.models import Store
from tests.admin.factories import ExternalOrderInputFactory
from tests.genstore_sandbox import connect, start_sandbox
from tracking.models import Shipment
from webhooks.models import WebhookDelivery
from webhooks.processing import deliveries_process

pytestmark = [pytest.mark.postgres]

State = ExternalOrder.State


@pytest.fixture
def sandbox() -> Iterator[GenstoreSandbox]:
    box = start_sandbox(orders=3, seed=13, rate_limit=None)
    yield box
    box.stop()


@pytest.fixture
def store(sandbox: GenstoreSandbox, redis_client) -> Store:
    return connect(sandbox, rate_limit=(1000, 1000.0))


@pytest.fixture
def channel(store: Store) -> Channel:
    return channel_create(store=store, kind="webhook", name="TikTok Shop", source_names=["tiktok"])


def order_payload(external_id: str = "TT-1001", **order: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "createdAt": "2026-11-01T10:12:13Z",
        "currency": "USD",
        "email": "ana@example.com",
        "name": "Ana Souza",
        "lineItems": [{"sku": "MUG-1", "title": "Mug", "quantity": 2, "price": "12.50", "lineItemId": "tt-1"}],
        "shippingAddress": {"name": "Ana Souza", "address1": "1200 Pine St", "city": "Seattle", "zip": "98101",
                            "countryCode": "US"},
        "shippingPrice": "4.99",
    }
    body.update(order)
    return {"externalOrderId": external_id, "order": body}


def post(live_server, channel: Channel, payload: object, *, msg_id: str) -> requests.Response:
    body = json.dumps(payload).encode()
    timestamp = int(time.time())
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret=channel.signing_secret, msg_id=msg_id, timestamp=timestamp, body=body),
        "Content-Type": "application/json",
    }
    return requests.post(f"{live_server.url}/webhooks/channels/{channel.slug}/", data=body, headers=headers, timeout=10)


def run_worker() -> list[str]:
    """What the Celery worker does with the stored deliveries: the same service, here; their outcomes."""
    pending = list(
        WebhookDelivery.objects.filter(state=WebhookDelivery.State.RECEIVED).order_by("pk").values_list("pk", flat=True)
    )
    deliveries_process(delivery_ids=pending)
    return list(WebhookDelivery.objects.filter(pk__in=pending).order_by("pk").values_list("outcome", flat=True))


def test_an_order_is_checked_stored_once_and_a_channel_without_source_names_is_told(live_server, channel, store):
    bad = post(live_server, channel, order_payload(currency=None, lineItems=[
        {"sku": "MUG-1", "title": "Mug", "quantity": 0, "price": "12.50"}]), msg_id="msg_bad")
    assert bad.status_code == 400
    problems = bad.json()["problems"]
    assert any("currency" in problem for problem in problems) and any("quantity" in problem for problem in problems)
    assert not WebhookDelivery.objects.exists() and not ExternalOrder.objects.exists()

    first = post(live_server, channel, order_payload(), msg_id="msg_1")
    assert first.status_code == 200, first.text
    assert run_worker() == ["channel " + channel.slug + ": orders: 1 new"]
    row = ExternalOrder.objects.get()
    assert (row.state, row.source_name, row.external_order_id) == (State.PENDING, "tiktok", "TT-1001")
    assert row.delivery_id == WebhookDelivery.objects.get().pk
    assert [(line.sku, line.quantity, str(line.price), line.external_line_id) for line in row.lines.all()] == [
        ("MUG-1", 2, "12.50", "tt-1")]

    again = post(live_server, channel, order_payload(), msg_id="msg_2")  # the platform resends under a new id
    assert again.status_code == 200
    assert run_worker() == ["channel " + channel.slug + ": orders: 1 unchanged"]
    assert ExternalOrder.objects.count() == 1

    sheet = channel_create(store=store, kind="webhook", name="No names")
    refused = post(live_server, sheet, order_payload("TT-2"), msg_id="msg_3")
    assert refused.status_code == 400 and refused.json()["error"] == "set the channel's source names"
    assert ExternalOrder.objects.count() == 1


def test_order_and_shipments_in_one_delivery_the_parcel_matches_the_created_order(live_server, channel, sandbox):
    payload = {**order_payload("TT-3003"), "shipments": [{"trackingNumber": "1Z999AA10123456784", "carrier": "ups"}]}
    assert post(live_server, channel, payload, msg_id="msg_both").status_code == 200
    [outcome] = run_worker()
    assert outcome == f"channel {channel.slug}: orders: 1 new; 1 waiting"
    assert ExternalShipment.objects.get().state == ExternalShipment.State.UNMATCHED  # the order is not in Genstore yet

    drained = external_orders_drain(store_id=channel.store_id)

    assert drained.outcomes == {"created": 1}
    row = ExternalOrder.objects.get()
    [genstore] = sandbox.orders_by_source("shop1")
    assert (genstore["sourceName"], genstore["sourceIdentifier"]) == ("tiktok", "TT-3003")
    assert ExternalShipment.objects.get().state == ExternalShipment.State.MATCHED
    assert Shipment.objects.get().order.order_id == row.genstore_order_id == genstore["orderId"]


def test_customers_redact_erases_external_orders_and_a_later_input_does_not_bring_the_buyer_back(
    live_server, channel, store
):
    assert post(live_server, channel, order_payload("TT-4004"), msg_id="msg_r").status_code == 200
    run_worker()
    delivery = WebhookDelivery.objects.get()
    external_orders_drain(store_id=store.pk)
    row = ExternalOrder.objects.get()
    assert row.state == State.CREATED
    other = external_orders_receive(channel=channel, orders=[ExternalOrderInputFactory(email="ana@example.com")])

    customer = {"id": "1", "email": "ana@example.com"}
    # What the customers/redact handler does (oma.orders.compliance.process_customer_redact): the customer_redacted
    # signal carries the customer, so external orders bought with the same email are erased too.
    redacted = customer_redact(store=store, customer=customer, order_ids=[row.genstore_order_id])
    customer_deliveries_erase(store=store, customer=customer, order_ids=[row.genstore_order_id],
                              also=redacted.report_delivery_ids)

    row.refresh_from_db()
    assert row.personal_data_erased_at is not None
    assert (row.email, row.customer_name, row.phone, row.raw) == ("", "", "", {})
    assert row.shipping_address == {"country_code": "US"}
    assert row.content["email"] == "" and row.content["shippingAddress"] == {"country_code": "US"}
    assert row.lines.get().sku == "MUG-1"  # what was sold stays
    # The stored delivery keeps what the order is, not who bought it.
    delivery.refresh_from_db()
    assert delivery.redacted_at is not None
    kept = json.loads(delivery.body)
    assert kept["order"]["lineItems"] == [{"sku": "MUG-1", "title": "Mug", "quantity": 2, "price": "12.50",
                                           "lineItemId": "tt-1"}]
    assert kept["order"]["shippingAddress"] == {"countryCode": "US"} and "email" not in kept["order"]
    same_email = ExternalOrder.objects.get(pk=other.new_ids[0])
    assert same_email.personal_data_erased_at is not None and same_email.email == ""

    changed = order_payload("TT-4004", note="ring twice", phone="+1 206 555 0142", shippingPrice="5.99")
    assert post(live_server, channel, changed, msg_id="msg_r2").status_code == 200
    run_worker()
    row.refresh_from_db()
    assert (row.email, row.phone, row.customer_name, row.raw) == ("", "", "", {})
    [change] = row.later_changes  # what is not personal is recorded, the buyer is not
    assert change["changes"] == ["shippingPrice"]
    assert change["content"]["email"] == "" and change["content"]["phone"] == "" and change["content"]["note"] == ""
    assert change["content"]["shippingAddress"] == {"country_code": "US"}


def test_the_stored_body_of_an_order_delivery_keeps_only_what_the_order_is():
    body = json.dumps({"type": "order.created", "data": order_payload("TT-5", note="gift for Bo", phone="555")})
    kept = json.loads(delivery_body_without_personal_data(topic=CHANNEL_TOPIC, body=body))
    order = kept["data"]["order"]
    assert kept["data"]["externalOrderId"] == "TT-5"
    assert set(order) == {"createdAt", "currency", "lineItems", "shippingAddress", "shippingPrice"}
    assert order["shippingAddress"] == {"countryCode": "US"}
