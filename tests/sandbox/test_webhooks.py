from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from oma.sandbox import WEBHOOK_TOPICS
from tests.sandbox.conftest import Receiver, orders_url


def _subscribe(api, sandbox, topic, address, handle="shop1"):
    return api.post(orders_url(sandbox, handle, "app/webhooks"), json={"webhook": {"topic": topic, "address": address}})


def _valid_signature(body: bytes, header: str, secret: str) -> bool:
    expected = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    return hmac.compare_digest(expected, header)


def test_subscription_crud(sandbox, api):
    created = _subscribe(api, sandbox, "orders/update", "https://oma.example.com/webhooks/genstore/")
    assert created.status_code == 201
    webhook = created.json()["webhook"]
    assert isinstance(webhook["id"], int)  # a bare number, like Genstore's sample
    assert webhook["topic"] == "orders/update"
    assert webhook["address"] == "https://oma.example.com/webhooks/genstore/"
    assert webhook["createTime"] and webhook["updateTime"]

    _subscribe(api, sandbox, "orders/cancelled", "https://oma.example.com/webhooks/genstore/")
    listed = api.get(orders_url(sandbox, path="app/webhooks")).json()["webhooks"]
    assert sorted(w["topic"] for w in listed) == ["orders/cancelled", "orders/update"]
    assert api.get(orders_url(sandbox, path="app/webhooks/count")).json() == {"count": 2}
    one = orders_url(sandbox, path=f"app/webhooks/{webhook['id']}")
    assert api.get(one).json()["webhook"] == webhook

    updated = api.put(one, json={"webhook": {"address": "https://oma.example.com/other/"}})
    assert updated.status_code == 200
    assert updated.json()["webhook"]["address"] == "https://oma.example.com/other/"
    assert updated.json()["webhook"]["topic"] == "orders/update"

    assert api.delete(one).status_code == 200
    assert api.get(one).status_code == 404
    assert api.get(orders_url(sandbox, path="app/webhooks/count")).json() == {"count": 1}
    assert api.get(orders_url(sandbox, "shop2", "app/webhooks/count")).json() == {"count": 0}


@pytest.mark.parametrize(
    ("topic", "address"),
    [
        ("orders/shipped", "https://oma.example.com/hook"),
        ("orders/update", "http://oma.example.com/hook"),
        ("orders/update", "not a url"),
        ("orders/update", "ftp://oma.example.com/hook"),
        ("orders/update", None),
    ],
)
def test_subscription_validation(sandbox, api, topic, address):
    response = _subscribe(api, sandbox, topic, address)
    assert response.status_code == 422
    assert response.json()["error"]


def test_every_contract_topic_and_local_http_are_accepted_and_duplicates_are_not(sandbox, api):
    for topic in WEBHOOK_TOPICS:
        assert _subscribe(api, sandbox, topic, "http://127.0.0.1:9/hook").status_code == 201
    assert _subscribe(api, sandbox, "orders/update", "http://localhost:9/hook").status_code == 201
    duplicate = _subscribe(api, sandbox, "orders/update", "http://127.0.0.1:9/hook")
    assert duplicate.status_code == 422
    assert "taken" in duplicate.json()["error"]


def test_a_change_is_delivered_signed_to_the_subscribed_receiver(sandbox, api, receiver):
    _subscribe(api, sandbox, "orders/update", receiver.url)
    _subscribe(api, sandbox, "orders/update", receiver.url, handle="shop2")
    [order_id] = sandbox.mutate_orders("shop1", 1, seed=5)

    assert sandbox.wait_for_webhooks(10)
    assert len(receiver.requests) == 1
    headers, body = receiver.requests[0]
    assert headers["X-Genstore-Topic"] == "orders/update"
    assert headers["X-Genstore-Shop-Domain"] == "shop1.genmystore.com"
    assert headers["X-Genstore-Api-Version"] == "202412"
    assert headers["X-Genstore-Webhook-Id"]
    assert _valid_signature(body, headers["X-Genstore-Hmac-Sha256"], sandbox.client_secret)
    assert not _valid_signature(body, headers["X-Genstore-Hmac-Sha256"], "another-secret")
    assert json.loads(body) == {"order": sandbox.raw_order("shop1", order_id)}

    [attempt] = sandbox.webhook_attempts("shop1")
    assert attempt.status == 200 and attempt.delivered
    assert attempt.webhook_id == headers["X-Genstore-Webhook-Id"]
    assert sandbox.stats("shop1")["webhooks_delivered"] == 1


