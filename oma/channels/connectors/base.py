"""The connector interface: what a platform module provides so OMA can take tracking numbers from it.

A platform is one module in this package exposing `CONNECTOR`, an instance of a `Connector` subclass, and one line
in `oma.channels.connectors.REGISTRY`. A connector never touches the database: it turns what the platform says
(an uploaded file, a webhook body, an API answer) into `ExternalShipmentRecord`s, and the channel services do the
rest (storing, matching to Genstore orders, handing shipments to the tracking engine). That keeps every platform
module small and testable without Django models.

Three ways in, any subset per connector:
- `parse_upload(data)`    a file the merchant uploads (CSV);
- `parse_webhook(body)`   a signed push from the platform (the signature is checked before, by the receiver);
- `fetch_shipments(...)`  polling the platform's API for orders that still lack tracking.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from oma.channels.models import Channel


class ConnectorError(Exception):
    """A platform could not be read (network, auth, unexpected answer). `transient` says whether to retry later."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class ConnectorAuthError(ConnectorError):
    """The platform refused our credentials: retrying will not help until someone fixes them."""


class RateLimitedError(ConnectorError):
    """The platform asked us to wait longer than we may block; `retry_after` seconds from now."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, transient=True)
        self.retry_after = retry_after


class PayloadError(ValueError):
    """An authentic payload that does not have the documented shape; the message says what is wrong."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True, slots=True)
class LineRef:
    """One item of a shipment as the platform names it: by line item id, by SKU, or both (the id is tried first).

    `quantity` None means "all that is still left to ship of that line".
    """

    line_item_id: str = ""
    sku: str = ""
    quantity: int | None = None

    def as_json(self) -> dict[str, object]:
        data: dict[str, object] = {}
        if self.line_item_id:
            data["lineItemId"] = self.line_item_id
        if self.sku:
            data["sku"] = self.sku
        if self.quantity is not None:
            data["quantity"] = self.quantity
        return data

    @classmethod
    def from_json(cls, data: dict[str, object]) -> LineRef:
        quantity = data.get("quantity")
        return cls(
            line_item_id=str(data.get("lineItemId") or ""),
            sku=str(data.get("sku") or ""),
            quantity=int(quantity) if quantity is not None else None,  # type: ignore[call-overload]
        )


@dataclass(frozen=True, slots=True)
class ExternalShipmentRecord:
    """One shipment a platform reported. No lines means the whole order (everything still left to ship)."""

    external_order_id: str  # the platform's order id: matched to Genstore's sourceIdentifier, then orderId
    tracking_number: str
    carrier: str = ""  # our carrier code (ups, fedex, ...) or blank to detect it from the number
    lines: tuple[LineRef, ...] = ()
    shipped_at: datetime | None = None
    status: str = ""  # what the platform says about it, kept for people ("shipped", "delivered", ...)
    voided: bool = False  # the label was voided: its tracking is withdrawn
    external_id: str = ""  # the platform's own id for this shipment, when it has one (an update replaces by it)
    source_ref: str = ""  # where it came from, for people: "line 12", "delivery msg_2a…", "shipment 123"
    raw: dict[str, object] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class AddressInput:
    """A postal address as a channel gave it (every part optional: marketplaces hide some)."""

    name: str = ""
    company: str = ""
    address1: str = ""
    address2: str = ""
    city: str = ""
    province_code: str = ""
    zip: str = ""
    country_code: str = ""  # ISO 3166-1 alpha-2 ("US"); parsers turn country names into codes
    phone: str = ""

    def as_json(self) -> dict[str, str]:
        """Our own storage form (snake_case, blanks left out); oma.genstore maps it to Genstore's shape."""
        return {name: value for name in self.__slots__ if (value := getattr(self, name))}

    @classmethod
    def from_json(cls, data: dict[str, object] | None) -> AddressInput | None:
        if not data:
            return None
        return cls(**{name: str(data.get(name) or "") for name in cls.__slots__})


@dataclass(frozen=True, slots=True)
class ExternalOrderLineInput:
    """One line of an external order. `price` is the unit price, whatever the file called it."""

    sku: str
    title: str
    quantity: int
    price: Decimal
    variant_title: str = ""
    external_line_id: str = ""  # the channel's own id for the line (Amazon's order-item-id)
    tax: Decimal | None = None


@dataclass(frozen=True, slots=True)
class ExternalOrderInput:
    """One order sold on another channel, as a webhook, a file or a poll gave it (already validated)."""

    external_order_id: str  # becomes Genstore's sourceIdentifier
    created_at: datetime  # the channel's order time (Genstore's processedAt)
    currency: str  # ISO 4217, upper case
    lines: tuple[ExternalOrderLineInput, ...]
    email: str = ""
    phone: str = ""
    name: str = ""  # the buyer's name
    shipping_address: AddressInput | None = None
    billing_address: AddressInput | None = None
    shipping_price: Decimal | None = None
    total_tax: Decimal | None = None
    financial_status: str = ""  # "" means paid (Genstore's default for a created order); or "pending"
    cancelled_at: datetime | None = None
    note: str = ""
    tags: tuple[str, ...] = ()
    source_ref: str = ""  # where it came from, for people: "lines 2-4", "delivery msg_2a…"
    raw: dict[str, object] = field(default_factory=dict, compare=False)

    def content_json(self) -> dict[str, object]:
        """What the order says, in a stable JSON form (no source_ref, no raw): compared to spot later changes."""
        return {
            "externalOrderId": self.external_order_id,
            "createdAt": self.created_at.isoformat(),
            "currency": self.currency,
            "lines": [
                {
                    "sku": line.sku, "title": line.title, "variantTitle": line.variant_title,
                    "quantity": line.quantity, "price": str(line.price), "externalLineId": line.external_line_id,
                    "tax": None if line.tax is None else str(line.tax),
                }
                for line in self.lines
            ],
            "email": self.email,
            "phone": self.phone,
            "name": self.name,
            "shippingAddress": self.shipping_address.as_json() if self.shipping_address else None,
            "billingAddress": self.billing_address.as_json() if self.billing_address else None,
            "shippingPrice": None if self.shipping_price is None else str(self.shipping_price),
            "totalTax": None if self.total_tax is None else str(self.total_tax),
            "financialStatus": self.financial_status,
            "cancelledAt": self.cancelled_at.isoformat() if self.cancelled_at else None,
            "note": self.note,
            "tags": list(self.tags),
        }


