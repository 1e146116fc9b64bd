"""Genstore's webhook topics and what each payload carries at its root (genstore-contract.md, Part A and B).

The one definition of every topic name: the receiver (webhooks/), the topic handlers, the redaction allow-lists and
the sandbox import them from here.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APP_SCOPES_UPDATE",
    "APP_UNINSTALLED",
    "COMPLIANCE_TOPICS",
    "CUSTOMERS_DATA_REQUEST",
    "CUSTOMERS_REDACT",
    "CUSTOMER_REQUEST_TOPICS",
    "ORDERS_CANCELLED",
    "ORDERS_CREATE",
    "ORDERS_FULFILLED",
    "ORDERS_PAID",
    "ORDERS_PARTIALLY_FULFILLED",
    "ORDERS_UPDATE",
    "ORDER_ID_TOPICS",
    "ORDER_TOPICS",
    "REFUNDS_CREATE",
    "ROOT_KEYS",
    "SHOP_REDACT",
    "SUBSCRIBABLE_TOPICS",
    "WEBHOOK_TOPICS",
    "is_known_topic",
    "payload_shape_error",
    "resource_id_of",
]

ORDERS_CREATE = "orders/create"
ORDERS_UPDATE = "orders/update"
ORDERS_PAID = "orders/paid"
ORDERS_FULFILLED = "orders/fulfilled"
ORDERS_PARTIALLY_FULFILLED = "orders/partiallyFulfilled"
ORDERS_CANCELLED = "orders/cancelled"
REFUNDS_CREATE = "refunds/create"
APP_UNINSTALLED = "app/uninstalled"
APP_SCOPES_UPDATE = "app/scopesUpdate"
CUSTOMERS_DATA_REQUEST = "customers/data_request"
CUSTOMERS_REDACT = "customers/redact"
SHOP_REDACT = "shop/redact"

ORDER_TOPICS: tuple[str, ...] = (
    ORDERS_CREATE,
    ORDERS_UPDATE,
    ORDERS_PAID,
    ORDERS_FULFILLED,
    ORDERS_PARTIALLY_FULFILLED,
    ORDERS_CANCELLED,
)
# Compliance requests about one customer (shop/redact names no customer).
CUSTOMER_REQUEST_TOPICS: tuple[str, ...] = (CUSTOMERS_DATA_REQUEST, CUSTOMERS_REDACT)
# Mandatory privacy topics: their callback URLs are set in the app configuration, not subscribed through the API.
COMPLIANCE_TOPICS: tuple[str, ...] = (*CUSTOMER_REQUEST_TOPICS, SHOP_REDACT)
WEBHOOK_TOPICS: tuple[str, ...] = (
    *ORDER_TOPICS,
    REFUNDS_CREATE,
    APP_UNINSTALLED,
    APP_SCOPES_UPDATE,
    *COMPLIANCE_TOPICS,
)
# What an app subscribes to through POST /app/webhooks: every topic but the compliance ones.
SUBSCRIBABLE_TOPICS: tuple[str, ...] = tuple(topic for topic in WEBHOOK_TOPICS if topic not in COMPLIANCE_TOPICS)
# Topics whose resource_id_of is a Genstore orderId.
ORDER_ID_TOPICS: tuple[str, ...] = (*ORDER_TOPICS, REFUNDS_CREATE)

# topic -> root keys, any one of which must be present. A dict value is required unless the key is a scalar field
# (shop/redact carries {"shopId", "shopDomain"} at the top level).
ROOT_KEYS: dict[str, tuple[str, ...]] = {
    **{topic: ("order",) for topic in ORDER_TOPICS},
    REFUNDS_CREATE: ("refund",),
    APP_UNINSTALLED: ("app",),
    APP_SCOPES_UPDATE: ("authScope", "app"),
    CUSTOMERS_REDACT: ("customer",),
    CUSTOMERS_DATA_REQUEST: ("customer",),
    SHOP_REDACT: ("shopId", "shopDomain"),
}
_SCALAR_ROOT_KEYS = {"shopId", "shopDomain"}


def is_known_topic(topic: str) -> bool:
    """One of the topics of the contract (OMA handles them all; any other is stored and ignored)."""
    return topic in ROOT_KEYS


def payload_shape_error(topic: str, payload: object) -> str | None:
    """Why this payload cannot be processed for its topic, or None when its shape is right.

    Unknown topics only need to be a JSON object: they are stored and ignored.
    """
    if not isinstance(payload, dict):
        return "body is not a JSON object"
    keys = ROOT_KEYS.get(topic)
    if keys is None:
        return None
    for key in keys:
        if key in payload and (key in _SCALAR_ROOT_KEYS or isinstance(payload[key], dict)):
            return None
    return f"no {' or '.join(repr(k) for k in keys)} object for topic {topic}"


def resource_id_of(topic: str, payload: dict[str, Any]) -> str:
    """The orderId a delivery is about, for lookups and for erasing a customer's deliveries ("" for other topics)."""
    if topic in ORDER_TOPICS:
        inner = payload.get("order") or {}
        value = inner.get("orderId", inner.get("id"))
    elif topic == REFUNDS_CREATE:
        value = (payload.get("refund") or {}).get("orderId")
    else:
        return ""
    return "" if value is None or isinstance(value, dict | list) else str(value)[:64]