def test_fulfillment_and_cancellation_fire_their_topics(sandbox, api, receiver):
    for topic in ("orders/update", "orders/fulfilled", "orders/partiallyFulfilled", "orders/cancelled"):
        _subscribe(api, sandbox, topic, receiver.url)
    order = next(
        o
        for o in sandbox.orders("shop1")
        if o["cancelledAt"] is None and o["fulfillmentStatus"] in (None, "unfulfilled") and len(o["lineItems"]) >= 2
    )
    line = order["lineItems"][0]
    api.post(
        orders_url(sandbox, path="fulfillments"),
        json={
            "fulfillment": {
                "orderId": order["orderId"],
                "lineItems": [{"id": line["id"], "quantity": line["quantity"]}],
            }
        },
    )
    sandbox.cancel_order("shop1", order["orderId"], reason="inventory")
    assert sandbox.wait_for_webhooks(10)

    topics = [headers["X-Genstore-Topic"] for headers, _ in receiver.requests]
    assert sorted(topics) == sorted(["orders/update", "orders/partiallyFulfilled", "orders/update", "orders/cancelled"])
    cancelled = receiver.bodies("orders/cancelled")[0]["order"]
    assert cancelled["cancelReason"] == "inventory" and cancelled["cancelledAt"]
    assert len({headers["X-Genstore-Webhook-Id"] for headers, _ in receiver.requests}) == 4


def test_failed_deliveries_are_recorded_and_stop_after_eight_in_a_row(sandbox, api):
    failing = Receiver(status=500)
    try:
        _subscribe(api, sandbox, "orders/update", failing.url)
        sandbox.mutate_orders("shop1", 10, seed=2)
        assert sandbox.wait_for_webhooks(20)
    finally:
        failing.close()
    attempts = sandbox.webhook_attempts("shop1")
    assert len(attempts) == 8
    assert all(a.status == 500 and not a.delivered for a in attempts)
    stats = sandbox.stats("shop1")
    assert stats["webhooks_failed"] == 8 and stats["webhooks_suppressed"] == 2


def test_an_unreachable_receiver_is_recorded_without_blocking_the_api(sandbox, api):
    _subscribe(api, sandbox, "orders/update", "http://127.0.0.1:9/unreachable")
    sandbox.mutate_orders("shop1", 1, seed=3)
    assert sandbox.wait_for_webhooks(10)
    [attempt] = sandbox.webhook_attempts("shop1")
    assert attempt.status is None and attempt.error and not attempt.delivered


def test_send_webhook_for_tests(sandbox, receiver):
    payload = {"shopId": "1", "shopDomain": "shop1.genmystore.com", "customer": {"id": "7"}, "ordersToRedact": []}
    [webhook_id] = sandbox.send_webhook("shop1", "customers/redact", payload, address=receiver.url)
    assert sandbox.wait_for_webhooks(10)
    headers, body = receiver.requests[0]
    assert headers["X-Genstore-Webhook-Id"] == webhook_id
    assert headers["X-Genstore-Topic"] == "customers/redact"
    assert json.loads(body) == payload
    assert _valid_signature(body, headers["X-Genstore-Hmac-Sha256"], sandbox.client_secret)
    assert headers["X-Genstore-Hmac-Sha256"] == sandbox.sign(body)
