"""Genstore's webhook topics and payload root keys: the one definition, checked against the contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from oma.genstore.topics import (
    COMPLIANCE_TOPICS,
    CUSTOMER_REQUEST_TOPICS,
    ORDER_ID_TOPICS,
    ORDER_TOPICS,
    REFUNDS_CREATE,
    ROOT_KEYS,
    SUBSCRIBABLE_TOPICS,
    WEBHOOK_TOPICS,
    is_known_topic,
    payload_shape_error,
    resource_id_of,
)

CONTRACT_MD = Path(__file__).resolve().parents[2].parent / "shared" / "genstore-contract.md"


def test_topics_are_the_contracts():
    assert set(WEBHOOK_TOPICS) == {
        "orders/create",
        "orders/update",
        "orders/paid",
        "orders/fulfilled",
        "orders/partiallyFulfilled",
        "orders/cancelled",
        "refunds/create",
        "app/uninstalled",
        "app/scopesUpdate",
        "customers/data_request",
        "customers/redact",
        "shop/redact",
    }
    assert len(WEBHOOK_TOPICS) == len(set(WEBHOOK_TOPICS))
    assert set(ORDER_TOPICS) | set(COMPLIANCE_TOPICS) < set(WEBHOOK_TOPICS)
    assert set(CUSTOMER_REQUEST_TOPICS) < set(COMPLIANCE_TOPICS)
    assert set(ORDER_ID_TOPICS) == {*ORDER_TOPICS, REFUNDS_CREATE}


@pytest.mark.skipif(not CONTRACT_MD.exists(), reason="../shared/genstore-contract.md absent")
def test_every_topic_is_named_in_the_contract():
    text = CONTRACT_MD.read_text()
    for topic in WEBHOOK_TOPICS:
        assert f"`{topic}`" in text, topic


def test_compliance_topics_are_not_subscribed_through_the_api():
    assert set(SUBSCRIBABLE_TOPICS) == set(WEBHOOK_TOPICS) - set(COMPLIANCE_TOPICS)
    assert SUBSCRIBABLE_TOPICS[: len(ORDER_TOPICS)] == ORDER_TOPICS


def test_every_topic_has_its_root_keys():
    assert set(ROOT_KEYS) == set(WEBHOOK_TOPICS)
    assert all(is_known_topic(topic) for topic in WEBHOOK_TOPICS)
    assert not is_known_topic("products/create")


@pytest.mark.parametrize(
    ("topic", "payload", "error"),
    [
        ("orders/create", {"order": {"orderId": "1"}}, None),
        ("orders/create", {"order": "1"}, "no 'order' object for topic orders/create"),
        ("orders/create", [], "body is not a JSON object"),
        ("refunds/create", {"refund": {}}, None),
        ("app/scopesUpdate", {"app": {}}, None),
        ("app/scopesUpdate", {"authScope": {}}, None),
        ("app/scopesUpdate", {}, "no 'authScope' or 'app' object for topic app/scopesUpdate"),
        ("shop/redact", {"shopDomain": "a.genmystore.com"}, None),
        ("customers/redact", {"customer": None}, "no 'customer' object for topic customers/redact"),
        ("products/create", {}, None),  # unknown topics only need to be an object
    ],
)
def test_payload_shape(topic, payload, error):
    assert payload_shape_error(topic, payload) == error


def test_resource_id_is_the_order_id():
    assert resource_id_of("orders/update", {"order": {"orderId": 1001, "id": "x"}}) == "1001"
    assert resource_id_of("orders/update", {"order": {"id": "77"}}) == "77"
    assert resource_id_of("refunds/create", {"refund": {"orderId": "9"}}) == "9"
    assert resource_id_of("orders/update", {"order": {"orderId": {"nested": 1}}}) == ""
    assert resource_id_of("customers/redact", {"ordersToRedact": ["1"]}) == ""
    assert len(resource_id_of("orders/create", {"order": {"orderId": "9" * 100}})) == 64
