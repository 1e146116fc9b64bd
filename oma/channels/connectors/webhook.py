"""Platforms that push their shipments to OMA, signed the Standard Webhooks way (standardwebhooks.com, v1).

Headers: `webhook-id` (the message id, also the replay key), `webhook-timestamp` (Unix seconds of the attempt)
and `webhook-signature`: space-separated `v1,<base64 HMAC-SHA256>` signatures of "{id}.{timestamp}.{body}",
keyed with the base64-decoded part of the channel secret after `whsec_`. Several signatures let a sender sign
with an old and a new secret during a rotation; one match is enough. Timestamps more than 5 minutes away from
our clock, either way, are refused.

Body: {"externalOrderId": "...", "shipments"?: [...], "order"?: {...}} with shipments, an order or both:
  "shipments": [{"trackingNumber": "...", "carrier"?: "...", "lineItems"?: [{"sku" | "lineItemId": "...",
                 "quantity": n}], "shippedAt"?: ISO 8601, "status"?: "..."}]
    A shipment whose status is voided/cancelled withdraws that tracking number.
  "order": {"createdAt", "currency", "email"?, "phone"?, "name"?, "lineItems": [{"sku", "title", "quantity",
            "price" (the unit price, a decimal string), "variantTitle"?, "lineItemId"?}], "shippingAddress"?,
            "billingAddress"? ({"name", "company", "address1", "address2", "city", "provinceCode", "zip",
            "countryCode" (a code or a country's name), "phone"}, each optional), "shippingPrice"?, "totalTax"?,
            "financialStatus"? ("paid" or "pending"), "cancelledAt"?, "note"?, "tags"? (a list or "a, b")}
    An order sold on the channel, to be created in Genstore (oma.channels.connectors.order_files checks its
    values the way it checks order files).
A delivery is all or nothing: PayloadError lists every problem in it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from oma.channels.connectors.base import (
    VOIDED_STATUSES,
    AddressInput,
    Connector,
    ExternalOrderInput,
    ExternalOrderLineInput,
    ExternalShipmentRecord,
    LineRef,
    PayloadError,
    carrier_code,
    tracking_number_problem,
)
from oma.channels.connectors.order_files import (
    check_order_time,
    looks_like_email,
    normalized_address,
    parse_amount,
    parse_currency,
)
from tracking.numbers import normalize

if TYPE_CHECKING:
    from oma.channels.models import Channel

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # the spec allows 24 to 64
TOLERANCE_SECONDS = 5 * 60
MAX_SHIPMENTS = 500
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
# A quantity is counted in items; anything larger is a mistake (and would not fit the database's integer).
MAX_QUANTITY = 1_000_000
_QUANTITY = re.compile(r"[0-9]{1,18}")
MAX_ORDER_LINES = 1_000
MAX_ID_CHARS = 128
MAX_NOTE_CHARS = 5_000
MAX_TAGS = 100
# Field limits: the database columns' (oma.channels.models.ExternalOrder / ExternalOrderLine).
_ORDER_TEXT_LIMITS = {"email": 254, "phone": 64, "name": 255}
_LINE_TEXT_LIMITS = {"sku": 128, "title": 512, "variantTitle": 512, "lineItemId": 128}
_ADDRESS_PART_CHARS = 255
# The order object's address keys -> AddressInput's fields.
_ADDRESS_KEYS = {
    "name": "name", "company": "company", "address1": "address1", "address2": "address2", "city": "city",
    "provinceCode": "province_code", "zip": "zip", "countryCode": "country_code", "phone": "phone",
}
FINANCIAL_STATUSES = {"paid": "", "pending": "pending"}  # "" is Genstore's default for a created order: paid


# The topic channel deliveries are stored under in the shared delivery log (oma.channels.inbound).
CHANNEL_TOPIC = "channels/shipments"


class SignatureError(Exception):
    """Why a delivery is not authentic (missing header, too old or too new, no matching signature)."""


def generate_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a signing secret is 'whsec_' followed by base64") from exc


def sign(*, secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value a sender computes (used by tests, the sandbox and for documentation)."""
    digest = hmac.new(secret_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


@dataclass(frozen=True, slots=True)
class VerifiedMessage:
    msg_id: str
    timestamp: datetime


def verify(
    *, secrets_: Iterable[str], headers: Mapping[str, str], body: bytes, now: datetime | None = None
) -> VerifiedMessage:
    """Check a delivery's Standard Webhooks signature against any of the channel's secrets, in constant time."""
    msg_id = (headers.get("webhook-id") or "").strip()
    timestamp_text = (headers.get("webhook-timestamp") or "").strip()
    signature_header = (headers.get("webhook-signature") or "").strip()
    if not (msg_id and timestamp_text and signature_header):
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature header")
    if len(msg_id) > 200 or "." in msg_id:
        raise SignatureError("webhook-id is malformed")
    # ASCII digits only, and few enough for a time: str.isdigit() also takes '²' and other scripts' digits,
    # which int() refuses or reads, and a thousand digits overflow the comparison with the clock.
    if not _TIMESTAMP.fullmatch(timestamp_text):
        raise SignatureError("webhook-timestamp must be integer Unix seconds (1 to 12 ASCII digits)")
    timestamp = int(timestamp_text)
    now = now or datetime.now(tz=UTC)
    if abs(now.timestamp() - timestamp) > TOLERANCE_SECONDS:
        raise SignatureError("webhook-timestamp is more than 5 minutes away from now")
    offered = []
    for part in signature_header.split():
        version, _, value = part.partition(",")
        if version != "v1" or not value:
            continue
        try:
            offered.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            continue
    if not offered:
        raise SignatureError("no v1 signature in webhook-signature")
    signed = f"{msg_id}.{timestamp}.".encode() + body
    for secret in secrets_:
        if not secret:
            continue
        expected = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
        # Compare against every offered signature (no early exit on the first mismatch).
        if any(hmac.compare_digest(expected, candidate) for candidate in offered):
            return VerifiedMessage(msg_id=msg_id, timestamp=datetime.fromtimestamp(timestamp, tz=UTC))
    raise SignatureError("no signature matches")


# --- the payload -----------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, int | float | str):
        return str(value).strip()
    return ""


def _quantity(value: Any, where: str, problems: list[str]) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        problems.append(f"{where}.quantity must be a whole number of at least 1")
        return None
    if isinstance(value, str) and _QUANTITY.fullmatch(value.strip()):  # ASCII digits: '²'.isdigit() is True
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or value < 1:
        problems.append(f"{where}.quantity must be a whole number of at least 1")
        return None
    if value > MAX_QUANTITY:
        problems.append(f"{where}.quantity must be at most {MAX_QUANTITY:,}")
        return None
    return value


def _datetime(value: Any, where: str, problems: list[str]) -> datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        problems.append(f"{where} must be an ISO 8601 string")
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        problems.append(f"{where} {value!r} is not ISO 8601")
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _unwrapped(payload: Any) -> dict[str, Any]:
    if isinstance(payload, dict) and "externalOrderId" not in payload and isinstance(payload.get("data"), dict):
        payload = payload["data"]  # a Standard Webhooks envelope: {"type", "timestamp", "data": {...}}
    if not isinstance(payload, dict):
        raise PayloadError(["body must be a JSON object"])
    return payload


def _external_order_id(payload: dict[str, Any], problems: list[str]) -> str:
    order_id = _text(payload.get("externalOrderId"))
    if not order_id:
        problems.append("externalOrderId is missing")
    elif len(order_id) > MAX_ID_CHARS:
        problems.append(f"externalOrderId is longer than {MAX_ID_CHARS} characters")
    return order_id


def parse_payload(payload: Any, *, source_ref: str = "") -> list[ExternalShipmentRecord]:
    """The shipment records of one delivery, or PayloadError listing everything wrong with it, its order object
    included (all or nothing). A delivery of an order alone has no records; parse_order_payload reads the order."""
    payload = _unwrapped(payload)
    problems: list[str] = []
    order_id = _external_order_id(payload, problems)
    has_order = payload.get("order") is not None
    if has_order:
        _order_input(payload, order_id, source_ref=source_ref, problems=problems)
    shipments = payload.get("shipments")
    if has_order and (shipments is None or shipments == []):
        if problems:
            raise PayloadError(problems)
        return []
    if not isinstance(shipments, list) or not shipments:
        problems.append('shipments must be a non-empty list (or the body must hold an "order")')
        raise PayloadError(problems)
    if len(shipments) > MAX_SHIPMENTS:
        raise PayloadError([*problems, f"at most {MAX_SHIPMENTS} shipments per delivery"])
    records = []
    for index, shipment in enumerate(shipments):
        where = f"shipments[{index}]"
        if not isinstance(shipment, dict):
            problems.append(f"{where} must be an object")
            continue
        number = normalize(_text(shipment.get("trackingNumber")))
        number_problem = tracking_number_problem(number)
        if number_problem:
            problems.append(f"{where}.trackingNumber: {number_problem}")
        lines = []
        raw_lines = shipment.get("lineItems")
        if raw_lines is not None and not isinstance(raw_lines, list):
            problems.append(f"{where}.lineItems must be a list")
            raw_lines = []
        for line_index, item in enumerate(raw_lines or []):
            line_where = f"{where}.lineItems[{line_index}]"
            if not isinstance(item, dict):
                problems.append(f"{line_where} must be an object")
                continue
            sku, line_item_id = _text(item.get("sku")), _text(item.get("lineItemId"))
            if not (sku or line_item_id):
                problems.append(f"{line_where} needs a sku or a lineItemId")
            quantity = _quantity(item.get("quantity"), line_where, problems)
            lines.append(LineRef(line_item_id=line_item_id[:64], sku=sku[:128], quantity=quantity))
        status = _text(shipment.get("status"))[:64]
        records.append(
            ExternalShipmentRecord(
                external_order_id=order_id,
                tracking_number=number,
                carrier=carrier_code(_text(shipment.get("carrier"))),
                lines=tuple(lines),
                shipped_at=_datetime(shipment.get("shippedAt"), f"{where}.shippedAt", problems),
                status=status,
                voided=status.lower() in VOIDED_STATUSES,
                source_ref=f"{source_ref} shipments[{index}]".strip(),
                raw=shipment,
            )
        )
    if problems:
        raise PayloadError(problems)
    return records


def parse_order_payload(payload: Any, *, source_ref: str = "") -> ExternalOrderInput | None:
    """The delivery's external order; None when it has no "order"; PayloadError listing every problem of it."""
    payload = _unwrapped(payload)
    if payload.get("order") is None:
        return None
    problems: list[str] = []
    order_id = _external_order_id(payload, problems)
    order = _order_input(payload, order_id, source_ref=source_ref, problems=problems)
    if problems or order is None:
        raise PayloadError(problems)
    return order


def _order_input(
    payload: dict[str, Any], order_id: str, *, source_ref: str, problems: list[str]
) -> ExternalOrderInput | None:
    """Read payload["order"], appending what is wrong to `problems`; the input when nothing is."""
    order = payload["order"]
    if not isinstance(order, dict):
        problems.append("order must be an object")
        return None
    found = len(problems)
    created_at = _order_time(order, "createdAt", problems, required=True)
    currency = _currency(order, problems)
    texts = {key: _string(order, key, f"order.{key}", problems, limit=limit)
             for key, limit in _ORDER_TEXT_LIMITS.items()}
    if texts["email"] and not looks_like_email(texts["email"]):
        problems.append(f"order.email {_shown(texts['email'])} is not an email address")
    lines = _order_lines(order.get("lineItems"), problems)
    # Built even when something is wrong: its arguments check the remaining fields (every problem is listed).
    result = ExternalOrderInput(
        external_order_id=order_id,
        created_at=created_at or datetime.min.replace(tzinfo=UTC),  # only returned when createdAt was good
        currency=currency,
        lines=tuple(lines),
        email=texts["email"],
        phone=texts["phone"],
        name=texts["name"],
        shipping_address=_address(order.get("shippingAddress"), "order.shippingAddress", problems),
        billing_address=_address(order.get("billingAddress"), "order.billingAddress", problems),
        shipping_price=_amount(order.get("shippingPrice"), "order.shippingPrice", problems),
        total_tax=_amount(order.get("totalTax"), "order.totalTax", problems),
        financial_status=_financial_status(order.get("financialStatus"), problems),
        cancelled_at=_order_time(order, "cancelledAt", problems, required=False),
        note=_string(order, "note", "order.note", problems, limit=MAX_NOTE_CHARS),
        tags=_tags(order.get("tags"), problems),
        source_ref=source_ref,
        raw={"externalOrderId": order_id, "order": order},
    )
    return result if len(problems) == found and order_id else None


def _shown(value: str, limit: int = 40) -> str:
    return repr(value) if len(value) <= limit else f"{value[:limit]!r}… ({len(value)} characters)"


def _string(data: dict[str, Any], key: str, where: str, problems: list[str], *, limit: int,
            required: bool = False) -> str:
    value = data.get(key)
    if value is None or value == "":
        if required:
            problems.append(f"{where} is missing")
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        problems.append(f"{where} must be a string")
        return ""
    text = str(value).strip()
    if len(text) > limit:
        problems.append(f"{where} is longer than {limit:,} characters")
        return ""
    if required and not text:
        problems.append(f"{where} is missing")
    return text


def _order_time(order: dict[str, Any], key: str, problems: list[str], *, required: bool) -> datetime | None:
    where = f"order.{key}"
    value = order.get(key)
    if value in (None, ""):
        if required:
            problems.append(f"{where} is missing")
        return None
    count = len(problems)
    parsed = _datetime(value, where, problems)
    if len(problems) > count or parsed is None:
        return None
    try:
        return check_order_time(parsed, now=datetime.now(tz=UTC))
    except ValueError as exc:
        problems.append(f"{where} {value!r} {exc}")
        return None


def _currency(order: dict[str, Any], problems: list[str]) -> str:
    value = _string(order, "currency", "order.currency", problems, limit=8, required=True)
    if not value:
        return ""
    try:
        return parse_currency(value)
    except ValueError as exc:
        problems.append(f"order.currency {_shown(value)} {exc}")
        return ""


def _amount(value: Any, where: str, problems: list[str], *, required: bool = False) -> Decimal | None:
    if value is None or value == "":
        if required:
            problems.append(f"{where} is missing")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        problems.append(f"{where} must be a decimal string like \"12.34\"")
        return None
    try:
        return parse_amount(str(value))
    except ValueError as exc:
        problems.append(f"{where} {_shown(str(value))} {exc}")
        return None


def _order_lines(items: Any, problems: list[str]) -> list[ExternalOrderLineInput]:
    if not isinstance(items, list) or not items:
        problems.append("order.lineItems must be a non-empty list")
        return []
    if len(items) > MAX_ORDER_LINES:
        problems.append(f"order.lineItems: at most {MAX_ORDER_LINES:,} line items per order")
        return []
    lines = []
    for index, item in enumerate(items):
        where = f"order.lineItems[{index}]"
        if not isinstance(item, dict):
            problems.append(f"{where} must be an object")
            continue
        texts = {key: _string(item, key, f"{where}.{key}", problems, limit=limit, required=key in ("sku", "title"))
                 for key, limit in _LINE_TEXT_LIMITS.items()}
        if item.get("quantity") is None:
            problems.append(f"{where}.quantity is missing")
        quantity = _quantity(item.get("quantity"), where, problems)
        price = _amount(item.get("price"), f"{where}.price", problems, required=True)
        if texts["sku"] and texts["title"] and quantity is not None and price is not None:
            lines.append(ExternalOrderLineInput(
                sku=texts["sku"], title=texts["title"], quantity=quantity, price=price,
                variant_title=texts["variantTitle"], external_line_id=texts["lineItemId"],
            ))
    return lines


def _address(data: Any, where: str, problems: list[str]) -> AddressInput | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        problems.append(f"{where} must be an object")
        return None
    parts = {field: _string(data, key, f"{where}.{key}", problems, limit=_ADDRESS_PART_CHARS)
             for key, field in _ADDRESS_KEYS.items()}
    address = AddressInput(**parts)
    if not address.as_json():
        return None
    try:
        return normalized_address(address)
    except ValueError as exc:
        problems.append(f"{where}.countryCode {_shown(address.country_code)} {exc}")
        return None


def _financial_status(value: Any, problems: list[str]) -> str:
    if value in (None, ""):
        return ""
    status = FINANCIAL_STATUSES.get(value.strip().lower()) if isinstance(value, str) else None
    if status is None:
        problems.append(f"order.financialStatus must be one of {', '.join(FINANCIAL_STATUSES)}")
        return ""
    return status


def _tags(value: Any, problems: list[str]) -> tuple[str, ...]:
    if value in (None, ""):
        return ()
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
        problems.append("order.tags must be a list of strings or a comma-separated string")
        return ()
    tags = [tag.strip() for tag in value if tag.strip()]
    if len(tags) > MAX_TAGS:
        problems.append(f"order.tags: at most {MAX_TAGS} tags")
        return ()
    if any(len(tag) > 255 or "," in tag for tag in tags):
        problems.append("order.tags: a tag is at most 255 characters and holds no comma")
        return ()
    return tuple(tags)


class WebhookConnector(Connector):
    kind = "webhook"
    label = "Webhook (Standard Webhooks)"
    accepts_webhooks = True

    def parse_webhook(self, channel: Channel, body: bytes) -> list[ExternalShipmentRecord]:
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise PayloadError(["body is not UTF-8 JSON"]) from exc
        return parse_payload(payload)


def signing_secrets(channel: Channel, *, now: datetime | None = None) -> Sequence[str]:
    """The secrets a delivery may be signed with: the current one, and the previous one until it expires."""
    now = now or datetime.now(tz=UTC)
    found = [channel.signing_secret]
    expires = channel.previous_signing_secret_expires_at
    if channel.previous_signing_secret and (expires is None or expires > now):
        found.append(channel.previous_signing_secret)
    return [secret for secret in found if secret]


CONNECTOR = WebhookConnector()
