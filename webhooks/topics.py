"""The Genstore topics OMA handles, and the root key each payload must carry (genstore-contract.md)."""

from __future__ import annotations

from typing import Any

ORDER_TOPICS: tuple[str, ...] = (
    "orders/create",
    "orders/update",
    "orders/paid",
    "orders/fulfilled",
    "orders/partiallyFulfilled",
    "orders/cancelled",
)

# topic -> root keys, any one of which must be present. A dict value is required unless the key is a scalar field
# (shop/redact carries {"shopId", "shopDomain"} at the top level).
ROOT_KEYS: dict[str, tuple[str, ...]] = {
    **{topic: ("order",) for topic in ORDER_TOPICS},
    "refunds/create": ("refund",),
    "app/uninstalled": ("app",),
    "app/scopesUpdate": ("authScope", "app"),
    "customers/redact": ("customer",),
    "customers/data_request": ("customer",),
    "shop/redact": ("shopId", "shopDomain"),
}
_SCALAR_ROOT_KEYS = {"shopId", "shopDomain"}

HANDLED_TOPICS: tuple[str, ...] = tuple(ROOT_KEYS)


def is_handled(topic: str) -> bool:
    return topic in ROOT_KEYS


def payload_shape_error(topic: str, payload: Any) -> str | None:
    """Why this payload cannot be processed for its topic, or None when its shape is right.

    Unhandled topics only need to be a JSON object: they are stored and ignored.
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
    """The orderId a delivery is about, for lookups and for erasing a customer's deliveries."""
    if topic in ORDER_TOPICS:
        inner = payload.get("order") or {}
        value = inner.get("orderId", inner.get("id"))
    elif topic == "refunds/create":
        value = (payload.get("refund") or {}).get("orderId")
    else:
        return ""
    return "" if value is None or isinstance(value, dict | list) else str(value)[:64]
