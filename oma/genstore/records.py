"""Typed records the Genstore client returns, and the drafts it sends. Plain dataclasses: no Django, no ORM.

Every field of a returned record except the ids may be None: Genstore filters protected fields and its samples are
quirky, so the parser leaves a field empty (and notes it in `problems`) rather than dropping the record.
A draft (`OrderDraft`) is what a caller asks to create; the client turns it into Genstore's body and checks it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class LineItemRecord:
    id: str
    product_id: str | None = None
    variant_id: str | None = None
    sku: str | None = None
    title: str | None = None
    variant_title: str | None = None
    quantity: int | None = None
    fulfillable_quantity: int | None = None
    fulfillment_status: str | None = None
    requires_shipping: bool | None = None
    price: Decimal | None = None
    grams: int | None = None


@dataclass(frozen=True, slots=True)
class FulfillmentLineRecord:
    id: str
    quantity: int | None = None


@dataclass(frozen=True, slots=True)
class FulfillmentRecord:
    fulfill_id: str
    order_id: str | None = None
    status: str | None = None
    shipment_status: str | None = None
    tracking_number: str | None = None
    tracking_company: str | None = None
    tracking_url: str | None = None
    line_items: tuple[FulfillmentLineRecord, ...] = ()
    created_at: datetime | None = None
    updated_at: datetime | None = None
    raw: dict[str, object] = field(default_factory=dict, compare=False)
    # "field: reason" for every value that could not be parsed and was left empty.
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RefundRecord:
    refund_id: str | None
    order_id: str | None
    amount: Decimal | None = None
    currency: str | None = None
    created_at: datetime | None = None
    raw: dict[str, object] = field(default_factory=dict, compare=False)
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OrderRecord:
    order_id: str
    id: str | None = None
    name: str | None = None
    source_name: str | None = None
    source_identifier: str | None = None
    financial_status: str | None = None
    fulfillment_status: str | None = None
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    email: str | None = None
    total_price: Decimal | None = None
    subtotal_price: Decimal | None = None
    currency: str | None = None
    line_items: tuple[LineItemRecord, ...] = ()
    # True when the payload carried a lineItems list that was read in full: a line missing from it is gone. False
    # (absent, null, or an entry unreadable) means the order's lines are not known from this payload.
    has_line_items: bool = False
    fulfillments: tuple[FulfillmentRecord, ...] = ()
    # True when the payload carried a fulfillments list (so an empty tuple means "none", not "unknown").
    has_fulfillments: bool = False
    raw: dict[str, object] = field(default_factory=dict, compare=False)
    # "field: reason" for every value that could not be parsed and was left empty.
    problems: tuple[str, ...] = ()
    # Free-form labels; Genstore sends them as "a, b" or ["a", "b"].
    tags: tuple[str, ...] = ()

    @property
    def cancelled(self) -> bool:
        return self.cancelled_at is not None


@dataclass(frozen=True, slots=True)
class ShopRecord:
    id: str | None
    name: str | None
    domain: str | None
    currency: str | None = None
    raw: dict[str, object] = field(default_factory=dict, compare=False)
    timezone: str | None = None


@dataclass(frozen=True, slots=True)
class WebhookSubscriptionRecord:
    id: str
    address: str
    topic: str
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class RateLimitState:
    used: int
    capacity: int


@dataclass(frozen=True, slots=True)
class OrderDraftLine:
    """One line of an order to create. `price` is the unit price."""

    sku: str
    title: str
    quantity: int
    price: Decimal
    variant_title: str | None = None
    requires_shipping: bool | None = None  # None: Genstore's default (true)


@dataclass(frozen=True, slots=True)
class OrderDraft:
    """An order sold elsewhere, to be created in Genstore (POST /orders) once.

    (`source_name`, `source_identifier`) is the external order's identity: the channel and its own order id.
    Addresses are OMA's neutral form, keys `name`, `company`, `address1`, `address2`, `city`, `province_code`,
    `zip`, `country_code`, `phone` (blanks may be left out); the client maps them to Genstore's address shape.
    """

    source_name: str
    source_identifier: str
    currency: str
    line_items: tuple[OrderDraftLine, ...]
    email: str | None = None
    phone: str | None = None
    processed_at: datetime | None = None  # the channel's order time
    financial_status: str | None = None  # None: Genstore's default (paid); or "pending"
    shipping_address: Mapping[str, str] | None = None
    billing_address: Mapping[str, str] | None = None
    shipping_lines: tuple[tuple[str, Decimal], ...] = ()  # (title, price)
    total_tax: Decimal | None = None
    note: str | None = None
    tags: tuple[str, ...] = ()
