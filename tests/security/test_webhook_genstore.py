"""The Genstore webhook (/webhooks/genstore/) against probing and replays: one 401 for every unauthenticated
caller, and a signed body stored and processed once per store however many ids it is resent under.

Through Django's test client with raise_request_exception=False, so a crash is seen as the 500 a sender would get.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.utils import timezone

from oma.orders.compliance import deliveries_redact
from oma.stores.models import Store
from tests.webhooks.payloads import OTHER_SECRET, OTHER_SHOP, SECRET, SHOP, encode, order_json, sign
from webhooks.models import WebhookDelivery
from webhooks.receive import delivery_receive
from webhooks.retention import deliveries_prune

URL = "/webhooks/genstore/"


@pytest.fixture(autouse=True)
def _in_process_webhook_settings(settings: Any) -> None:
    # As tests/webhooks: publish from the request's thread, and read the store's row on every delivery.
    settings.OMA_WEBHOOK_BACKGROUND_PUBLISH = 0
    settings.OMA_WEBHOOK_STORE_CACHE_SECONDS = 0


@pytest.fixture
def http() -> Client:
    return Client(raise_request_exception=False)


@pytest.fixture
def store(db: None) -> Store:
    return Store.objects.create(
        domain=SHOP, access_token="token-shop1", client_secret=SECRET, api_base_url="http://127.0.0.1:9"
    )


@pytest.fixture
def other_store(db: None) -> Store:
    return Store.objects.create(
        domain=OTHER_SHOP, access_token="token-shop2", client_secret=OTHER_SECRET, api_base_url="http://127.0.0.1:9"
    )


def post(
    http: Client,
    body: bytes,
    *,
    shop: str | None = SHOP,
    secret: str = SECRET,
    signature: str | None = None,
    webhook_id: str | None = None,
    topic: str = "orders/update",
) -> Any:
    headers = {"X-Genstore-Topic": topic, "X-Genstore-Hmac-Sha256": sign(body, secret)}
    if signature is not None:
        headers["X-Genstore-Hmac-Sha256"] = signature
    if shop is not None:
        headers["X-Genstore-Shop-Domain"] = shop
    if webhook_id is not None:
        headers["X-Genstore-Webhook-Id"] = webhook_id
    headers = {name: value for name, value in headers.items() if value != ""}
    return http.post(URL, data=body, content_type="application/json", headers=headers)


def answer(response: Any) -> tuple[int, bytes, list[tuple[str, str]]]:
    """Everything a caller sees of a response."""
    return response.status_code, response.content, sorted(response.items())


# --- one answer for every unauthenticated caller ------------------------------------------------------------


def test_genstore_webhook_gives_one_identical_401_for_unknown_shop_and_missing_or_bad_signature(
    http, store, other_store, caplog
):
    body = encode(order_json("1001"))
    cases = {
        "unknown shop": {"shop": "nobody.genmystore.com"},
        "no shop header": {"shop": None},
        "missing signature": {"signature": ""},
        "forged signature": {"signature": sign(b"something else", SECRET)},
        "another store's secret": {"secret": OTHER_SECRET},
        "garbage signature": {"signature": "not-a-signature-ü"},
    }
    with caplog.at_level(logging.WARNING, logger="webhooks"):
        responses = {case: post(http, body, **kwargs) for case, kwargs in cases.items()}
    answers = {case: answer(response) for case, response in responses.items()}
    assert {status for status, _, _ in answers.values()} == {401}
    assert len(set(map(repr, answers.values()))) == 1, answers  # nothing tells a connected shop from another
    # The operator still learns why: from the log, and from the rejection counter's reason label.
    for reason in ("unknown shop", "missing signature", "invalid signature"):
        assert reason in caplog.text
    assert responses["unknown shop"].oma_reason == "unknown shop"
    assert responses["forged signature"].oma_reason == "invalid signature"
    assert not WebhookDelivery.objects.exists()


@pytest.mark.parametrize(
    ("case", "shop"),
    [("NUL byte", "shop1.genmystore.com\x00"), ("only a NUL", "\x00"), ("control characters", "shop1\x01\x7f.com"),
     ("non-ASCII", "shöp1.genmystore.com"), ("10,000 characters", "a" * 10_000)],
)
def test_genstore_webhook_answers_401_not_5xx_to_an_unusable_shop_domain(http, store, case, shop):
    response = post(http, encode(order_json("1")), shop=shop)
    assert response.status_code == 401, case
    assert not WebhookDelivery.objects.exists()


@pytest.mark.parametrize(
    ("case", "headers"),
    [
        ("NUL in the webhook id", {"X-Genstore-Webhook-Id": "wh\x00-1"}),
        ("NUL in another header", {"X-Forwarded-For": "1.2.3.4\x00"}),
        ("NUL in a header name", {"X-Od\x00d": "1"}),
        ("NUL in the topic", {"X-Genstore-Topic": "orders/update\x00"}),
    ],
)
def test_a_signed_body_with_nul_bytes_in_its_unsigned_headers_is_stored_not_answered_5xx(http, store, case, headers):
    """The signature covers the body only: whoever holds a signed body can send it with any headers."""
    body = encode(order_json("1"))
    base = {"X-Genstore-Shop-Domain": SHOP, "X-Genstore-Topic": "orders/update",
            "X-Genstore-Hmac-Sha256": sign(body, SECRET)}
    response = http.post(URL, data=body, content_type="application/json", headers={**base, **headers})
    assert response.status_code in (200, 202), (case, response.status_code)
    assert WebhookDelivery.objects.count() == 1


# --- a signed body resent under a new id -----------------------------------------------------------------------


def test_a_signed_body_resent_under_a_new_webhook_id_is_a_duplicate_neither_stored_nor_processed_again(
    http, store, django_capture_on_commit_callbacks
):
    body = encode(order_json("1001"))
    with django_capture_on_commit_callbacks() as enqueued:
        first = post(http, body, webhook_id="wh-1")
        with_new_id = post(http, body, webhook_id="wh-2")
        without_id = post(http, body)
        as_hex = post(http, body, webhook_id="wh-3", signature=sign(body, SECRET, hex_form=True))
    assert first.json() == {"status": "accepted"}
    for replay in (with_new_id, without_id, as_hex):
        assert (replay.status_code, replay.json()) == (200, {"status": "duplicate"})
    assert WebhookDelivery.objects.count() == 1
    assert len(enqueued) == 1  # processed once
    # Another topic with the same body, or another body, is a delivery of its own.
    assert post(http, body, webhook_id="wh-4", topic="orders/paid").json() == {"status": "accepted"}
    assert post(http, encode(order_json("1001", version=2)), webhook_id="wh-5").json() == {"status": "accepted"}


def test_the_same_signed_body_at_two_stores_is_two_deliveries(http, store, other_store):
    body = encode(order_json("1"))
    assert post(http, body, webhook_id="wh-1").json() == {"status": "accepted"}
    assert post(http, body, webhook_id="wh-2", shop=OTHER_SHOP, secret=OTHER_SECRET).json() == {"status": "accepted"}
    assert WebhookDelivery.objects.count() == 2


def test_a_replayed_body_is_still_recognised_after_its_stored_copy_was_redacted(http, store):
    body = encode(order_json("1001"))
    assert post(http, body, webhook_id="wh-1").json() == {"status": "accepted"}
    assert deliveries_redact(store=store, order_ids=["1001"]) == 1
    assert WebhookDelivery.objects.get().body.encode() != body
    # Accepting it again would bring the customer's erased data back.
    assert post(http, body, webhook_id="wh-2").json() == {"status": "duplicate"}
    assert WebhookDelivery.objects.count() == 1


def test_a_body_is_a_duplicate_while_retained_and_new_again_once_pruned(http, store):
    body = encode(order_json("1001"))
    assert post(http, body, webhook_id="wh-1").json() == {"status": "accepted"}
    now = timezone.now()
    WebhookDelivery.objects.update(received_at=now - timedelta(days=29))
    assert deliveries_prune(now=now).deliveries == 0
    assert post(http, body, webhook_id="wh-2").json() == {"status": "duplicate"}
    WebhookDelivery.objects.update(received_at=now - timedelta(days=31))
    assert deliveries_prune(now=now).deliveries == 1
    assert post(http, body, webhook_id="wh-3").json() == {"status": "accepted"}
    assert WebhookDelivery.objects.get().webhook_id == "wh-3"


def test_one_group_insert_tells_each_row_whether_it_was_stored(store):
    """Rows written in one statement: each learns its own fate, whichever unique key refused the others."""
    from webhooks.intake import _insert

    def row(webhook_id: str, version: int) -> dict[str, Any]:
        return {"store_id": store.pk, "shop_domain": SHOP, "topic": "orders/update", "webhook_id": webhook_id,
                "dedupe_key": f"id:{webhook_id}", "content_sha256": f"{version:064x}", "body": "{}",
                "headers": {}, "received_at": timezone.now(), "state": "ignored", "next_dispatch_at": None,
                "outcome": ""}

    (stored_before,) = _insert([row("wh-0", 1)])
    assert stored_before is not None
    outcomes = _insert([
        row("wh-1", 1),  # the body of wh-0 again: refused
        row("wh-1", 2),  # same id, another body: stored
        row("wh-2", 2),  # the body just stored, another id: refused
        row("wh-3", 3),  # new: stored
        row("wh-3", 3),  # a copy within the statement: refused
    ])
    assert [outcome is not None for outcome in outcomes] == [False, True, False, True, False]
    stored = dict(WebhookDelivery.objects.values_list("pk", "content_sha256"))
    assert stored[outcomes[1]] == f"{2:064x}" and stored[outcomes[3]] == f"{3:064x}"
    assert len(stored) == 3


@pytest.mark.postgres
def test_concurrent_copies_of_one_body_under_different_ids_are_stored_once(transactional_db, store):
    """Replays racing each other (and the original) meet the unique index: exactly one is stored."""
    body = encode(order_json("1001"))
    results = []
    barrier = threading.Barrier(8)

    def receive(index: int) -> None:
        barrier.wait()
        try:
            results.append(delivery_receive(store=store, topic="orders/update", body=body, headers={},
                                            webhook_id=f"wh-race-{index}", handled=False))
        finally:
            connection.close()

    threads = [threading.Thread(target=receive, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(result.duplicate for result in results) == [False] + [True] * 7
    assert WebhookDelivery.objects.count() == 1


# --- the migration on a database that already holds replays ----------------------------------------------------


@pytest.mark.postgres
def test_the_migration_keeps_the_first_of_each_replayed_body_as_the_one_that_dedupes(transactional_db):
    before, after = ("webhooks", "0004_drop_redundant_store_index"), ("webhooks", "0005_dedupe_on_content")
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    try:
        executor.migrate([before])
        old_apps = executor.loader.project_state([before]).apps
        OldStore = old_apps.get_model("stores", "Store")
        OldDelivery = old_apps.get_model("webhooks", "WebhookDelivery")
        shop = OldStore.objects.create(domain=SHOP, access_token="t", client_secret="s")
        other = OldStore.objects.create(domain=OTHER_SHOP, access_token="t", client_secret="s")
        body = encode(order_json("1")).decode()
        content = hashlib.sha256(b"orders/update\n" + body.encode()).hexdigest()

        def old_row(store: Any, dedupe_key: str, **extra: Any) -> int:
            fields = {"topic": "orders/update", "body": body, **extra}
            return OldDelivery.objects.create(store=store, shop_domain=store.domain, dedupe_key=dedupe_key,
                                              **fields).pk

        original = old_row(shop, "id:wh-1")
        replays = [old_row(shop, "id:wh-2"), old_row(shop, f"sha256:{content}")]
        at_other_store = old_row(other, "id:wh-1")
        # Redacted without a webhook id: its key still holds the hash of the body as received.
        redacted = old_row(shop, "sha256:" + "ab" * 32, topic="orders/paid", body="{}", redacted_at=timezone.now())
        # Channel deliveries sign their ids: deduplicated by id only.
        channel_rows = [old_row(shop, f"id:ch/m{n}", topic="channels/shipments") for n in (1, 2)]

        MigrationExecutor(connection).migrate([after])
    finally:
        MigrationExecutor(connection).migrate(latest)

    hashes = dict(WebhookDelivery.objects.values_list("pk", "content_sha256"))
    assert hashes[original] == content and hashes[at_other_store] == content
    assert [hashes[pk] for pk in replays] == [None, None]  # kept in the log, out of the unique index
    assert hashes[redacted] == "ab" * 32
    assert [hashes[pk] for pk in channel_rows] == [None, None]
    assert WebhookDelivery.objects.count() == 7
    # The index now refuses the replay of any retained body.
    result = delivery_receive(store=Store.objects.get(domain=SHOP), topic="orders/update", body=body.encode(),
                              headers={}, webhook_id="wh-9", handled=False)
    assert result.duplicate
