"""Platforms that push their shipments to OMA, signed the Standard Webhooks way (standardwebhooks.com, v1).

Headers: `webhook-id` (the message id, also the replay key), `webhook-timestamp` (Unix seconds of the attempt)
and `webhook-signature`: space-separated `v1,<base64 HMAC-SHA256>` signatures of "{id}.{timestamp}.{body}",
keyed with the base64-decoded part of the channel secret after `whsec_`. Several signatures let a sender sign
with an old and a new secret during a rotation; one match is enough. Timestamps more than 5 minutes away from
our clock, either way, are refused.

Body: {"externalOrderId": "...", "shipments": [{"trackingNumber": "...", "carrier"?: "...",
       "lineItems"?: [{"sku" | "lineItemId": "...", "quantity": n}], "shippedAt"?: ISO 8601, "status"?: "..."}]}
A shipment whose status is voided/cancelled withdraws that tracking number.
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
from typing import TYPE_CHECKING, Any

from oma.channels.connectors.base import (
    Connector,
    ExternalShipmentRecord,
    LineRef,
    PayloadError,
    carrier_code,
    tracking_number_problem,
)
from tracking.numbers import normalize

if TYPE_CHECKING:
    from oma.channels.models import Channel

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # the spec allows 24 to 64
TOLERANCE_SECONDS = 5 * 60
MAX_SHIPMENTS = 500
VOIDED_STATUSES = frozenset({"voided", "void", "cancelled", "canceled"})
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
# A quantity is counted in items; anything larger is a mistake (and would not fit the database's integer).
MAX_QUANTITY = 1_000_000
_QUANTITY = re.compile(r"[0-9]{1,18}")


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


def parse_payload(payload: Any, *, source_ref: str = "") -> list[ExternalShipmentRecord]:
    """The records of one delivery, or PayloadError listing everything wrong with it (all or nothing)."""
    if isinstance(payload, dict) and "externalOrderId" not in payload and isinstance(payload.get("data"), dict):
        payload = payload["data"]  # a Standard Webhooks envelope: {"type", "timestamp", "data": {...}}
    if not isinstance(payload, dict):
        raise PayloadError(["body must be a JSON object"])
    problems: list[str] = []
    order_id = _text(payload.get("externalOrderId"))
    if not order_id:
        problems.append("externalOrderId is missing")
    elif len(order_id) > 128:
        problems.append("externalOrderId is longer than 128 characters")
    shipments = payload.get("shipments")
    if not isinstance(shipments, list) or not shipments:
        problems.append("shipments must be a non-empty list")
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
