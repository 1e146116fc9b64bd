"""The channel webhook's "order" object: parse_order_payload, parse_payload with an order, and the view's 400."""

from __future__ import annotations

import io
import json
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import call_command

from oma.channels.connectors.base import AddressInput, ExternalOrderLineInput, PayloadError
from oma.channels.connectors.webhook import parse_order_payload, parse_payload, sign
from oma.channels.models import Channel
from webhooks.models import WebhookDelivery


def order_body(**order: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "createdAt": "2026-11-01T10:12:13Z",
        "currency": "usd",
        "lineItems": [{"sku": "MUG-1", "title": "Mug", "quantity": 2, "price": "12.50"}],
    }
    body.update(order)
    return {"externalOrderId": "TT-1001", "order": {k: v for k, v in body.items() if v is not ...}}


def problems_of(payload: Any) -> list[str]:
    with pytest.raises(PayloadError) as caught:
        parse_order_payload(payload)
    return caught.value.problems


def test_a_full_order_object_becomes_an_external_order_input():
    order = parse_order_payload(order_body(
        createdAt="2026-11-01T02:12:13-08:00",
        email="ana@example.com",
        phone="+1 206 555 0142",
        name="Ana Souza",
        lineItems=[
            {"sku": "MUG-1", "title": "Mug", "quantity": "2", "price": "12.5", "variantTitle": "Blue",
             "lineItemId": "tt-line-1"},
            {"sku": 4711, "title": "Coaster", "quantity": 1, "price": 3},
        ],
        shippingAddress={"name": "Ana Souza", "address1": "1200 Pine St", "city": "Seattle",
                         "provinceCode": "Washington", "zip": "98101", "countryCode": "United States",
                         "phone": "+1 206 555 0142", "unknownKey": "ignored"},
        billingAddress={"company": "Souza LLC", "countryCode": "de"},
        shippingPrice="4.99",
        totalTax="2.10",
        financialStatus="Pending",
        cancelledAt="2026-11-02T00:00:00Z",
        note="leave at the door",
        tags="gift, tiktok ,",
    ), source_ref="delivery msg_1")
    assert order is not None
    assert (order.external_order_id, order.created_at, order.currency) == (
        "TT-1001", datetime(2026, 11, 1, 10, 12, 13, tzinfo=UTC), "USD")
    assert order.lines == (
        ExternalOrderLineInput(sku="MUG-1", title="Mug", quantity=2, price=Decimal("12.50"), variant_title="Blue",
                               external_line_id="tt-line-1"),
        ExternalOrderLineInput(sku="4711", title="Coaster", quantity=1, price=Decimal("3.00")),
    )
    assert order.shipping_address == AddressInput(name="Ana Souza", address1="1200 Pine St", city="Seattle",
                                                  province_code="WA", zip="98101", country_code="US",
                                                  phone="+1 206 555 0142")
    assert order.billing_address == AddressInput(company="Souza LLC", country_code="DE")
    assert (order.email, order.phone, order.name) == ("ana@example.com", "+1 206 555 0142", "Ana Souza")
    assert (order.shipping_price, order.total_tax, order.financial_status) == (
        Decimal("4.99"), Decimal("2.10"), "pending")
    assert order.cancelled_at == datetime(2026, 11, 2, tzinfo=UTC)
    assert (order.note, order.tags, order.source_ref) == ("leave at the door", ("gift", "tiktok"), "delivery msg_1")
    assert order.raw["order"]["shippingAddress"]["unknownKey"] == "ignored"


def test_minimal_order_inside_a_standard_webhooks_envelope_and_no_order_at_all():
    order = parse_order_payload({"type": "order.created", "timestamp": "2026-11-01T10:12:14Z",
                                 "data": order_body(financialStatus="paid", tags=["a", "b"])})
    assert order is not None and order.lines[0].price == Decimal("12.50") and order.currency == "USD"
    assert (order.financial_status, order.tags, order.shipping_address, order.email) == ("", ("a", "b"), None, "")
    assert parse_order_payload({"externalOrderId": "X", "shipments": [{"trackingNumber": "1Z999AA10123456784"}]}) \
        is None
    assert parse_order_payload({"externalOrderId": "X", "order": None}) is None
    with pytest.raises(PayloadError, match="body must be a JSON object"):
        parse_order_payload([1, 2])


