"""The receiving view through Django's test client: every check, in order, with its status."""

from __future__ import annotations

import logging

import pytest
from kombu.exceptions import OperationalError

from oma.stores.models import Store
from tests.webhooks.payloads import (
    OTHER_SECRET,
    PREVIOUS_SECRET,
    SECRET,
    encode,
    nested_json,
    order_json,
    sign,
)
from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.django_db


def test_authentic_delivery_is_stored_and_answered_200(store, post_webhook, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = post_webhook(order_json("1001"), webhook_id="wh-1")
    assert response.status_code == 200
    assert response.json() == {"status": "accepted"}
    delivery = WebhookDelivery.objects.get()
    assert delivery.store == store
    assert delivery.topic == "orders/update"
    assert delivery.state == WebhookDelivery.State.RECEIVED
    assert delivery.resource_id == "1001"
    assert delivery.dedupe_key == "id:wh-1"
    assert delivery.body.encode() == encode(order_json("1001"))
    assert delivery.headers["X-Genstore-Topic"] == "orders/update"
    assert "X-Genstore-Hmac-Sha256" in delivery.headers  # kept for the log: a signature is not a secret
    assert delivery.next_dispatch_at is not None  # the outbox's safety net until processing finishes
    assert len(callbacks) == 1  # processing is enqueued only once the row is committed


def test_hex_signature_and_previous_secret_are_accepted(store, post_webhook):
    store.previous_client_secret = PREVIOUS_SECRET
    store.save()
    assert post_webhook(order_json("1"), hex_form=True).status_code == 200
    assert post_webhook(order_json("2"), secret=PREVIOUS_SECRET).status_code == 200
    assert post_webhook(order_json("3"), secret=PREVIOUS_SECRET, hex_form=True).status_code == 200
    assert WebhookDelivery.objects.count() == 3


@pytest.mark.parametrize(
    ("case", "kwargs", "reason"),
    [
        ("forged signature", {"signature": sign(b"something else", SECRET)}, "invalid signature"),
        ("another store's secret", {"secret": OTHER_SECRET}, "invalid signature"),
        ("garbage signature", {"signature": "not-a-signature"}, "invalid signature"),
        ("missing signature", {"signature": ""}, "missing signature"),
        ("unknown shop", {"shop": "nobody.genmystore.com"}, "unknown shop"),
        ("no shop header", {"shop": None}, "unknown shop"),
    ],
)
def test_unauthentic_deliveries_get_401_and_nothing_is_stored(
    store, other_store, post_webhook, caplog, case, kwargs, reason
):
    with caplog.at_level(logging.WARNING, logger="webhooks"):
        response = post_webhook(order_json("1001"), **kwargs)
    assert response.status_code == 401, case
    assert response.json() == {"error": "unauthorized"}  # the same for every reason; the log says which
    assert WebhookDelivery.objects.count() == 0
    assert reason in caplog.text
    assert SECRET not in caplog.text and OTHER_SECRET not in caplog.text


def test_previous_secret_stops_working_once_cleared(store, post_webhook):
    store.previous_client_secret = ""
    store.save()
    assert post_webhook(order_json("1"), secret=PREVIOUS_SECRET).status_code == 401


def test_signature_is_checked_before_the_topic_and_the_body(store, post_webhook):
    # A forged request learns nothing about what a valid one must look like.
    assert post_webhook(body=b"not json", topic=None, signature=sign(b"x", "wrong")).status_code == 401


@pytest.mark.parametrize(
    ("case", "body", "topic", "reason"),
    [
        ("no topic", encode(order_json("1")), None, "missing X-Genstore-Topic"),
        ("malformed JSON", b'{"order": {"orderId": "1",', "orders/update", "body is not valid JSON"),
        ("empty body", b"", "orders/update", "body is not valid JSON"),
        ("not UTF-8", b'{"order": {"orderId": "\xff"}}', "orders/update", "body is not UTF-8"),
        ("JSON array", b"[1, 2]", "orders/update", "body is not a JSON object"),
        ("wrong root key", encode({"refund": {"refundId": "1"}}), "orders/update", "no 'order' object"),
        ("root key not an object", encode({"order": "1001"}), "orders/create", "no 'order' object"),
        ("refund without refund", encode(order_json("1")), "refunds/create", "no 'refund' object"),
        ("nested 10,000 deep", nested_json(10_000), "orders/update", "body nests too deeply"),
    ],
)
def test_malformed_authentic_deliveries_get_400(store, post_webhook, case, body, topic, reason):
    response = post_webhook(body=body, topic=topic)
    assert response.status_code == 400, case
    assert response.json()["error"].startswith(reason)
    assert WebhookDelivery.objects.count() == 0


def test_body_over_one_mebibyte_gets_413_before_anything_else(store, post_webhook):
    body = b'{"order": {"orderId": "1", "pad": "' + b"x" * (2 * 1024 * 1024) + b'"}}'
    # Even unsigned and from an unknown shop: the size is checked first.
    assert post_webhook(body=body, shop="nobody.genmystore.com", signature="").status_code == 413
    assert post_webhook(body=body).status_code == 413
    prefix, suffix = b'{"order":{"orderId":"1","pad":"', b'"}}'
    exactly_the_limit = prefix + b"x" * (1024 * 1024 - len(prefix) - len(suffix)) + suffix
    assert len(exactly_the_limit) == 1024 * 1024
    assert post_webhook(body=exactly_the_limit).status_code == 200
    one_byte_more = prefix + b"x" * (1024 * 1024 - len(prefix) - len(suffix) + 1) + suffix
    assert post_webhook(body=one_byte_more).status_code == 413


def test_duplicates_are_answered_200_and_stored_once(store, post_webhook, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        assert post_webhook(order_json("1"), webhook_id="wh-7").status_code == 200
        second = post_webhook(order_json("1"), webhook_id="wh-7")
        # Without a webhook id, the topic and the exact body identify the delivery.
        assert post_webhook(order_json("2")).status_code == 200
        third = post_webhook(order_json("2"))
        other_topic = post_webhook(order_json("2"), topic="orders/paid")
    assert (second.status_code, second.json()) == (200, {"status": "duplicate"})
    assert (third.status_code, third.json()) == (200, {"status": "duplicate"})
    assert other_topic.json() == {"status": "accepted"}
    assert WebhookDelivery.objects.count() == 3
    assert len(callbacks) == 3


def test_same_webhook_id_at_two_stores_is_two_deliveries(store, other_store, post_webhook):
    assert post_webhook(order_json("1"), webhook_id="wh-1").json() == {"status": "accepted"}
    response = post_webhook(order_json("1"), webhook_id="wh-1", shop=other_store.domain, secret=OTHER_SECRET)
    assert response.json() == {"status": "accepted"}


def test_unhandled_topic_is_stored_as_ignored_with_202(store, post_webhook, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = post_webhook({"product": {"id": "p1"}}, topic="products/update")
    assert (response.status_code, response.json()) == (202, {"status": "ignored"})
    delivery = WebhookDelivery.objects.get()
    assert delivery.state == WebhookDelivery.State.IGNORED
    assert delivery.next_dispatch_at is None
    assert callbacks == []


def test_inactive_store_still_receives_its_compliance_webhooks(store, post_webhook):
    store.is_active = False
    store.save()
    response = post_webhook({"shopId": "1", "shopDomain": store.domain}, topic="shop/redact")
    assert response.status_code == 200


def test_only_post_is_allowed(store, client):
    assert client.get("/webhooks/genstore/").status_code == 405


def test_broker_outage_does_not_change_the_answer(store, post_webhook, monkeypatch, django_capture_on_commit_callbacks):
    """The broker is the network edge here: its publish fails, the delivery waits for the outbox."""
    from webhooks.tasks import process_deliveries

    def broker_down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6399. Connection refused.")

    monkeypatch.setattr(process_deliveries, "apply_async", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        response = post_webhook(order_json("1"))
    assert (response.status_code, response.json()) == (200, {"status": "accepted"})
    delivery = WebhookDelivery.objects.get()
    assert delivery.state == WebhookDelivery.State.RECEIVED
    # Due for the very next outbox run instead of the later safety deadline.
    assert (delivery.next_dispatch_at - delivery.received_at).total_seconds() < 60


def test_customer_email_is_not_logged(store, post_webhook, caplog):
    with caplog.at_level(logging.DEBUG):
        post_webhook(order_json("1"))
        post_webhook(body=b'{"order": ', topic="orders/update")
    assert "jane.doe.customer@example.com" not in caplog.text


def test_a_secret_changed_by_another_process_is_used_at_once_despite_the_store_cache(store, post_webhook, settings):
    settings.OMA_WEBHOOK_STORE_CACHE_SECONDS = 60
    assert post_webhook(order_json("1")).status_code == 200  # the store's row is now cached in this process
    # Another process (admin, connect_store) rotates the secret: no signal reaches this one.
    Store.objects.filter(pk=store.pk).update(client_secret="rotated-secret", previous_client_secret=SECRET)
    assert post_webhook(order_json("2"), secret="rotated-secret").status_code == 200
    assert post_webhook(order_json("3"), secret=SECRET).status_code == 200  # the previous one still works
    Store.objects.filter(pk=store.pk).update(previous_client_secret="")
    assert post_webhook(order_json("4"), secret=SECRET).status_code == 401
    assert WebhookDelivery.objects.count() == 3


def test_a_store_saved_in_this_process_is_read_again(store, post_webhook, settings):
    settings.OMA_WEBHOOK_STORE_CACHE_SECONDS = 60
    assert post_webhook(order_json("1")).status_code == 200
    store.client_secret = "new-secret"
    store.previous_client_secret = ""
    store.save()
    assert post_webhook(order_json("2"), secret=SECRET).status_code == 401


@pytest.mark.postgres
def test_concurrent_copies_of_one_delivery_are_stored_once(transactional_db, store):
    """Genstore retrying while the first attempt is still in flight: the unique key lets exactly one in."""
    import threading

    from django.db import connection

    from webhooks.receive import delivery_receive

    body = encode(order_json("1001"))
    results = []
    barrier = threading.Barrier(8)

    def receive() -> None:
        barrier.wait()
        try:
            results.append(delivery_receive(store=store, topic="orders/update", body=body, headers={},
                                            webhook_id="wh-race", handled=False))
        finally:
            connection.close()

    threads = [threading.Thread(target=receive) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(result.duplicate for result in results) == [False] + [True] * 7
    assert WebhookDelivery.objects.count() == 1
