"""The `data` of each event type: plain JSON, camelCase keys (the style of the inbound channel webhooks), ids that
other tools can use (Genstore's orderId, OMA's own ids), and links into OMA's admin and tracking page."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from django.conf import settings
from django.db.models import Model, OuterRef, Subquery
from django.urls import reverse

from oma.channels.models import Channel, ExternalOrder
from oma.events.models import NO_DATE, ShipmentSnapshot
from oma.events.services import store_data
from oma.fulfillment.models import FulfillmentPush
from oma.merchant.tokens import tracking_path_for
from oma.merchant.tracking_page import carrier_link
from oma.orders.models import Order
from oma.stores.models import Store
from tracking.models import CarrierAccount, Shipment, TrackingEvent


def _absolute(path: str) -> str:
    base = settings.OMA_PUBLIC_URL.rstrip("/")
    return f"{base}{path}" if base else path


def admin_url(obj: Model) -> str:
    meta = obj._meta
    return _absolute(reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk]))


def _iso(value: datetime | date | None) -> str | None:
    return value.isoformat() if value is not None else None


def order_data(order: Order | None) -> dict[str, Any] | None:
    if order is None:
        return None
    return {"id": order.order_id, "omaId": order.pk, "name": order.name}


# --- shipment.updated ------------------------------------------------------------------------------------------

WATCHED_SHIPMENT_FIELDS = ("tracking_number", "carrier", "status", "substatus", "estimated_delivery_date")
_CAMEL = {"tracking_number": "trackingNumber", "carrier": "carrier", "status": "status", "substatus": "substatus",
          "estimated_delivery_date": "estimatedDelivery"}


def shipment_values(shipment: Shipment) -> dict[str, Any]:
    """The watched values as a snapshot stores them."""
    return {
        "tracking_number": shipment.tracking_number,
        "carrier": shipment.carrier,
        "status": shipment.status,
        "substatus": shipment.substatus,
        "estimated_delivery_date": shipment.estimated_delivery_date or NO_DATE,
    }


def snapshot_values(snapshot: ShipmentSnapshot) -> dict[str, Any]:
    return {name: getattr(snapshot, name) for name in WATCHED_SHIPMENT_FIELDS}


def _public(values: dict[str, Any]) -> dict[str, Any]:
    out = {_CAMEL[name]: value for name, value in values.items()}
    eta = values["estimated_delivery_date"]
    out["estimatedDelivery"] = None if eta == NO_DATE else eta.isoformat()
    return out


def last_events(shipment_ids: Sequence[int]) -> dict[int, TrackingEvent]:
    """The newest carrier event of each shipment, in two queries."""
    newest = TrackingEvent.objects.filter(shipment_id=OuterRef("pk")).order_by("-occurred_at", "-pk").values("pk")[:1]
    ids = Shipment.objects.filter(pk__in=list(shipment_ids)).annotate(last=Subquery(newest)).values_list(
        "last", flat=True
    )
    return {event.shipment_id: event for event in TrackingEvent.objects.filter(pk__in=[pk for pk in ids if pk])}


def _event_data(event: TrackingEvent | None) -> dict[str, Any] | None:
    if event is None:
        return None
    return {"occurredAt": _iso(event.occurred_at), "status": event.status, "substatus": event.substatus,
            "description": event.raw_text, "location": event.location}


def shipment_updated_data(
    shipment: Shipment, *, before: dict[str, Any] | None, last_event: TrackingEvent | None
) -> dict[str, Any]:
    """`before`: the watched values last sent (`snapshot_values`), None for a shipment new since."""
    current = shipment_values(shipment)
    changed = [_CAMEL[name] for name in WATCHED_SHIPMENT_FIELDS if before is None or before[name] != current[name]]
    order = shipment.order
    return {
        "store": store_data(shipment.store),
        "order": order_data(order),
        "shipment": {
            "id": shipment.pk,
            **_public(current),
            "trackingUrl": carrier_link(shipment.carrier, shipment.tracking_number, shipment.tracking_url),
            "trackingPageUrl": _absolute(tracking_path_for(order)) if order is not None else None,
            "deliveredAt": _iso(shipment.delivered_at),
            "lastEvent": _event_data(last_event),
        },
        "previous": _public(before) if before is not None else None,
        "changed": changed,
    }


# --- order.status_changed --------------------------------------------------------------------------------------


def order_status_changed_data(order: Order, *, previous: str) -> dict[str, Any]:
    return {
        "store": store_data(order.store),
        "order": order_data(order),
        "previousStatus": previous,
        "status": order.unified_status,
        "reason": order.unified_status_reason,
    }


# --- alert.* ---------------------------------------------------------------------------------------------------


def push_failed_data(push: FulfillmentPush, store: Store) -> dict[str, Any]:
    return {
        "store": store_data(store),
        "order": order_data(push.order),
        "push": {"id": push.pk, "trackingNumber": push.tracking_number or push.source_tracking_number,
                 "fulfillmentId": push.fulfill_id or None, "attempts": push.attempts},
        "message": push.state_reason or push.last_error,
        "error": push.last_error,
        "errorStatus": push.last_error_status,
        "adminUrl": admin_url(push),
    }


def external_order_failed_data(row: ExternalOrder, store: Store) -> dict[str, Any]:
    return {
        "store": store_data(store),
        "externalOrder": {"id": row.pk, "externalOrderId": row.external_order_id, "sourceName": row.source_name,
                          "channel": row.channel.name, "attempts": row.attempts},
        "message": row.state_reason or row.last_error,
        "error": row.last_error,
        "errorStatus": row.last_error_status,
        "adminUrl": admin_url(row),
    }


def channel_auth_failed_data(channel: Channel, store: Store) -> dict[str, Any]:
    return {
        "store": store_data(store),
        "channel": {"id": channel.pk, "name": channel.name, "kind": channel.kind, "slug": channel.slug},
        "message": channel.last_error,
        "pausedUntil": _iso(channel.poll_paused_until),
        "adminUrl": admin_url(channel),
    }


def carrier_account_failed_data(account: CarrierAccount, store: Store) -> dict[str, Any]:
    return {
        "store": store_data(store),
        "carrierAccount": {"id": account.pk, "carrier": account.carrier, "label": account.label},
        "consecutiveFailures": account.consecutive_failures,
        "message": account.last_error,
        "backoffUntil": _iso(account.backoff_until),
        "adminUrl": admin_url(account),
    }
