"""Orders created through the sandbox's API (`POST /orders`, contract Part B "create order"): the body's checks
and the order it becomes. `Shop.create_order` assigns the ids and keeps the result in its overlay.

A bad body is refused as Genstore would: `422 {"error"}` (no line items, quantity < 1, unknown currency, missing
sourceName, a malformed field), and `400` only when the body is not `{"order": {...}}` at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from oma.sandbox.data import Variant, parse_iso_ms
from oma.sandbox.errors import ApiError

# The ISO 4217 codes the sandbox knows; any other currency is "unknown" (422).
CURRENCIES = frozenset(
    {"USD", "EUR", "GBP", "CAD", "AUD", "JPY", "NZD", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK", "MXN", "BRL",
     "INR", "CNY", "HKD", "SGD", "KRW", "ZAR", "AED"}
)  # fmt: skip
# A created order is paid unless it says pending (contract Part B "create order").
CREATE_FINANCIAL_STATUSES: tuple[str, ...] = ("paid", "pending")
INVENTORY_BEHAVIOURS = frozenset({"bypass", "decrement_ignoring_policy", "decrement_obeying_policy"})
# Contract Part B "cancel order".
API_CANCEL_REASONS: tuple[str, ...] = ("customer", "inventory", "declined", "other")
# The Order object's address keys the sandbox stores and serves back (others are dropped).
ADDRESS_KEYS: tuple[str, ...] = (
    "name", "firstName", "lastName", "company", "address1", "address2", "city", "province", "provinceCode",
    "country", "countryCode", "zip", "phone",
)  # fmt: skip
_CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class LineRequest:
    sku: str | None
    title: str
    variant_title: str | None
    quantity: int
    price: Decimal
    requires_shipping: bool


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A POST /orders body, checked."""

    source_name: str
    source_identifier: str | None
    currency: str
    lines: tuple[LineRequest, ...]
    email: str | None
    phone: str | None
    processed_ms: int | None
    financial_status: str
    shipping_address: dict[str, str] | None
    billing_address: dict[str, str] | None
    shipping_lines: tuple[tuple[str, Decimal], ...]
    total_tax: Decimal
    note: str | None
    tags: tuple[str, ...]


def money_text(value: Decimal) -> str:
    """Decimal text with at least two decimals, as the API writes money ("12.30", "0.125" stays)."""
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -2:
        value = value.quantize(_CENT)
    return format(value, "f")


def _unprocessable(message: str) -> ApiError:
    return ApiError(422, message)


