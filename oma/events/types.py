"""The event types OMA sends, and which of them a subscription's patterns take (`alert.*` takes every alert)."""

from __future__ import annotations

from collections.abc import Iterable

SHIPMENT_UPDATED = "shipment.updated"
ORDER_STATUS_CHANGED = "order.status_changed"
ALERT_PUSH_FAILED = "alert.push_failed"
ALERT_EXTERNAL_ORDER_FAILED = "alert.external_order_failed"
ALERT_CHANNEL_AUTH_FAILED = "alert.channel_auth_failed"
ALERT_CARRIER_ACCOUNT_FAILED = "alert.carrier_account_failed"
# Sent only by the admin's "send a test event", to the subscriptions chosen, whatever types they take.
TEST = "oma.test"

ALERTS = "alert.*"
ALERT_TYPES = (ALERT_PUSH_FAILED, ALERT_EXTERNAL_ORDER_FAILED, ALERT_CHANNEL_AUTH_FAILED, ALERT_CARRIER_ACCOUNT_FAILED)

# What a subscription may ask for (the admin's choices), with the words shown next to each.
SUBSCRIBABLE: dict[str, str] = {
    ALERTS: "every alert (alert.push_failed, alert.external_order_failed, alert.channel_auth_failed, "
            "alert.carrier_account_failed)",
    ALERT_PUSH_FAILED: "Genstore refused a fulfillment",
    ALERT_EXTERNAL_ORDER_FAILED: "Genstore refused to create an order of another channel",
    ALERT_CHANNEL_AUTH_FAILED: "a channel's platform refuses OMA's credentials",
    ALERT_CARRIER_ACCOUNT_FAILED: "a carrier account keeps failing",
    SHIPMENT_UPDATED: "a shipment's status, substatus, estimated delivery, tracking number or carrier changed",
    ORDER_STATUS_CHANGED: "an order's status in OMA changed",
}


def takes(patterns: Iterable[str], event_type: str) -> bool:
    """Whether a subscription with these patterns receives `event_type` (exact, or `prefix.*`)."""
    for pattern in patterns:
        if pattern == event_type or (pattern.endswith(".*") and event_type.startswith(pattern[:-1])):
            return True
    return False


def takes_any(patterns: Iterable[str], event_types: Iterable[str]) -> bool:
    wanted = list(patterns)
    return any(takes(wanted, event_type) for event_type in event_types)
