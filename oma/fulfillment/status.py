"""The unified order status: one field per order, from Genstore's statuses and the order's parcels.

`unified_status_for(order=..., shipments=..., fulfillments=...)` is the only place that decides it. It is pure:
plain facts in, `(status, reason)` out, no database and no clock, so every row below has a test
(tests/fulfillment/test_status.py) and the services only gather facts and store the answer.

**Parcels.** The order's shipments that OMA tracks (a shipment whose label was voided, status `cancelled`, does
not count), plus every live Genstore fulfillment (status not `cancelled`, `error` or `failure`) whose tracking
number OMA does not track: for those, Genstore's `shipmentStatus` stands in for the carrier status
(GENSTORE_SHIPMENT_STATUS_AS_TRACKING in pushed_status.py; none yet reads as `pending`).

**Nothing left to ship** when Genstore says the order is `fulfilled`, or when every line that needs shipping is
covered: its whole quantity travels in parcels, or Genstore has nothing left to fulfil for it
(`fulfillableQuantity` 0: fulfilled elsewhere, refunded or removed). A parcel that names no line items covers the
whole order. Lines with `requiresShipping` false never need shipping; unknown counts as needing it.

**The table.** Rules are tried top to bottom; the first that holds gives the status.

| # | rule | when | status |
|---|---|---|---|
| 1 | order_cancelled | Genstore's `cancelledAt` is set | `cancelled` |
| 2 | payment_voided | `financialStatus` is `voided` | `cancelled` |
| 3 | refunded | `financialStatus` is `refunded` | `refunded` |
| 4 | returned | every parcel is returning or back to the sender, or Genstore says `restocked` | `returned` |
| 5 | delivery_issue | a parcel is `exception`, `attempt_failed`, `return_to_sender` or `expired` | `delivery_issue` |
| 6 | delivered | every parcel is delivered and nothing is left to ship | `delivered` |
| 7 | partially_delivered | some parcels are delivered | `partially_delivered` |
| 8 | partially_shipped | there are parcels, and items are still to ship | `partially_shipped` |
| 9 | out_for_delivery | a parcel is out for delivery or waiting at a pickup point | `out_for_delivery` |
| 10 | in_transit | a parcel is in transit | `in_transit` |
| 11 | not_scanned_yet | parcels, none scanned yet (`pending`, `info_received`, `unknown`) | `awaiting_tracking` |
| 12 | nothing_to_ship | no parcels, no line needs shipping, and Genstore says `fulfilled` | `delivered` |
| 13 | fulfilled_without_tracking | no parcels, Genstore says `fulfilled` | `awaiting_tracking` |
| 14 | partially_fulfilled_without_tracking | no parcels, Genstore says `partial` | `partially_shipped` |
| 15 | awaiting_payment | no parcels, `financialStatus` is `pending` or `partially_paid` | `awaiting_payment` |
| 16 | unfulfilled | anything else: nothing shipped yet | `unfulfilled` |

Why this order: money and cancellation outrank shipping (1-3); a problem outranks progress because it needs
someone's attention (5 before 6-10); "partially" outranks the furthest parcel's progress because the rest of
the order has not left (8 before 9-11). `authorized` counts as paid: the merchant may ship it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.db import models

from oma.fulfillment.pushed_status import GENSTORE_SHIPMENT_STATUS_AS_TRACKING
from oma.genstore.fulfillment_status import DEAD_FULFILLMENT_STATUSES  # also imported from here (services/push.py)
from tracking.numbers import normalize
from tracking.vocabulary import Status


class UnifiedStatus(models.TextChoices):
    AWAITING_PAYMENT = "awaiting_payment", "Awaiting payment"
    UNFULFILLED = "unfulfilled", "Unfulfilled"
    AWAITING_TRACKING = "awaiting_tracking", "Awaiting tracking"
    PARTIALLY_SHIPPED = "partially_shipped", "Partially shipped"
    IN_TRANSIT = "in_transit", "In transit"
    OUT_FOR_DELIVERY = "out_for_delivery", "Out for delivery"
    DELIVERY_ISSUE = "delivery_issue", "Delivery issue"
    PARTIALLY_DELIVERED = "partially_delivered", "Partially delivered"
    DELIVERED = "delivered", "Delivered"
    RETURNED = "returned", "Returned"
    CANCELLED = "cancelled", "Cancelled"
    REFUNDED = "refunded", "Refunded"


AWAITING_PAYMENT_FINANCIAL_STATUSES: frozenset[str] = frozenset({"pending", "partially_paid"})
ISSUE_STATUSES: frozenset[str] = frozenset(
    {Status.EXCEPTION, Status.ATTEMPT_FAILED, Status.RETURN_TO_SENDER, Status.EXPIRED}
)
NOT_SCANNED_STATUSES: frozenset[str] = frozenset({Status.PENDING, Status.INFO_RECEIVED, Status.UNKNOWN})
AT_DOOR_STATUSES: frozenset[str] = frozenset({Status.OUT_FOR_DELIVERY, Status.AVAILABLE_FOR_PICKUP})


# --- facts in ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LineFacts:
    line_item_id: str
    quantity: int
    fulfillable_quantity: int | None = None
    requires_shipping: bool | None = None

    @property
    def needs_shipping(self) -> bool:
        return self.requires_shipping is not False


@dataclass(frozen=True, slots=True)
class OrderFacts:
    financial_status: str = ""
    fulfillment_status: str = ""
    cancelled: bool = False
    cancel_reason: str = ""
    lines: tuple[LineFacts, ...] = ()


@dataclass(frozen=True, slots=True)
class ShipmentFacts:
    """One shipment OMA tracks. `lines` empty means the shipment carries the whole order."""

    tracking_number: str
    status: str
    substatus: str = ""
    carrier: str = ""
    lines: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class FulfillmentFacts:
    """One fulfillment as Genstore holds it (the order mirror's copy)."""

    tracking_number: str = ""
    status: str = ""
    shipment_status: str = ""
    lines: tuple[tuple[str, int], ...] = ()


# --- the function -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Parcel:
    label: str  # "UPS 1Z999…" or "Genstore fulfillment without tracking"
    status: str
    substatus: str
    lines: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class _Situation:
    order: OrderFacts
    parcels: tuple[_Parcel, ...]
    left_to_ship: tuple[str, ...]  # line item ids still to ship ("" entries never)

    def with_status(self, *statuses: str) -> list[_Parcel]:
        return [parcel for parcel in self.parcels if parcel.status in statuses]

    @property
    def nothing_left_to_ship(self) -> bool:
        return not self.left_to_ship


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    status: str
    applies: Callable[[_Situation], bool]
    reason: Callable[[_Situation], str]


def _parcels(shipments: Sequence[ShipmentFacts], fulfillments: Sequence[FulfillmentFacts]) -> tuple[_Parcel, ...]:
    parcels = [
        _Parcel(
            label=" ".join(part for part in (shipment.carrier.upper(), shipment.tracking_number) if part),
            status=shipment.status,
            substatus=shipment.substatus,
            lines=shipment.lines,
        )
        for shipment in shipments
        if shipment.status != Status.CANCELLED
    ]
    tracked = {normalize(shipment.tracking_number) for shipment in shipments}
    for fulfillment in fulfillments:
        if fulfillment.status in DEAD_FULFILLMENT_STATUSES:
            continue
        number = normalize(fulfillment.tracking_number)
        if number and number in tracked:
            continue  # the shipment OMA tracks speaks for it, with the carrier's fresher status
        status, substatus = GENSTORE_SHIPMENT_STATUS_AS_TRACKING.get(fulfillment.shipment_status, (Status.PENDING, ""))
        parcels.append(
            _Parcel(
                label=f"Genstore fulfillment {fulfillment.tracking_number}" if number else
                "Genstore fulfillment without tracking",
                status=status,
                substatus=substatus,
                lines=fulfillment.lines,
            )
        )
    return tuple(parcels)


def _left_to_ship(order: OrderFacts, parcels: Sequence[_Parcel]) -> tuple[str, ...]:
    if order.fulfillment_status == "fulfilled" or any(not parcel.lines for parcel in parcels):
        return ()
    in_parcels: dict[str, int] = defaultdict(int)
    for parcel in parcels:
        for line_item_id, quantity in parcel.lines:
            in_parcels[line_item_id] += quantity
    return tuple(
        line.line_item_id
        for line in order.lines
        if line.needs_shipping
        and in_parcels[line.line_item_id] < line.quantity
        and line.fulfillable_quantity != 0
    )


def _count(parcels: Sequence[_Parcel], total: int, what: str) -> str:
    if total == 1:
        return f"the parcel is {what}"
    return f"{len(parcels)} of {total} parcels {what}"


def _describe(parcels: Sequence[_Parcel]) -> str:
    shown = ", ".join(
        f"{parcel.label}: {parcel.status}{f' ({parcel.substatus})' if parcel.substatus else ''}"
        for parcel in parcels[:3]
    )
    return shown + (f" and {len(parcels) - 3} more" if len(parcels) > 3 else "")


def _cancelled_reason(s: _Situation) -> str:
    reason = "cancelled in Genstore" + (f" ({s.order.cancel_reason})" if s.order.cancel_reason else "")
    moving = [p for p in s.parcels if p.status not in (Status.DELIVERED, Status.RETURN_TO_SENDER)]
    if moving:
        reason += f"; {len(moving)} parcel(s) already shipped"
    return reason


def _returned(s: _Situation) -> bool:
    if s.order.fulfillment_status == "restocked":
        return True
    return bool(s.parcels) and all(p.status == Status.RETURN_TO_SENDER for p in s.parcels)


def _returned_reason(s: _Situation) -> str:
    if s.order.fulfillment_status == "restocked" and not s.parcels:
        return "items restocked in Genstore"
    completed = [p for p in s.parcels if p.substatus == "returned_completed"]
    if len(completed) == len(s.parcels) and s.parcels:
        return "back with the sender" if len(s.parcels) == 1 else f"all {len(s.parcels)} parcels back with the sender"
    if s.parcels:
        return _count(s.parcels, len(s.parcels), "returning to the sender")
    return "items restocked in Genstore"


def _items_left(s: _Situation) -> str:
    n = len(s.left_to_ship)
    return f"{n} line item{'s' if n != 1 else ''} not shipped yet"


RULES: tuple[Rule, ...] = (
    Rule("order_cancelled", UnifiedStatus.CANCELLED, lambda s: s.order.cancelled, _cancelled_reason),
    Rule(
        "payment_voided", UnifiedStatus.CANCELLED,
        lambda s: s.order.financial_status == "voided", lambda s: "payment voided in Genstore",
    ),
    Rule(
        "refunded", UnifiedStatus.REFUNDED,
        lambda s: s.order.financial_status == "refunded", lambda s: "fully refunded in Genstore",
    ),
    Rule("returned", UnifiedStatus.RETURNED, _returned, _returned_reason),
    Rule(
        "delivery_issue", UnifiedStatus.DELIVERY_ISSUE,
        lambda s: bool(s.with_status(*ISSUE_STATUSES)), lambda s: _describe(s.with_status(*ISSUE_STATUSES)),
    ),
    Rule(
        "delivered", UnifiedStatus.DELIVERED,
        lambda s: bool(s.parcels) and len(s.with_status(Status.DELIVERED)) == len(s.parcels) and s.nothing_left_to_ship,
        lambda s: _count(s.parcels, len(s.parcels), "delivered"),
    ),
    Rule(
        "partially_delivered", UnifiedStatus.PARTIALLY_DELIVERED,
        lambda s: bool(s.with_status(Status.DELIVERED)),
        lambda s: _count(s.with_status(Status.DELIVERED), len(s.parcels), "delivered")
        + ("" if s.nothing_left_to_ship else f"; {_items_left(s)}"),
    ),
    Rule(
        "partially_shipped", UnifiedStatus.PARTIALLY_SHIPPED,
        lambda s: bool(s.parcels) and not s.nothing_left_to_ship,
        lambda s: f"{len(s.parcels)} parcel{'s' if len(s.parcels) != 1 else ''} shipped; {_items_left(s)}",
    ),
    Rule(
        "out_for_delivery", UnifiedStatus.OUT_FOR_DELIVERY,
        lambda s: bool(s.with_status(*AT_DOOR_STATUSES)), lambda s: _describe(s.with_status(*AT_DOOR_STATUSES)),
    ),
    Rule(
        "in_transit", UnifiedStatus.IN_TRANSIT,
        lambda s: bool(s.with_status(Status.IN_TRANSIT)),
        lambda s: _count(s.with_status(Status.IN_TRANSIT), len(s.parcels), "in transit"),
    ),
    Rule(
        "not_scanned_yet", UnifiedStatus.AWAITING_TRACKING,
        lambda s: bool(s.parcels), lambda s: _count(s.parcels, len(s.parcels), "not scanned by the carrier yet"),
    ),
    Rule(
        "nothing_to_ship", UnifiedStatus.DELIVERED,
        lambda s: s.order.fulfillment_status == "fulfilled" and not any(line.needs_shipping for line in s.order.lines),
        lambda s: "nothing to ship; fulfilled in Genstore",
    ),
    Rule(
        "fulfilled_without_tracking", UnifiedStatus.AWAITING_TRACKING,
        lambda s: s.order.fulfillment_status == "fulfilled",
        lambda s: "fulfilled in Genstore; no tracking number yet",
    ),
    Rule(
        "partially_fulfilled_without_tracking", UnifiedStatus.PARTIALLY_SHIPPED,
        lambda s: s.order.fulfillment_status == "partial",
        lambda s: "partially fulfilled in Genstore; no tracking number yet",
    ),
    Rule(
        "awaiting_payment", UnifiedStatus.AWAITING_PAYMENT,
        lambda s: s.order.financial_status in AWAITING_PAYMENT_FINANCIAL_STATUSES,
        lambda s: f"payment {s.order.financial_status.replace('_', ' ')}",
    ),
    Rule("unfulfilled", UnifiedStatus.UNFULFILLED, lambda s: True, lambda s: "nothing shipped yet"),
)


def unified_status_rule(
    *,
    order: OrderFacts,
    shipments: Sequence[ShipmentFacts] = (),
    fulfillments: Sequence[FulfillmentFacts] = (),
) -> tuple[Rule, str]:
    """The rule of the table that decides, and its reason (tests use the rule's name)."""
    parcels = _parcels(shipments, fulfillments)
    situation = _Situation(order=order, parcels=parcels, left_to_ship=_left_to_ship(order, parcels))
    for rule in RULES:
        if rule.applies(situation):
            return rule, rule.reason(situation)[:255]
    raise AssertionError("the last rule always applies")


def unified_status_for(
    *,
    order: OrderFacts,
    shipments: Sequence[ShipmentFacts] = (),
    fulfillments: Sequence[FulfillmentFacts] = (),
) -> tuple[str, str]:
    """(status, reason) for one order: see the table in this module's docstring."""
    rule, reason = unified_status_rule(order=order, shipments=shipments, fulfillments=fulfillments)
    return str(rule.status), reason