MISSING = [
    ({"externalOrderId": ""}, "externalOrderId is missing"),
    ({"createdAt": ...}, "order.createdAt is missing"),
    ({"currency": ...}, "order.currency is missing"),
    ({"lineItems": ...}, "order.lineItems must be a non-empty list"),
    ({"lineItems": []}, "order.lineItems must be a non-empty list"),
    ({"lineItems": [{"title": "Mug", "quantity": 1, "price": "1.00"}]}, "order.lineItems[0].sku is missing"),
    ({"lineItems": [{"sku": "S", "title": " ", "quantity": 1, "price": "1.00"}]},
     "order.lineItems[0].title is missing"),
    ({"lineItems": [{"sku": "S", "title": "T", "price": "1.00"}]}, "order.lineItems[0].quantity is missing"),
    ({"lineItems": [{"sku": "S", "title": "T", "quantity": 1}]}, "order.lineItems[0].price is missing"),
]


@pytest.mark.parametrize(("change", "problem"), MISSING, ids=[problem for _, problem in MISSING])
def test_each_missing_required_field_is_named(change, problem):
    payload = order_body(**{k: v for k, v in change.items() if k != "externalOrderId"})
    payload.update({k: v for k, v in change.items() if k == "externalOrderId"})
    assert problems_of(payload) == [problem]


BAD_VALUES = [
    ({"quantity": 0}, "order.lineItems[0].quantity must be a whole number of at least 1"),
    ({"quantity": "1.5"}, "order.lineItems[0].quantity must be a whole number of at least 1"),
    ({"quantity": True}, "order.lineItems[0].quantity must be a whole number of at least 1"),
    ({"quantity": -3}, "order.lineItems[0].quantity must be a whole number of at least 1"),
    ({"quantity": 10**7}, "order.lineItems[0].quantity must be at most 1,000,000"),
    ({"price": "12.345"}, "order.lineItems[0].price '12.345' has more than 2 decimal places"),
    ({"price": "-1"}, "order.lineItems[0].price '-1' is negative"),
    ({"price": "abc"}, "order.lineItems[0].price 'abc' is not an amount (a decimal number like 12.34)"),
    ({"price": "12,50"}, "order.lineItems[0].price '12,50' has a decimal comma: write amounts with a dot (12.34)"),
    ({"price": True}, 'order.lineItems[0].price must be a decimal string like "12.34"'),
    ({"price": {"amount": "1"}}, 'order.lineItems[0].price must be a decimal string like "12.34"'),
    ({"sku": "S" * 129}, "order.lineItems[0].sku is longer than 128 characters"),
    ({"sku": ["S"]}, "order.lineItems[0].sku must be a string"),
]


@pytest.mark.parametrize(("line", "problem"), BAD_VALUES, ids=[problem[19:] for _, problem in BAD_VALUES])
def test_bad_quantity_or_price_is_named(line, problem):
    item = {"sku": "MUG-1", "title": "Mug", "quantity": 2, "price": "12.50", **line}
    assert problems_of(order_body(lineItems=[item])) == [problem]


def test_every_problem_is_listed_at_once():
    payload = order_body(
        createdAt="last tuesday", currency="dollars", email="nobody", phone="1" * 65,
        lineItems=[5, {"sku": "A", "title": "T", "quantity": 0, "price": "x"}],
        shippingAddress={"countryCode": "Narnia"}, billingAddress="home", shippingPrice="-1", totalTax="1.001",
        financialStatus="refunded", cancelledAt="2090-01-01T00:00:00Z", note=7.5, tags=[1, 2],
    )
    payload["externalOrderId"] = "X" * 129
    assert problems_of(payload) == [
        "externalOrderId is longer than 128 characters",
        "order.createdAt 'last tuesday' is not ISO 8601",
        "order.currency 'dollars' is not an ISO 4217 currency code (like USD)",
        "order.phone is longer than 64 characters",
        "order.email 'nobody' is not an email address",
        "order.lineItems[0] must be an object",
        "order.lineItems[1].quantity must be a whole number of at least 1",
        "order.lineItems[1].price 'x' is not an amount (a decimal number like 12.34)",
        "order.shippingAddress.countryCode 'Narnia' is not a country we know: use its ISO code (like US) or its "
        "English name",
        "order.billingAddress must be an object",
        "order.shippingPrice '-1' is negative",
        "order.totalTax '1.001' has more than 2 decimal places",
        "order.financialStatus must be one of paid, pending",
        "order.cancelledAt '2090-01-01T00:00:00Z' is in the future",
        "order.note must be a string",
        "order.tags must be a list of strings or a comma-separated string",
    ]


