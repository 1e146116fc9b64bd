"""The wire form of sandbox orders: Genstore's documented sloppiness, applied to a deterministic share of orders.

Each quirk is named; `QUIRKS` lists them all. Static quirks hit every order whose index falls on the quirk's period
(so any shop of 100+ orders shows each one); the two "single object" quirks hit a share of the orders they can
apply to (one line item, one fulfillment). `wire_order` applies them and says which it applied, and
`canonical_order` gives the truth a correct client should end up with, in plain Python values.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

from oma.sandbox.data import datetime_from_ms, iso_from_ms

QUOTED_NUMBERS = "quoted_numbers"  # "quantity": "1", "grams": "200"
QUOTED_BOOLEANS = "quoted_booleans"  # "requiresShipping": "true"
NULL_STRINGS = "null_strings"  # "email": "null", "cancelledAt": "null", "sourceIdentifier": "null"
BARE_NUMBER_IDS = "bare_number_ids"  # "orderId": 5012345678901
STRAY_QUOTE_TIMESTAMP = "stray_quote_timestamp"  # "updatedAt": "2024-12-01T10:00:00Z\""
OFFSET_TIMESTAMPS = "offset_timestamps"  # "2024-12-01T18:00:00.123+08:00"
SINGLE_LINE_ITEM_OBJECT = "single_line_item_object"  # "lineItems": {...} on one-line orders
SINGLE_FULFILLMENT_OBJECT = "single_fulfillment_object"  # "fulfillments": {...} with one fulfillment
TAGS_STRING = "tags_string"  # "tags": "gift, vip" (else a list)
MALFORMED_TOTAL_PRICE = "malformed_total_price"  # "totalPrice": "abc"
MALFORMED_CREATED_AT = "malformed_created_at"  # "createdAt": "not a date"
MISSING_EMAIL = "missing_email"  # protected field filtered out: no "email" key at all

# quirk -> period: an order gets the quirk when (index + shop offset) % period == 0.
STATIC_QUIRK_PERIODS: dict[str, int] = {
    QUOTED_NUMBERS: 11,
    QUOTED_BOOLEANS: 13,
    NULL_STRINGS: 9,
    BARE_NUMBER_IDS: 12,
    STRAY_QUOTE_TIMESTAMP: 29,
    OFFSET_TIMESTAMPS: 10,
    TAGS_STRING: 3,
    MALFORMED_TOTAL_PRICE: 97,
    MALFORMED_CREATED_AT: 89,
    MISSING_EMAIL: 8,
}
QUIRKS: tuple[str, ...] = (*STATIC_QUIRK_PERIODS, SINGLE_LINE_ITEM_OBJECT, SINGLE_FULFILLMENT_OBJECT)

OFFSET_MINUTES = 8 * 60
# Quirks after which the field holds no usable value: the canonical view says None for it.
EMAIL_HIDING_QUIRKS = frozenset({NULL_STRINGS, MISSING_EMAIL})


def static_quirks(shop_seed: int, index: int) -> frozenset[str]:
    return frozenset(
        name for name, period in STATIC_QUIRK_PERIODS.items() if (index + shop_seed % period) % period == 0
    )


def _id(value: str | None, bare: bool) -> Any:
    if bare and value is not None and value.isdigit():
        return int(value)
    return value


def _nullable(value: Any, null_strings: bool) -> Any:
    return "null" if value is None and null_strings else value


_LINE_QUIRKS = frozenset({BARE_NUMBER_IDS, NULL_STRINGS, QUOTED_NUMBERS, QUOTED_BOOLEANS})


def _wire_line(line: dict[str, Any], bare: bool, nulls: bool, number: Any, boolean: Any) -> dict[str, Any]:
    return {
        "id": _id(line["id"], bare),
        "productId": _id(line["productId"], bare),
        "variantId": _id(line["variantId"], bare),
        "sku": line["sku"],
        "title": line["title"],
        "variantTitle": _nullable(line["variantTitle"], nulls),
        "quantity": number(line["quantity"]),
        "fulfillableQuantity": number(line["fulfillableQuantity"]),
        "fulfillmentStatus": _nullable(line["fulfillmentStatus"], nulls),
        "requiresShipping": boolean(line["requiresShipping"]),
        "taxable": boolean(line["taxable"]),
        "price": line["price"],
        "grams": number(line["grams"]),
    }


def wire_order(
    order: dict[str, Any], quirks: frozenset[str], index: int | None
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The order as the API serves it, and the quirks that were actually applied.

    `index` decides the "single object" quirks; None turns them off (clean JSON).
    """
    applied: list[str] = []
    bare = BARE_NUMBER_IDS in quirks
    nulls = NULL_STRINGS in quirks
    quoted_numbers = QUOTED_NUMBERS in quirks
    quoted_booleans = QUOTED_BOOLEANS in quirks
    offset = OFFSET_MINUTES if OFFSET_TIMESTAMPS in quirks else 0

    def when(ms: int | None) -> str | None:
        return None if ms is None else iso_from_ms(ms, offset_minutes=offset)

    def number(value: int) -> Any:
        return str(value) if quoted_numbers else value

    def boolean(value: bool) -> Any:
        return ("true" if value else "false") if quoted_booleans else value

    if not quirks & _LINE_QUIRKS:
        lines = order["lineItems"]  # internal line items already are clean wire JSON (shared: never mutate)
    else:
        lines = [_wire_line(line, bare, nulls, number, boolean) for line in order["lineItems"]]
    fulfillments = [wire_fulfillment(f, quirks) for f in order["fulfillments"]]

    created = when(order["createdAt"])
    updated = when(order["updatedAt"])
    total_price = order["totalPrice"]
    if MALFORMED_CREATED_AT in quirks:
        created = "not a date"
    if STRAY_QUOTE_TIMESTAMP in quirks and updated is not None:
        updated += '"'
    if MALFORMED_TOTAL_PRICE in quirks:
        total_price = "abc"
    tags: Any = list(order["tags"])
    if TAGS_STRING in quirks:
        tags = ", ".join(order["tags"])

    wire: dict[str, Any] = {
        "id": _id(order["id"], bare),
        "orderId": _id(order["orderId"], bare),
        "name": order["name"],
        "sourceName": order["sourceName"],
        "sourceIdentifier": _nullable(order["sourceIdentifier"], nulls),
        "financialStatus": order["financialStatus"],
        "fulfillmentStatus": _nullable(order["fulfillmentStatus"], nulls),
        "cancelledAt": _nullable(when(order["cancelledAt"]), nulls),
        "cancelReason": _nullable(order["cancelReason"], nulls),
        "createdAt": created,
        "updatedAt": updated,
        "email": _nullable(order["email"], nulls),
        "currency": order["currency"],
        "subtotalPrice": order["subtotalPrice"],
        "totalDiscounts": order["totalDiscounts"],
        "totalTax": order["totalTax"],
        "totalShippingPrice": order["totalShippingPrice"],
        "totalPrice": total_price,
        "paymentGatewayNames": list(order["paymentGatewayNames"]),
        "tags": tags,
        "note": _nullable(order["note"], nulls),
        "lineItems": lines,
        "fulfillments": fulfillments,
    }
    wire.update(_created_fields(order, when, nulls))
    if MISSING_EMAIL in quirks:
        del wire["email"]
    for name in STATIC_QUIRK_PERIODS:
        if name in quirks:
            applied.append(name)
    if index is not None and len(lines) == 1 and index % 3 == 0:
        wire["lineItems"] = lines[0]
        applied.append(SINGLE_LINE_ITEM_OBJECT)
    if index is not None and len(fulfillments) == 1 and index % 2 == 0:
        wire["fulfillments"] = fulfillments[0]
        applied.append(SINGLE_FULFILLMENT_OBJECT)
    return wire, tuple(applied)


