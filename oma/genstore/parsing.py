"""Lenient, field-by-field parsing of Genstore payloads into typed records. Pure functions: no I/O.

Genstore's samples quote numbers and booleans, write "null" as a string, give ids as bare numbers or strings, put a
stray `"` after a timestamp, and send one object where a list is expected. Each field is parsed on its own: a value
that cannot be understood leaves that field None and adds "field: reason" to the record's `problems` (logged at
WARNING); the record itself is kept. Only a record without any usable id raises GenstoreRecordError, so that the
caller counts it as an error rather than dropping it silently.

Field names are the contract's (camelCase, Part B). A few documented variants are accepted as fallbacks
(`createTime` for `createdAt`, `shopCurrency` for `currency`, snake_case spellings of older page versions).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any, TypeVar

from oma.genstore.errors import GenstoreRecordError
from oma.genstore.records import (
    FulfillmentLineRecord,
    FulfillmentRecord,
    LineItemRecord,
    OrderRecord,
    RateLimitState,
    RefundRecord,
    ShopRecord,
    WebhookSubscriptionRecord,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

__all__ = [
    "parse_datetime",
    "parse_fulfillment",
    "parse_line_item",
    "parse_link_header",
    "parse_order",
    "parse_rate_limit_header",
    "parse_refund",
    "parse_shop",
    "parse_webhook_subscription",
]


class _Invalid(ValueError):
    """A converter could not understand a value; the message is the reason shown in `problems`."""


class _Problems:
    """Collects "field: reason" lines; a child shares the list and prefixes nested paths (lineItems[0].quantity)."""

    def __init__(self, items: list[str] | None = None, prefix: str = "") -> None:
        self.items: list[str] = items if items is not None else []
        self.prefix = prefix

    def add(self, field: str, reason: str) -> None:
        self.items.append(f"{self.prefix}{field}: {reason}")

    def child(self, prefix: str) -> _Problems:
        return _Problems(self.items, f"{self.prefix}{prefix}.")


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_null(value: object) -> bool:
    """None, "", and the string "null" in any case (samples write it so) all mean "no value"."""
    if value is None:
        return True
    return isinstance(value, str) and value.strip().strip('"').strip().lower() in ("", "null")


# --- converters: value -> typed value, or raise _Invalid(reason) ---------------------------------------------------


def _to_text(value: object) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return str(value)
    raise _Invalid(f"expected text, got {type(value).__name__}")


_WHITESPACE = re.compile(r"\s")


def _to_id(value: object) -> str:
    """Ids are long numbers, sent as strings or bare numbers; always kept as str (never through float)."""
    if isinstance(value, bool):
        raise _Invalid(f"not an id: {_show(value)}")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        text = value.strip().strip('"').strip()
        if text and _WHITESPACE.search(text) is None:
            return text
    raise _Invalid(f"not an id: {_show(value)}")


def _to_int(value: object) -> int:
    if isinstance(value, bool):
        raise _Invalid(f"not an integer: {_show(value)}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip().strip('"').strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = Decimal(text)
        except InvalidOperation:
            number = None
        if number is not None and number.is_finite() and number == number.to_integral_value():
            return int(number)
    raise _Invalid(f"not an integer: {_show(value)}")


def _to_decimal(value: object) -> Decimal:
    if isinstance(value, bool):
        raise _Invalid(f"not a decimal: {_show(value)}")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        number = Decimal(repr(value))  # repr: the shortest text that round-trips, so 0.1 stays 0.1
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip().strip('"').strip())
        except InvalidOperation:
            raise _Invalid(f"not a decimal: {_show(value)}") from None
    else:
        raise _Invalid(f"not a decimal: {_show(value)}")
    if not number.is_finite():
        raise _Invalid(f"not a decimal: {_show(value)}")
    return number


_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})


def _to_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().strip('"').strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise _Invalid(f"not a boolean: {_show(value)}")


def parse_datetime(value: object) -> datetime:
    """ISO 8601 (Z, offsets, any fraction, a stray quote), or epoch seconds/milliseconds -> aware UTC.

    A timestamp without an offset is taken as UTC. Raises ValueError when the value is not a timestamp.
    """
    if isinstance(value, bool):
        raise _Invalid(f"not a timestamp: {_show(value)}")
    if isinstance(value, int | float):
        seconds = value / 1000 if abs(value) > 10**11 else value  # beyond year 5138 in seconds: milliseconds
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise _Invalid(f"not a timestamp: {_show(value)}") from None
    if not isinstance(value, str):
        raise _Invalid(f"not a timestamp: {_show(value)}")
    text = value.strip().strip("\"'").strip()
    if text.isdigit() and len(text) >= 9:  # epoch seconds or milliseconds as text; 8 digits is a date
        return parse_datetime(int(text))
    if text[-1:] in ("z", "Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
        # An offset at either end of the calendar (0001-01-01T00:00+01:00) overflows on the way to UTC.
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise _Invalid(f"not a timestamp: {_show(value)}") from None


def _to_tags(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        parts: Iterable[object] = value.split(",")
    elif isinstance(value, list | tuple):
        parts = value
    else:
        raise _Invalid(f"expected text or a list, got {type(value).__name__}")
    tags = []
    for part in parts:
        if _is_null(part):
            continue
        tag = _to_text(part)
        if tag:
            tags.append(tag)
    return tuple(tags)


def _to_list(value: object) -> list[object]:
    """A list, or one object where a list belongs (samples do that), or a JSON-encoded list in a string."""
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, Mapping):
        return [value]
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        try:
            return _to_list(json.loads(value))
        except ValueError:
            pass
    raise _Invalid(f"expected a list, got {_show(value)}")


# --- field access ---------------------------------------------------------------------------------------------------

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


@cache  # a few dozen field names, looked up for every order
def _snake(name: str) -> str:
    return _CAMEL_BOUNDARY.sub("_", name).lower()


def _lookup(raw: Mapping[str, object], names: tuple[str, ...]) -> tuple[str | None, object]:
    """The first of `names` (or its snake_case spelling) holding a non-null value: (key, value).

    (key, None) when a key is present but null everywhere, (None, None) when absent.
    """
    present: str | None = None
    for name in names:
        for key in (name, _snake(name)):
            if key in raw:
                if not _is_null(raw[key]):
                    return key, raw[key]
                present = present or key
    return present, None


def _field(
    raw: Mapping[str, object], problems: _Problems, names: tuple[str, ...], convert: Callable[[object], T]
) -> T | None:
    key, value = _lookup(raw, names)
    if key is None or value is None:
        return None
    try:
        return convert(value)
    except _Invalid as exc:
        problems.add(key, str(exc))
        return None


def _log_problems(kind: str, ident: str | None, problems: list[str]) -> None:
    if problems:
        logger.warning(
            "Genstore %s %s: %d field(s) left empty: %s", kind, ident or "(no id)", len(problems), "; ".join(problems)
        )


def _require_mapping(raw: object, kind: str) -> Mapping[str, object]:
    if not isinstance(raw, Mapping):
        raise GenstoreRecordError(f"Genstore {kind} is not a JSON object but a {type(raw).__name__}", raw=raw)
    return raw


# --- records --------------------------------------------------------------------------------------------------------


def _line_item(raw: Mapping[str, object], problems: _Problems) -> LineItemRecord:
    item_id = _field(raw, problems, ("id", "lineItemId"), _to_id)
    if item_id is None:
        raise GenstoreRecordError("line item has no usable id", raw=raw)
    return LineItemRecord(
        id=item_id,
        product_id=_field(raw, problems, ("productId",), _to_id),
        variant_id=_field(raw, problems, ("variantId",), _to_id),
        sku=_field(raw, problems, ("sku",), _to_text),
        title=_field(raw, problems, ("title", "name"), _to_text),
        variant_title=_field(raw, problems, ("variantTitle",), _to_text),
        quantity=_field(raw, problems, ("quantity",), _to_int),
        fulfillable_quantity=_field(raw, problems, ("fulfillableQuantity",), _to_int),
        fulfillment_status=_field(raw, problems, ("fulfillmentStatus",), _to_text),
        requires_shipping=_field(raw, problems, ("requiresShipping",), _to_bool),
        price=_field(raw, problems, ("price",), _to_decimal),
        grams=_field(raw, problems, ("grams",), _to_int),
    )


def parse_line_item(raw: object, *, problems: list[str] | None = None) -> LineItemRecord:
    """One order line item. Unparseable fields go to `problems` (when given) and the log.

    Raises GenstoreRecordError when the item has no usable `id` (it could not be fulfilled by line).
    """
    collected = _Problems()
    record = _line_item(_require_mapping(raw, "line item"), collected)
    _log_problems("line item", record.id, collected.items)
    if problems is not None:
        problems.extend(collected.items)
    return record


def _fulfillment_lines(value: object, problems: _Problems) -> tuple[FulfillmentLineRecord, ...]:
    lines = []
    for index, item in enumerate(_to_list(value)):
        if not isinstance(item, Mapping):
            problems.add(f"lineItems[{index}]", f"not an object: {_show(item)}; skipped")
            continue
        item_problems = problems.child(f"lineItems[{index}]")
        line_id = _field(item, item_problems, ("id", "lineItemId"), _to_id)
        if line_id is None:
            problems.add(f"lineItems[{index}]", "no usable id; skipped")
            continue
        lines.append(FulfillmentLineRecord(id=line_id, quantity=_field(item, item_problems, ("quantity",), _to_int)))
    return tuple(lines)


def _fulfillment(raw: Mapping[str, object], problems: _Problems) -> FulfillmentRecord:
    fulfill_id = _field(raw, problems, ("fulfillId", "fulfillmentId", "id"), _to_id)
    if fulfill_id is None:
        raise GenstoreRecordError("fulfillment has no usable fulfillId", raw=raw)
    # Some doc pages nest tracking in a trackingInfo object; the contract has flat fields. Accept both.
    tracking: Mapping[str, object] = raw
    _, info = _lookup(raw, ("trackingInfo",))
    if isinstance(info, list) and info and isinstance(info[0], Mapping):
        info = info[0]
    if isinstance(info, Mapping):
        tracking = {f"tracking{key[:1].upper()}{key[1:]}": item for key, item in info.items()}
        tracking.update((key, item) for key, item in raw.items() if not _is_null(item))
    lines_key, lines_value = _lookup(raw, ("lineItems",))
    lines: tuple[FulfillmentLineRecord, ...] = ()
    if lines_key is not None and lines_value is not None:
        try:
            lines = _fulfillment_lines(lines_value, problems)
        except _Invalid as exc:
            problems.add(lines_key, str(exc))
    return FulfillmentRecord(
        fulfill_id=fulfill_id,
        order_id=_field(raw, problems, ("orderId",), _to_id),
        status=_field(raw, problems, ("status",), _to_text),
        shipment_status=_field(raw, problems, ("shipmentStatus",), _to_text),
        tracking_number=_field(tracking, problems, ("trackingNumber",), _to_text),
        tracking_company=_field(tracking, problems, ("trackingCompany",), _to_text),
        tracking_url=_field(tracking, problems, ("trackingUrl",), _to_text),
        line_items=lines,
        created_at=_field(raw, problems, ("createdAt", "createTime"), parse_datetime),
        updated_at=_field(raw, problems, ("updatedAt", "updateTime"), parse_datetime),
        raw=_as_dict(raw),
        problems=tuple(problems.items),
    )


def parse_fulfillment(raw: object) -> FulfillmentRecord:
    """A Fulfillment object (contract Part B). Raises GenstoreRecordError without a usable fulfillId."""
    collected = _Problems()
    record = _fulfillment(_require_mapping(raw, "fulfillment"), collected)
    _log_problems("fulfillment", record.fulfill_id, collected.items)
    return record


def parse_order(raw: object) -> OrderRecord:
    """An Order object from the REST API or an orders/* webhook (the object inside {"order": ...}).

    `orderId` is the id used in paths; without a usable one, `id` stands in (noted in `problems`, since the same
    order could later arrive under its real orderId). Neither: GenstoreRecordError. `fulfillmentStatus` null (or
    absent) is `unfulfilled`. Protected fields (email, customer, addresses) may be missing.
    """
    raw = _require_mapping(raw, "order")
    problems = _Problems()
    order_id = _field(raw, problems, ("orderId",), _to_id)
    genstore_id = _field(raw, problems, ("id",), _to_id)
    if order_id is None:
        if genstore_id is None:
            raise GenstoreRecordError("Genstore order without a usable orderId or id", raw=raw)
        problems.add("orderId", f"missing or unusable; used id {genstore_id}")
        order_id = genstore_id

    line_items: list[LineItemRecord] = []
    items_key, items_value = _lookup(raw, ("lineItems",))
    # Only a list read in full says which lines the order has; absent, null or partly unreadable, it does not.
    has_line_items = items_key is not None and items_value is not None
    if items_key is not None and has_line_items:
        try:
            items = _to_list(items_value)
        except _Invalid as exc:
            problems.add(items_key, str(exc))
            items, has_line_items = [], False
        for index, item in enumerate(items):
            label = f"{items_key}[{index}]"
            if not isinstance(item, Mapping):
                problems.add(label, f"not an object: {_show(item)}; skipped")
                has_line_items = False
                continue
            try:
                line_items.append(_line_item(item, problems.child(label)))
            except GenstoreRecordError:
                problems.add(label, "no usable id; skipped")
                has_line_items = False

    fulfillments: list[FulfillmentRecord] = []
    fulfillments_key, fulfillments_value = _lookup(raw, ("fulfillments",))
    has_fulfillments = fulfillments_key is not None
    if fulfillments_key is not None and fulfillments_value is not None:
        try:
            entries = _to_list(fulfillments_value)
        except _Invalid as exc:
            problems.add(fulfillments_key, str(exc))
            entries = []
            has_fulfillments = False  # present but unreadable: we do not know the order's fulfillments
        for index, entry in enumerate(entries):
            label = f"{fulfillments_key}[{index}]"
            if not isinstance(entry, Mapping):
                problems.add(label, f"not an object: {_show(entry)}; skipped")
                continue
            try:
                fulfillment = _fulfillment(entry, _Problems())
            except GenstoreRecordError:
                problems.add(label, "no usable fulfillId; skipped")
                continue
            fulfillments.append(fulfillment)
            problems.items.extend(f"{label}.{problem}" for problem in fulfillment.problems)

    email = _field(raw, problems, ("email", "contactEmail"), _to_text)
    _, customer = _lookup(raw, ("customer",))
    if email is None and isinstance(customer, Mapping):
        email = _field(customer, problems.child("customer"), ("email",), _to_text)

    # Read every field before building the record, so that `problems` is complete when it is frozen.
    fields: dict[str, Any] = {
        "name": _field(raw, problems, ("name", "orderName"), _to_text),
        "source_name": _field(raw, problems, ("sourceName",), _to_text),
        "source_identifier": _field(raw, problems, ("sourceIdentifier",), _to_text),
        "financial_status": _field(raw, problems, ("financialStatus",), _to_text),
        "fulfillment_status": _order_fulfillment_status(raw, problems),
        "cancelled_at": _field(raw, problems, ("cancelledAt", "cancelTime", "cancelledTime"), parse_datetime),
        "cancel_reason": _field(raw, problems, ("cancelReason",), _to_text),
        "created_at": _field(raw, problems, ("createdAt", "createTime"), parse_datetime),
        "updated_at": _field(raw, problems, ("updatedAt", "updateTime"), parse_datetime),
        "total_price": _field(raw, problems, ("totalPrice", "currentTotalPrice"), _to_decimal),
        "subtotal_price": _field(raw, problems, ("subtotalPrice", "currentSubtotalPrice"), _to_decimal),
        "currency": _field(raw, problems, ("currency", "shopCurrency"), _to_text),
        "tags": _field(raw, problems, ("tags",), _to_tags) or (),
    }
    _log_problems("order", order_id, problems.items)
    return OrderRecord(
        order_id=order_id,
        id=genstore_id,
        email=email,
        line_items=tuple(line_items),
        has_line_items=has_line_items,
        fulfillments=tuple(fulfillments),
        has_fulfillments=has_fulfillments,
        raw=_as_dict(raw),
        problems=tuple(problems.items),
        **fields,
    )


def _order_fulfillment_status(raw: Mapping[str, object], problems: _Problems) -> str | None:
    """Genstore writes an unfulfilled order's fulfillmentStatus as null (Part B): that is the word `unfulfilled`.
    A value that is there but unreadable stays None (unknown), with its problem noted."""
    key, value = _lookup(raw, ("fulfillmentStatus",))
    if key is None or value is None:
        return "unfulfilled"
    try:
        return _to_text(value)
    except _Invalid as exc:
        problems.add(key, str(exc))
        return None


def _as_dict(raw: Mapping[str, object]) -> dict[str, object]:
    """Keep the original dict object (no copy: pages of 250 orders should not double in memory)."""
    return raw if isinstance(raw, dict) else dict(raw)


def parse_refund(raw: object) -> RefundRecord:
    """A Refund object (refunds/create webhook, order refunds). Never raises for a missing id: it is None."""
    raw = _require_mapping(raw, "refund")
    problems = _Problems()
    record = RefundRecord(
        refund_id=_field(raw, problems, ("refundId", "id"), _to_id),
        order_id=_field(raw, problems, ("orderId",), _to_id),
        amount=_field(raw, problems, ("amount", "refundPrice", "totalRefundPrice"), _to_decimal),
        currency=_field(raw, problems, ("currency", "shopCurrency"), _to_text),
        created_at=_field(raw, problems, ("createdAt", "createTime"), parse_datetime),
        raw=_as_dict(raw),
        problems=tuple(problems.items),
    )
    _log_problems("refund", record.refund_id, problems.items)
    return record


def parse_shop(raw: object) -> ShopRecord:
    """The object inside GET /shops/info's {"shop": ...}."""
    raw = _require_mapping(raw, "shop")
    problems = _Problems()
    record = ShopRecord(
        id=_field(raw, problems, ("shopId", "id"), _to_id),
        name=_field(raw, problems, ("shopName", "name"), _to_text),
        domain=_field(raw, problems, ("domain", "shopDomain"), _to_text),
        currency=_field(raw, problems, ("currency", "shopCurrency"), _to_text),
        raw=_as_dict(raw),
        timezone=_field(raw, problems, ("timezone", "timeZone"), _to_text),
    )
    _log_problems("shop", record.id, problems.items)
    return record


def parse_webhook_subscription(raw: object) -> WebhookSubscriptionRecord:
    """A webhook subscription. Raises GenstoreRecordError without a usable id (it could never be deleted)."""
    raw = _require_mapping(raw, "webhook subscription")
    problems = _Problems()
    webhook_id = _field(raw, problems, ("id", "webhookId"), _to_id)
    if webhook_id is None:
        raise GenstoreRecordError("webhook subscription has no usable id", raw=raw)
    record = WebhookSubscriptionRecord(
        id=webhook_id,
        address=_field(raw, problems, ("address",), _to_text) or "",
        topic=_field(raw, problems, ("topic",), _to_text) or "",
        created_at=_field(raw, problems, ("createTime", "createdAt"), parse_datetime),
        updated_at=_field(raw, problems, ("updateTime", "updatedAt"), parse_datetime),
    )
    _log_problems("webhook subscription", webhook_id, problems.items)
    return record


# --- headers --------------------------------------------------------------------------------------------------------

_LINK_TARGET = re.compile(r"<([^<>]*)>([^<]*)")
_LINK_REL = re.compile(r"""\brel\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s;,"']+))""", re.IGNORECASE)


def parse_link_header(value: str | None) -> dict[str, str]:
    """`<url>; rel=next, <url>; rel=previous` -> {"next": url, "previous": url}.

    Tolerates what Genstore's docs show: rel unquoted or quoted, the whole value wrapped in quotes, stray spaces
    inside `< >`. Several rels in one parameter (rel="next last") each map to the url. The first url for a rel wins.
    """
    if not value:
        return {}
    text = value.strip()
    while len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    links: dict[str, str] = {}
    for match in _LINK_TARGET.finditer(text):
        url = match.group(1).strip().strip("\"'").strip()
        rel_match = _LINK_REL.search(match.group(2))
        if not url or not rel_match:
            continue
        rels = next(group for group in rel_match.groups() if group is not None)
        for rel in rels.split():
            links.setdefault(rel.lower(), url)
    return links


_RATE_LIMIT = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_rate_limit_header(value: str | None) -> RateLimitState | None:
    """`X-Genstore-Shop-Api-Rate-Limit: 30/40` (used/capacity) -> RateLimitState, None when absent or odd."""
    if not value:
        return None
    match = _RATE_LIMIT.match(value.strip().strip("\"'"))
    if not match:
        return None
    used, capacity = int(match.group(1)), int(match.group(2))
    if capacity <= 0:
        return None
    return RateLimitState(used=used, capacity=capacity)


# --- compliance and app payloads (customers/redact, customers/data_request, shop/redact, app/scopesUpdate) ---------


def compliance_shop_domain(payload: Mapping[str, Any]) -> str:
    """The shop a compliance payload names (lower case), or "" when it names none."""
    return str(payload.get("shopDomain") or "").strip().lower()


def compliance_customer(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The customer object; empty once a redaction erased it (a replayed request still names its orders)."""
    customer = payload.get("customer")
    return customer if isinstance(customer, dict) else {}


def _compliance_order_list(payload: Mapping[str, Any], key: str) -> list[str]:
    value = payload.get(key) or []
    if not isinstance(value, list):
        raise ValueError(f"{key} is not a list")
    return [str(order_id) for order_id in value if order_id not in (None, "")]


def compliance_orders_to_redact(payload: Mapping[str, Any]) -> list[str]:
    """customers/redact: the order ids to erase; ValueError when the payload's list is not a list."""
    return _compliance_order_list(payload, "ordersToRedact")


def compliance_orders_requested(payload: Mapping[str, Any]) -> list[str]:
    """customers/data_request: the order ids asked for; ValueError when the payload's list is not a list."""
    return _compliance_order_list(payload, "ordersRequested")


def compliance_orders_named(payload: Mapping[str, Any]) -> list[Any]:
    """The orders either compliance request names (as sent), for matching a customer's earlier requests."""
    orders = payload.get("ordersRequested") or payload.get("ordersToRedact")
    return orders if isinstance(orders, list) else []


_SCOPE_KEYS = ("current", "currentScopes", "scopes", "scope", "accessScopes", "authScope")


def scopes_from(value: Any) -> list[str] | None:
    """["a", "b"], "a,b" or "[a,b]" -> ["a", "b"]; None when the value holds no scope list."""
    if isinstance(value, list):
        return sorted({str(item).strip() for item in value if str(item).strip()})
    if isinstance(value, str):
        return sorted({part for part in (p.strip() for p in re.split(r"[,\s]+", value.strip("[] "))) if part})
    return None


def parse_scopes_update(payload: Mapping[str, Any]) -> list[str] | None:
    """app/scopesUpdate: the scopes the app now holds, or None when the payload names none."""
    auth_scope = payload.get("authScope")
    inner = auth_scope if isinstance(auth_scope, dict) else payload.get("app") or {}
    for key in _SCOPE_KEYS:
        scopes = scopes_from(inner.get(key)) if key in inner else None
        if scopes is not None:
            return scopes
    return None