@dataclass(frozen=True, slots=True)
class PolledOrder:
    """An order a polling connector should ask about: our order's pk and the number the platform knows it by."""

    order_pk: int
    external_order_id: str


@dataclass
class PollStats:
    requests: int = 0
    rate_limited: int = 0  # 429 answers seen
    waited_seconds: float = 0.0  # time spent waiting for the platform's rate limit to reset


class Connector:
    """Base class: a connector overrides the capabilities it has and sets the flags accordingly."""

    kind: ClassVar[str]  # stored in Channel.kind; also the module name
    label: ClassVar[str]
    accepts_uploads: ClassVar[bool] = False
    accepts_webhooks: ClassVar[bool] = False
    polls: ClassVar[bool] = False
    needs_api_credentials: ClassVar[bool] = False
    default_base_url: ClassVar[str] = ""

    def check_settings(self, channel: Channel) -> list[str]:
        """Problems with the channel's settings (missing credentials...), as sentences; empty when usable."""
        problems = []
        if self.needs_api_credentials and not (channel.api_key and channel.api_secret):
            problems.append(f"a {self.label} channel needs --api-key and --api-secret")
        return problems

    def parse_webhook(self, channel: Channel, body: bytes) -> list[ExternalShipmentRecord]:
        raise NotImplementedError(f"{self.label} channels do not receive webhooks")

    def fetch_shipments(
        self, channel: Channel, orders: Sequence[PolledOrder], *, stats: PollStats, deadline: float | None = None
    ) -> Iterator[tuple[PolledOrder, list[ExternalShipmentRecord]]]:
        """Yield, order by order, every shipment the platform holds for it, voided ones included.

        Yielding per order lets the caller keep each answer as it comes. The iterator may stop early (time
        monotonic `deadline` passed) or raise RateLimitedError / ConnectorError: orders not yielded are simply
        asked again on the next poll.
        """
        raise NotImplementedError(f"{self.label} channels are not polled")


# --- values every connector normalizes the same way ---------------------------------------------------------

# Numbers are normalized with tracking.numbers.normalize (the stored form) before this check.
_TRACKING_NUMBER = re.compile(r"^[A-Z0-9]{6,40}$")


def tracking_number_problem(number: str) -> str | None:
    """Why a (normalized) number cannot be a tracking number, or None when it can.

    Deliberately a syntax check only: carriers keep adding formats, so a number detection does not recognize is
    still tracked (17TRACK covers the long tail); only what no carrier uses is refused.
    """
    if not number:
        return "tracking number is empty"
    if not _TRACKING_NUMBER.match(number):
        return f"tracking number {number!r} is malformed: a tracking number is 6 to 40 letters and digits"
    return None


# A shipment (label) status that means the label was voided: its tracking number is withdrawn (webhook, CSV).
VOIDED_STATUSES = frozenset({"voided", "void", "cancelled", "canceled"})


# Carrier names people and platforms write, to our carrier codes (the courier codes tracking detection uses).
# Anything else becomes a lower-case code with underscores ("Canada Post" -> "canada_post").
_CARRIER_ALIASES: dict[str, str] = {
    "ups": "ups",
    "united parcel service": "ups",
    "ups ground": "ups",
    "ups mail innovations": "ups",
    "fedex": "fedex",
    "fed ex": "fedex",
    "federal express": "fedex",
    "fedex ground": "fedex",
    "fedex express": "fedex",
    "fedex smartpost": "fedex",
    "usps": "usps",
    "us postal service": "usps",
    "u.s. postal service": "usps",
    "united states postal service": "usps",
    "us mail": "usps",
    "stamps com": "usps",
    "stamps.com": "usps",
    "endicia": "usps",
    "dhl": "dhl",
    "dhl express": "dhl",
    "dhl ecommerce": "dhl",
    "dhl e-commerce": "dhl",
    "dhl global mail": "dhl",
    "canada post": "canada_post",
    "royal mail": "royal_mail",
    "ontrac": "ontrac",
    "lasership": "lasership",
    "amazon": "amazon",
    "amazon logistics": "amazon",
    "purolator": "purolator",
}
_CARRIER_CODE_CHARS = re.compile(r"[^a-z0-9]+")


def carrier_code(name: str) -> str:
    """'UPS', 'United Parcel Service', 'ups' -> 'ups'; blank stays blank (the tracking engine detects it)."""
    cleaned = " ".join((name or "").strip().lower().replace("_", " ").split())
    if not cleaned:
        return ""
    if cleaned in _CARRIER_ALIASES:
        return _CARRIER_ALIASES[cleaned]
    return _CARRIER_CODE_CHARS.sub("_", cleaned).strip("_")[:32]