def _created_fields(order: dict[str, Any], when: Callable[[int | None], str | None], nulls: bool) -> dict[str, Any]:
    """The fields only an order created through POST /orders has, served back as it was sent (else nothing)."""
    if "processedAt" not in order:
        return {}
    return {
        "processedAt": when(order["processedAt"]),
        "phone": _nullable(order["phone"], nulls),
        "shippingAddress": _nullable(order["shippingAddress"], nulls),
        "billingAddress": _nullable(order["billingAddress"], nulls),
        "shippingLines": order["shippingLines"],
    }


def wire_fulfillment(fulfillment: dict[str, Any], quirks: frozenset[str] = frozenset()) -> dict[str, Any]:
    bare = BARE_NUMBER_IDS in quirks
    nulls = NULL_STRINGS in quirks
    quoted_numbers = QUOTED_NUMBERS in quirks
    offset = OFFSET_MINUTES if OFFSET_TIMESTAMPS in quirks else 0
    return {
        "fulfillId": _id(fulfillment["fulfillId"], bare),
        "orderId": _id(fulfillment["orderId"], bare),
        "status": fulfillment["status"],
        "shipmentStatus": _nullable(fulfillment["shipmentStatus"], nulls),
        "trackingNumber": _nullable(fulfillment["trackingNumber"], nulls),
        "trackingCompany": _nullable(fulfillment["trackingCompany"], nulls),
        "trackingUrl": _nullable(fulfillment["trackingUrl"], nulls),
        "lineItems": [
            {"id": _id(part["id"], bare), "quantity": str(part["quantity"]) if quoted_numbers else part["quantity"]}
            for part in fulfillment["lineItems"]
        ],
        "createdAt": iso_from_ms(fulfillment["createdAt"], offset_minutes=offset),
        "updatedAt": iso_from_ms(fulfillment["updatedAt"], offset_minutes=offset),
    }