def test_caps_on_line_items_and_ids():
    lines = [{"sku": f"S{n}", "title": "T", "quantity": 1, "price": "1.00"} for n in range(1001)]
    assert problems_of(order_body(lineItems=lines)) == ["order.lineItems: at most 1,000 line items per order"]
    assert len(parse_order_payload(order_body(lineItems=lines[:1000])).lines) == 1000  # type: ignore[union-attr]
    assert problems_of(order_body(lineItems=[{"sku": "S", "title": "T", "quantity": 1, "price": "1",
                                              "lineItemId": "L" * 129}])) == [
        "order.lineItems[0].lineItemId is longer than 128 characters"]
    assert problems_of(order_body(tags=["a,b"])) == ["order.tags: a tag is at most 255 characters and holds no comma"]


# --- parse_payload: shipments, an order, or both -------------------------------------------------------------

SHIPMENT = {"trackingNumber": "1Z999AA10123456784", "carrier": "UPS"}


def test_parse_payload_accepts_an_order_without_shipments_and_still_checks_both():
    assert parse_payload(order_body()) == []
    assert parse_payload({**order_body(), "shipments": []}) == []
    records = parse_payload({**order_body(), "shipments": [SHIPMENT]})
    assert [(r.external_order_id, r.tracking_number, r.carrier) for r in records] == [
        ("TT-1001", "1Z999AA10123456784", "ups")]
    with pytest.raises(PayloadError) as neither:
        parse_payload({"externalOrderId": "TT-1001"})
    assert neither.value.problems == ['shipments must be a non-empty list (or the body must hold an "order")']
    # A bad order sinks the whole delivery, good shipments included; bad shipments are still found beside an order.
    with pytest.raises(PayloadError) as bad_order:
        parse_payload({**order_body(currency=...), "shipments": [SHIPMENT]})
    assert bad_order.value.problems == ["order.currency is missing"]
    with pytest.raises(PayloadError) as bad_shipment:
        parse_payload({**order_body(), "shipments": [{"trackingNumber": "1"}]})
    assert len(bad_shipment.value.problems) == 1 and "shipments[0].trackingNumber" in bad_shipment.value.problems[0]
    with pytest.raises(PayloadError, match="shipments must be a non-empty list"):
        parse_payload({**order_body(), "shipments": "1Z999AA10123456784"})


# --- through the view ----------------------------------------------------------------------------------------


@pytest.fixture
def webhook_channel(store) -> Channel:
    out = io.StringIO()
    call_command("channel", "add", "--store", store.domain, "--kind", "webhook", "--name", "TikTok Shop",
                 "--source-names", "tiktok", stdout=out)
    return Channel.objects.get(slug=json.loads(out.getvalue())["slug"])


def signed_post(client, channel: Channel, payload: dict[str, Any], msg_id: str):
    body = json.dumps(payload).encode()
    timestamp = int(time.time())
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
               "webhook-signature": sign(secret=channel.signing_secret, msg_id=msg_id, timestamp=timestamp, body=body)}
    return client.post(f"/webhooks/channels/{channel.slug}/", data=body, content_type="application/json",
                       headers=headers)


@pytest.mark.postgres
def test_the_webhook_answers_400_with_the_reasons_for_a_bad_order_and_stores_nothing(client, webhook_channel):
    bad = signed_post(client, webhook_channel, order_body(lineItems=[{"sku": "A", "title": "T", "quantity": 0,
                                                                      "price": "1.00"}]), "msg_bad")
    assert bad.status_code == 400
    assert bad.json()["problems"] == ["order.lineItems[0].quantity must be a whole number of at least 1"]
    assert not WebhookDelivery.objects.exists()
    good = signed_post(client, webhook_channel, order_body(), "msg_good")
    assert good.status_code == 200, good.content
    assert WebhookDelivery.objects.count() == 1
