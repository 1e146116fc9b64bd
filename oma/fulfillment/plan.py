"""What to push for a shipment: pure functions of the shipment, the order's lines and Genstore's fulfillments.

Like `unified_status_for` (status.py), nothing here reads the database or calls Genstore: `push_plan_for` judges
what Genstore should hold for a shipment (or why nothing may be sent), `tracking_url_for` which link the customer's
Genstore order page gets (OMA's branded tracking page or the carrier's), `find_ours` picks the Genstore fulfillment
that carries the shipment's number, `furthest_shipment_status` which `shipmentStatus` is furthest along. The push
(services/push.py) gathers the facts, asks these, and carries the answer out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from oma.fulfillment.pushed_status import shipment_status_for
from oma.genstore.carriers import tracking_company_for
from oma.genstore.fulfillment_status import DEAD_FULFILLMENT_STATUSES
from oma.genstore.records import FulfillmentRecord
from oma.genstore.shipment_status import SHIPMENT_STATUS_RANK
from oma.orders.models import LineItem, Order
from oma.stores.models import Store
from tracking.models import Shipment, ShipmentLine
from tracking.numbers import normalize
from tracking.vocabulary import Status

# Orders OMA never fulfils (the contract's create errors say Genstore refuses cancelled ones anyway).
NEVER_PUSHED_FINANCIAL_STATUSES: dict[str, str] = {
    "refunded": "the order is refunded in Genstore",
    "voided": "the order's payment is voided in Genstore",
}


@dataclass(frozen=True, slots=True)
class PushLine:
    line_item_id: str
    quantity: int

    def as_json(self) -> dict[str, str | int]:
        return {"id": self.line_item_id, "quantity": self.quantity}


@dataclass(frozen=True, slots=True)
class PushPlan:
    """What Genstore should hold for a shipment; `skip_reason` or `fail_reason` when it must not be sent."""

    tracking_number: str
    tracking_company: str
    tracking_url: str
    shipment_status: str | None
    notify_customer: bool
    lines: tuple[PushLine, ...] = ()
    # Nothing at all may be sent for this shipment (cancelled, refunded or voided order, voided label).
    skip_reason: str = ""
    # No fulfillment may be created (these judge the items, so they no longer matter once it exists).
    create_skip_reason: str = ""
    create_fail_reason: str = ""
    # Why `tracking_url` is not what the store asked for (the branded link without OMA_PUBLIC_URL), for the push log.
    tracking_url_note: str = ""


BRANDED_LINK_WITHOUT_PUBLIC_URL = (
    "the store's branded tracking link is on but OMA_PUBLIC_URL is not set: the carrier's link is pushed instead"
)


def tracking_url_for(*, store: Store, shipment: Shipment, tracking_page_url: str) -> tuple[str, str]:
    """The `trackingUrl` to push and, when it falls back, why: the order's branded tracking page (absolute, signed)
    when the store has it on and OMA knows its public address, else the carrier's own link (which the tracking page
    shows either way)."""
    carrier_url = shipment.tracking_url or ""
    if not store.branded_tracking_link:
        return carrier_url, ""
    if not tracking_page_url:
        return carrier_url, BRANDED_LINK_WITHOUT_PUBLIC_URL
    return tracking_page_url, ""


def push_plan_for(
    *, store: Store, order: Order, shipment: Shipment, order_lines: Sequence[LineItem],
    shipment_lines: Sequence[ShipmentLine], tracking_page_url: str,
) -> PushPlan:
    """What to push for a shipment, judged from the order mirror alone (pure apart from reading its arguments).
    `tracking_page_url` is the order's absolute tracking page link, "" when OMA_PUBLIC_URL is not set."""
    number = shipment.tracking_number
    tracking_url, tracking_url_note = tracking_url_for(
        store=store, shipment=shipment, tracking_page_url=tracking_page_url
    )
    plan = PushPlan(
        tracking_number=number,
        tracking_company=tracking_company_for(shipment.carrier, number),
        tracking_url=tracking_url,
        shipment_status=shipment_status_for(shipment.status, shipment.substatus),
        notify_customer=store.notify_customer,
        tracking_url_note=tracking_url_note,
    )

    def refused(*, skip: str = "", fail: str = "") -> PushPlan:
        return replace(plan, create_skip_reason=skip, create_fail_reason=fail)

    if order.cancelled_at is not None:
        reason = "the order is cancelled in Genstore" + (f" ({order.cancel_reason})" if order.cancel_reason else "")
        return replace(plan, skip_reason=reason)
    if order.financial_status in NEVER_PUSHED_FINANCIAL_STATUSES:
        reason = NEVER_PUSHED_FINANCIAL_STATUSES[order.financial_status]
        return replace(plan, skip_reason=reason)
    if shipment.status == Status.CANCELLED:
        return replace(plan, skip_reason="the shipment's label was voided (status cancelled)")

    by_pk = {line.pk: line for line in order_lines}
    if shipment_lines:
        wanted = [(by_pk.get(sl.line_item_id), sl.quantity) for sl in shipment_lines]
        if any(line is None for line, _ in wanted):
            return refused(fail="a line item of this shipment is no longer on the order")
        shipping = [(line, qty) for line, qty in wanted if line is not None and line.requires_shipping is not False]
        if not shipping:
            return refused(skip="no item in this shipment needs shipping")
    else:
        # A shipment that names no items carries whatever is left to ship of the order.
        shipping = [
            (line, line.fulfillable_quantity if line.fulfillable_quantity is not None else line.quantity)
            for line in order_lines
            if line.requires_shipping is not False
        ]
        if not any(line.requires_shipping is not False for line in order_lines):
            return refused(skip="no item of the order needs shipping")
        shipping = [(line, qty) for line, qty in shipping if qty > 0]
        if not shipping:
            return refused(skip="nothing left to fulfil: Genstore has every item of the order fulfilled already")

    too_many = [
        f"{line.sku or line.title or line.line_item_id}: {qty} to ship, Genstore can fulfil {line.fulfillable_quantity}"
        for line, qty in shipping
        if line.fulfillable_quantity is not None and qty > line.fulfillable_quantity
    ]
    if too_many:
        return refused(fail="quantity above fulfillableQuantity (" + "; ".join(too_many) + ")")
    lines = tuple(PushLine(line.line_item_id, qty) for line, qty in sorted(shipping, key=lambda pair: pair[0].pk))
    return replace(plan, lines=lines)


def find_ours(records: Sequence[FulfillmentRecord], tracking_number: str) -> FulfillmentRecord | None:
    """The fulfillment carrying our tracking number; a live one wins over a cancelled one."""
    wanted = normalize(tracking_number)
    matching = [r for r in records if wanted and normalize(r.tracking_number or "") == wanted]
    live = [r for r in matching if (r.status or "") not in DEAD_FULFILLMENT_STATUSES]
    return live[0] if live else matching[0] if matching else None


def furthest_shipment_status(*statuses: str) -> str:
    known = [s for s in statuses if s]
    return max(known, key=lambda s: SHIPMENT_STATUS_RANK.get(s, 0), default="")