def plain_order(order: dict[str, Any]) -> dict[str, Any]:
    """The order in clean API JSON: no quirks (used by `GenstoreSandbox.order`)."""
    wire, _ = wire_order(order, frozenset(), index=None)
    return json.loads(json.dumps(wire))  # a private copy: the wire form shares the order's line items


class CanonicalLineItem(NamedTuple):
    id: str
    sku: str
    quantity: int
    fulfillable_quantity: int
    requires_shipping: bool


class CanonicalFulfillment(NamedTuple):
    fulfill_id: str
    status: str
    shipment_status: str | None
    tracking_number: str | None
    tracking_company: str | None
    tracking_url: str | None
    line_items: tuple[tuple[str, int], ...]


def canonical_order(order: dict[str, Any], applied_quirks: tuple[str, ...]) -> dict[str, Any]:
    """What a correct, lenient client mirrors: quirks undone, malformed fields empty (None)."""
    quirks = set(applied_quirks)
    total_price: Decimal | None
    try:
        total_price = None if MALFORMED_TOTAL_PRICE in quirks else Decimal(order["totalPrice"])
    except InvalidOperation:  # pragma: no cover - generated prices are always valid
        total_price = None
    return {
        "orderId": order["orderId"],
        "id": order["id"],
        "name": order["name"],
        "sourceName": order["sourceName"],
        "sourceIdentifier": order["sourceIdentifier"],
        "financialStatus": order["financialStatus"],
        "fulfillmentStatus": order["fulfillmentStatus"] or "unfulfilled",
        "cancelled": order["cancelledAt"] is not None,
        "cancelledAt": None if order["cancelledAt"] is None else datetime_from_ms(order["cancelledAt"]),
        "cancelReason": order["cancelReason"],
        "createdAt": None if MALFORMED_CREATED_AT in quirks else datetime_from_ms(order["createdAt"]),
        "updatedAt": datetime_from_ms(order["updatedAt"]),
        "email": None if quirks & EMAIL_HIDING_QUIRKS else order["email"],
        "totalPrice": total_price,
        "subtotalPrice": Decimal(order["subtotalPrice"]),
        "currency": order["currency"],
        "tags": list(order["tags"]),
        "lineItems": [
            CanonicalLineItem(
                line["id"], line["sku"], line["quantity"], line["fulfillableQuantity"], line["requiresShipping"]
            )
            for line in order["lineItems"]
        ],
        "fulfillments": [
            CanonicalFulfillment(
                f["fulfillId"],
                f["status"],
                f["shipmentStatus"],
                f["trackingNumber"],
                f["trackingCompany"],
                f["trackingUrl"],
                tuple((part["id"], part["quantity"]) for part in f["lineItems"]),
            )
            for f in order["fulfillments"]
        ],
        "quirks": sorted(quirks),
    }