def _text(data: Mapping[str, Any], key: str, *, required: bool = False) -> str | None:
    value = data.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise _unprocessable(f"{key} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _unprocessable(f"{key} must be a string")
    return str(value).strip()


def _amount(value: Any, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _unprocessable(f"{what} must be a decimal string")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise _unprocessable(f"{what} must be a decimal string") from None
    if not amount.is_finite() or amount < 0:
        raise _unprocessable(f"{what} must be a non-negative amount")
    return amount


def _quantity(value: Any, what: str) -> int:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise _unprocessable(f"{what} must be an integer")
    if value < 1:
        raise _unprocessable(f"{what} must be at least 1")
    return value


def _flag(value: Any, what: str, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _unprocessable(f"{what} must be true or false")


def _line(raw: Any, position: int) -> LineRequest:
    what = f"lineItems[{position}]"
    if not isinstance(raw, Mapping):
        raise _unprocessable(f"{what} must be an object")
    title = _text(raw, "title", required=True)
    assert title is not None
    if "price" not in raw:
        raise _unprocessable(f"{what}.price is required")
    return LineRequest(
        sku=_text(raw, "sku"),
        title=title,
        variant_title=_text(raw, "variantTitle"),
        quantity=_quantity(raw.get("quantity"), f"{what}.quantity"),
        price=_amount(raw["price"], f"{what}.price"),
        requires_shipping=_flag(raw.get("requiresShipping"), f"{what}.requiresShipping", True),
    )


def _address(value: Any, what: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _unprocessable(f"{what} must be an object")
    return {key: text for key in ADDRESS_KEYS if (text := _text(value, key)) is not None}


def _shipping_lines(value: Any) -> tuple[tuple[str, Decimal], ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
        raise _unprocessable("shippingLines must be a list of {title, price}")
    return tuple(
        (_text(item, "title") or "Shipping", _amount(item.get("price", "0"), f"shippingLines[{n}].price"))
        for n, item in enumerate(value)
    )


def _tags(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise _unprocessable("tags must be a comma-separated string")
    return tuple(tag.strip() for tag in items if tag.strip())


def _choice(data: Mapping[str, Any], key: str, allowed: tuple[str, ...] | frozenset[str], default: str) -> str:
    value = data.get(key, default)
    if value not in allowed:
        raise _unprocessable(f"{key} must be one of: {', '.join(sorted(allowed))}")
    return str(value)


def order_request(body: Any) -> OrderRequest:
    """The checked body of POST /orders, or ApiError."""
    data = body.get("order") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        raise ApiError(400, 'Body must be {"order": {...}}')
    source_name = _text(data, "sourceName", required=True)
    currency = (_text(data, "currency", required=True) or "").upper()
    if currency not in CURRENCIES:
        raise _unprocessable(f"Unknown currency {currency!r}")
    raw_lines = data.get("lineItems")
    if not isinstance(raw_lines, list) or not raw_lines:
        raise _unprocessable("An order needs at least one line item")
    processed = _text(data, "processedAt")
    try:
        processed_ms = parse_iso_ms(processed) if processed is not None else None
    except ValueError:
        raise _unprocessable("processedAt must be an ISO 8601 date-time") from None
    _choice(data, "inventoryBehaviour", INVENTORY_BEHAVIOURS, "bypass")
    _flag(data.get("sendReceipt"), "sendReceipt", False)
    return OrderRequest(
        source_name=source_name or "",
        source_identifier=_text(data, "sourceIdentifier"),
        currency=currency,
        lines=tuple(_line(raw, position) for position, raw in enumerate(raw_lines)),
        email=_text(data, "email"),
        phone=_text(data, "phone"),
        processed_ms=processed_ms,
        financial_status=_choice(data, "financialStatus", CREATE_FINANCIAL_STATUSES, "paid"),
        shipping_address=_address(data.get("shippingAddress"), "shippingAddress"),
        billing_address=_address(data.get("billingAddress"), "billingAddress"),
        shipping_lines=_shipping_lines(data.get("shippingLines")),
        total_tax=_amount(data.get("totalTax", "0"), "totalTax"),
        note=_text(data, "note"),
        tags=_tags(data.get("tags")),
    )


def build_order(
    request: OrderRequest,
    *,
    order_id: str,
    genstore_id: str,
    name: str,
    line_ids: list[str],
    variants: Mapping[str, Variant],
    stamp: int,
) -> dict[str, Any]:
    """The internal order dict (data.generate_order's shape, plus the fields a create may carry)."""
    lines = []
    for line_id, line in zip(line_ids, request.lines, strict=True):
        variant = variants.get(line.sku or "")
        lines.append(
            {
                "id": line_id,
                "productId": variant.product_id if variant else None,
                "variantId": variant.variant_id if variant else None,
                "sku": line.sku,
                "title": line.title,
                "variantTitle": line.variant_title,
                "quantity": line.quantity,
                "fulfillableQuantity": line.quantity,
                "fulfillmentStatus": None,
                "requiresShipping": line.requires_shipping,
                "taxable": variant.taxable if variant else True,
                "price": money_text(line.price),
                "grams": variant.grams if variant else 0,
            }
        )
    subtotal = sum((line.price * line.quantity for line in request.lines), Decimal(0))
    shipping = sum((price for _, price in request.shipping_lines), Decimal(0))
    return {
        "id": genstore_id,
        "orderId": order_id,
        "name": name,
        "sourceName": request.source_name,
        "sourceIdentifier": request.source_identifier,
        "financialStatus": request.financial_status,
        "fulfillmentStatus": None,
        "cancelledAt": None,
        "cancelReason": None,
        "createdAt": stamp,
        "updatedAt": stamp,
        "processedAt": request.processed_ms if request.processed_ms is not None else stamp,
        "email": request.email,
        "phone": request.phone,
        "currency": request.currency,
        "subtotalPrice": money_text(subtotal),
        "totalDiscounts": "0.00",
        "totalTax": money_text(request.total_tax),
        "totalShippingPrice": money_text(shipping),
        "totalPrice": money_text(subtotal + shipping + request.total_tax),
        "paymentGatewayNames": [],
        "tags": list(request.tags),
        "note": request.note,
        "lineItems": lines,
        "fulfillments": [],
        "shippingAddress": request.shipping_address,
        "billingAddress": request.billing_address,
        "shippingLines": [{"title": title, "price": money_text(price)} for title, price in request.shipping_lines],
    }


_SUMMARY_LINE_KEYS = ("id", "sku", "title", "variantTitle", "quantity", "price", "fulfillableQuantity")


def source_summary(order: dict[str, Any]) -> dict[str, Any]:
    """A created order as the control API lists it (clean JSON values)."""
    return {
        "orderId": order["orderId"],
        "name": order["name"],
        "sourceName": order["sourceName"],
        "sourceIdentifier": order["sourceIdentifier"],
        "financialStatus": order["financialStatus"],
        "cancelled": order["cancelledAt"] is not None,
        "cancelReason": order["cancelReason"],
        "currency": order["currency"],
        "email": order["email"],
        "lineItems": [{key: line[key] for key in _SUMMARY_LINE_KEYS} for line in order["lineItems"]],
        "shippingAddress": dict(order["shippingAddress"]) if order["shippingAddress"] else None,
        "billingAddress": dict(order["billingAddress"]) if order["billingAddress"] else None,
        "totalTax": order["totalTax"],
        "totalShippingPrice": order["totalShippingPrice"],
        "totalPrice": order["totalPrice"],
    }
