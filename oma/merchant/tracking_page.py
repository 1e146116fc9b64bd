"""What the customer tracking page shows, read from OMA's own tables only (never Genstore, never a carrier).

Everything a customer sees is assembled here into plain dataclasses, in a fixed number of queries, so the
template holds no logic and nothing personal beyond the order's number, items and parcels leaks onto the page.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from urllib.parse import quote

from django.db.models import Prefetch, Q
from django.urls import reverse
from django.utils import timezone

from oma.fulfillment.pushed_status import GENSTORE_SHIPMENT_STATUS_AS_TRACKING
from oma.fulfillment.status import UnifiedStatus
from oma.merchant.estimates import (
    DeliveryEstimate,
    estimate_for_annotated,
    learned_lanes,
    shipments_with_estimate_facts,
)
from oma.merchant.models import StoreBranding
from oma.orders.models import GenstoreFulfillment, LineItem, Order
from oma.stores.models import Store
from tracking.models import Shipment, ShipmentLine, TrackingEvent
from tracking.vocabulary import Status, Substatus

DEFAULT_ACCENT = "#2f5d8a"
TIMELINE_LIMIT = 200

# Words for customers: what the status means for them, not the carrier's jargon.
CUSTOMER_STATUS: dict[str, tuple[str, str]] = {
    Status.PENDING: ("Preparing", "The shipping label exists; the carrier has no news yet."),
    Status.INFO_RECEIVED: ("Label created", "The carrier knows about the parcel but has not picked it up yet."),
    Status.IN_TRANSIT: ("On its way", "The parcel is moving through the carrier's network."),
    Status.OUT_FOR_DELIVERY: ("Out for delivery", "The parcel should arrive today."),
    Status.AVAILABLE_FOR_PICKUP: ("Ready for pickup", "The parcel is waiting at a pickup point."),
    Status.ATTEMPT_FAILED: ("Delivery attempted", "The carrier tried to deliver and will try again."),
    Status.DELIVERED: ("Delivered", "The carrier delivered the parcel."),
    Status.EXCEPTION: ("Delayed", "The carrier reported a problem; the parcel may arrive late."),
    Status.RETURN_TO_SENDER: ("Returning to sender", "The parcel is on its way back to the store."),
    Status.CANCELLED: ("Cancelled", "This shipping label was cancelled."),
    Status.EXPIRED: ("No recent news", "The carrier has not reported anything for a long time."),
    Status.UNKNOWN: ("Status unavailable", "The carrier's latest status could not be read."),
}
PROBLEM_STATUSES: frozenset[str] = frozenset(
    {Status.EXCEPTION, Status.ATTEMPT_FAILED, Status.RETURN_TO_SENDER, Status.EXPIRED}
)
# The progress bar: ordered -> shipped -> on its way -> out for delivery -> delivered.
STEPS: tuple[str, ...] = ("Ordered", "Shipped", "On its way", "Out for delivery", "Delivered")
STEP_OF_STATUS: dict[str, int] = {
    Status.PENDING: 1,
    Status.UNKNOWN: 1,
    Status.INFO_RECEIVED: 1,
    Status.IN_TRANSIT: 2,
    Status.EXCEPTION: 2,
    Status.RETURN_TO_SENDER: 2,
    Status.EXPIRED: 2,
    Status.OUT_FOR_DELIVERY: 3,
    Status.AVAILABLE_FOR_PICKUP: 3,
    Status.ATTEMPT_FAILED: 3,
    Status.DELIVERED: 4,
    Status.CANCELLED: 1,
}
CARRIER_NAMES: dict[str, str] = {
    "ups": "UPS", "fedex": "FedEx", "usps": "USPS", "dhl": "DHL", "17track": "17TRACK", "dpd": "DPD",
    "gls": "GLS", "royalmail": "Royal Mail", "canadapost": "Canada Post", "auspost": "Australia Post",
}
# Used when the shipment has no tracking URL of its own.
CARRIER_LINKS: dict[str, str] = {
    "ups": "https://www.ups.com/track?tracknum={number}",
    "fedex": "https://www.fedex.com/fedextrack/?trknbr={number}",
    "usps": "https://tools.usps.com/go/TrackConfirmAction?tLabels={number}",
    "dhl": "https://www.dhl.com/global-en/home/tracking/tracking-express.html?submit=1&tracking-id={number}",
}
FALLBACK_LINK = "https://t.17track.net/en#nums={number}"


@dataclass(frozen=True)
class TimelineEntry:
    occurred_at: datetime
    title: str
    detail: str
    location: str


@dataclass(frozen=True)
class ParcelItem:
    title: str
    quantity: int


@dataclass
class ParcelView:
    tracking_number: str
    carrier_name: str
    carrier_link: str
    status: str
    status_label: str
    status_help: str
    step: int
    is_problem: bool
    delivered_at: datetime | None
    signed_by: str
    estimate: DeliveryEstimate | None
    estimate_text: str
    running_late: bool
    last_update_at: datetime | None
    timeline: list[TimelineEntry] = field(default_factory=list)
    items: list[ParcelItem] = field(default_factory=list)


@dataclass(frozen=True)
class Branding:
    name: str
    accent: str
    text_on_accent: str
    logo_url: str
    support_email: str
    support_url: str


@dataclass
class TrackingPage:
    branding: Branding
    order_label: str
    placed_at: datetime | None
    cancelled: bool
    overall_label: str
    parcels: list[ParcelView]
    order_items: list[ParcelItem]
    not_shipped: list[ParcelItem]
    overall_tone: str = ""  # "problem", "done" or "": how the status badge is drawn
    steps: tuple[str, ...] = STEPS


# --- lookups -------------------------------------------------------------------------------------------------


def normalize_order_number(value: str) -> str:
    return value.strip().lstrip("#").strip()[:64]


def tracking_order_lookup(*, order_number: str, email: str, store: Store | None = None) -> Order | None:
    """The order with this number (its orderId or its name, with or without '#') whose email matches, else None.

    An order without an email (Genstore withholds protected fields until approved) is never found this way: it
    can only be reached by its signed link.
    """
    number = normalize_order_number(order_number)
    email = email.strip()
    if not number or not email or "@" not in email:
        return None
    queryset = Order.objects.filter(
        Q(order_id=number) | Q(name=number) | Q(name=f"#{number}"), email__iexact=email
    ).exclude(email="")
    if store is not None:
        queryset = queryset.filter(store=store)
    return queryset.order_by("-genstore_created_at", "-pk").first()


def order_for_page(*, store_id: int, order_pk: int) -> Order | None:
    return Order.objects.filter(pk=order_pk, store_id=store_id).select_related("store").first()


# --- branding ------------------------------------------------------------------------------------------------


def _relative_luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def readable_text_on(hex_colour: str) -> str:
    """Black or white, whichever contrasts more with the background colour (WCAG contrast ratio)."""
    luminance = _relative_luminance(hex_colour)
    on_white = (1.05) / (luminance + 0.05)
    on_black = (luminance + 0.05) / 0.05
    return "#ffffff" if on_white >= on_black else "#111111"


def branding_for(store: Store | None) -> Branding:
    branding = StoreBranding.objects.filter(store=store).first() if store is not None else None
    accent = branding.accent_colour if branding and len(branding.accent_colour) == 7 else DEFAULT_ACCENT
    logo_url = ""
    if branding and branding.logo_sha256:
        logo_url = reverse("track:logo", args=[branding.store_id, branding.logo_sha256[:16]])
    return Branding(
        name=(branding.display_name if branding and branding.display_name else (str(store) if store else "")),
        accent=accent,
        text_on_accent=readable_text_on(accent),
        logo_url=logo_url,
        support_email=branding.support_email if branding else "",
        support_url=branding.support_url if branding else "",
    )


# --- the page ------------------------------------------------------------------------------------------------


def safe_link(url: str) -> str:
    """Only http(s) links reach a customer's page (never javascript: or data: from a payload)."""
    url = (url or "").strip()
    return url if url.lower().startswith(("https://", "http://")) else ""


def carrier_link(carrier: str, number: str, own_url: str = "") -> str:
    return safe_link(own_url) or CARRIER_LINKS.get(carrier, FALLBACK_LINK).format(number=quote(number, safe=""))


def carrier_name(carrier: str, company: str = "") -> str:
    return CARRIER_NAMES.get(carrier.lower(), "") or company or carrier.upper() or "Carrier"


def _status_words(status: str, substatus: str) -> tuple[str, str]:
    label, help_text = CUSTOMER_STATUS.get(status, CUSTOMER_STATUS[Status.UNKNOWN])
    if status in (Status.EXCEPTION, Status.ATTEMPT_FAILED) and substatus:
        with contextlib.suppress(ValueError):
            help_text = f"{Substatus(substatus).label}. {help_text}"
    return label, help_text


def _items(lines: Iterable[tuple[LineItem, int]]) -> list[ParcelItem]:
    return [ParcelItem(title=line.title or line.sku or "Item", quantity=quantity) for line, quantity in lines]


def tracking_page_for(order: Order, *, now: datetime | None = None) -> TrackingPage:
    now = now or timezone.now()
    shipments = list(
        shipments_with_estimate_facts(Shipment.objects.filter(order=order))
        .exclude(status=Status.CANCELLED)
        .order_by("created_at", "pk")
        .prefetch_related(
            Prefetch(
                "events",
                queryset=TrackingEvent.objects.order_by("-occurred_at", "-pk"),
                to_attr="page_events",
            ),
            Prefetch("lines", queryset=ShipmentLine.objects.select_related("line_item"), to_attr="page_lines"),
        )
    )
    lanes = learned_lanes(store_ids=[order.store_id]) if shipments else {}
    line_items = list(LineItem.objects.filter(order=order).order_by("pk"))
    tracked_numbers = {shipment.tracking_number.upper() for shipment in shipments}
    fulfillments = [
        fulfillment
        for fulfillment in GenstoreFulfillment.objects.filter(order=order).exclude(tracking_number="")
        .order_by("genstore_created_at", "pk")
        if fulfillment.status not in ("cancelled", "error", "failure")
        and fulfillment.tracking_number.replace(" ", "").replace("-", "").upper() not in tracked_numbers
    ]
    parcels = [_parcel_from_shipment(shipment, lanes, now, line_items) for shipment in shipments]
    parcels += [_parcel_from_fulfillment(fulfillment, line_items) for fulfillment in fulfillments]
    shippable = [(line, line.quantity) for line in line_items if line.requires_shipping is not False]
    order_items: list[ParcelItem] = []
    if len(parcels) == 1 and not parcels[0].items:
        parcels[0].items = _items(shippable)  # the one parcel carries the order
    elif any(not parcel.items for parcel in parcels):
        order_items = _items(shippable)  # which parcel carries what is unknown: list the order once
    return TrackingPage(
        branding=branding_for(order.store),
        order_label=order.name or f"#{order.order_id}",
        placed_at=order.genstore_created_at,
        cancelled=order.is_cancelled,
        overall_label=_overall_label(order, parcels),
        overall_tone=_overall_tone(order, parcels),
        parcels=parcels,
        order_items=order_items,
        not_shipped=[] if order.is_cancelled else _not_shipped(order, line_items, shipments),
    )


def _page_events(shipment: Shipment) -> list[TrackingEvent]:
    """The shipment's events, newest first, as tracking_page_for prefetched them (to_attr="page_events")."""
    events: list[TrackingEvent] = vars(shipment)["page_events"]
    return events


def _page_lines(shipment: Shipment) -> list[ShipmentLine]:
    """The shipment's lines, as tracking_page_for prefetched them (to_attr="page_lines")."""
    lines: list[ShipmentLine] = vars(shipment)["page_lines"]
    return lines


def _parcel_from_shipment(
    shipment: Shipment, lanes: dict, now: datetime, line_items: list[LineItem]
) -> ParcelView:
    label, help_text = _status_words(shipment.status, shipment.substatus)
    estimate = estimate_for_annotated(shipment, lanes)
    events = _page_events(shipment)[:TIMELINE_LIMIT]
    timeline = [
        TimelineEntry(
            occurred_at=event.occurred_at,
            title=CUSTOMER_STATUS.get(event.status, CUSTOMER_STATUS[Status.UNKNOWN])[0],
            detail=event.raw_text,
            location=event.location,
        )
        for event in events
    ]
    lines = [(line.line_item, line.quantity) for line in _page_lines(shipment)]
    return ParcelView(
        tracking_number=shipment.tracking_number,
        carrier_name=carrier_name(shipment.carrier),
        carrier_link=carrier_link(shipment.carrier, shipment.tracking_number, shipment.tracking_url),
        status=shipment.status,
        status_label=label,
        status_help=help_text,
        step=STEP_OF_STATUS.get(shipment.status, 1),
        is_problem=shipment.status in PROBLEM_STATUSES,
        delivered_at=shipment.delivered_at if shipment.status == Status.DELIVERED else None,
        signed_by=shipment.signed_by,
        estimate=estimate,
        estimate_text=delivery_window_text(estimate) if estimate else "",
        running_late=bool(estimate and estimate.is_late(now)),
        last_update_at=shipment.last_event_at,
        timeline=timeline,
        items=_items(lines),
    )


def _parcel_from_fulfillment(fulfillment: GenstoreFulfillment, line_items: list[LineItem]) -> ParcelView:
    """A parcel Genstore knows of that OMA does not track itself: its shipmentStatus stands in for the carrier."""
    status, substatus = GENSTORE_SHIPMENT_STATUS_AS_TRACKING.get(fulfillment.shipment_status, (Status.PENDING, ""))
    label, help_text = _status_words(status, substatus)
    by_id = {line.line_item_id: line for line in line_items}
    lines = []
    for entry in fulfillment.line_items or []:
        line = by_id.get(str(entry.get("id"))) if isinstance(entry, dict) else None
        if line is not None:
            try:
                lines.append((line, int(entry.get("quantity") or line.quantity)))
            except (TypeError, ValueError):
                lines.append((line, line.quantity))
    return ParcelView(
        tracking_number=fulfillment.tracking_number,
        carrier_name=carrier_name("", fulfillment.tracking_company),
        carrier_link=carrier_link("", fulfillment.tracking_number, fulfillment.tracking_url),
        status=status,
        status_label=label,
        status_help=help_text,
        step=STEP_OF_STATUS.get(status, 1),
        is_problem=status in PROBLEM_STATUSES,
        delivered_at=None,
        signed_by="",
        estimate=None,
        estimate_text="",
        running_late=False,
        last_update_at=fulfillment.genstore_updated_at,
        items=_items(lines),
    )


def _not_shipped(order: Order, line_items: list[LineItem], shipments: list[Shipment]) -> list[ParcelItem]:
    if order.fulfillment_status == "fulfilled":
        return []
    if any(not _page_lines(shipment) for shipment in shipments):
        return []  # a parcel that names no items is taken to carry the whole order
    shipped: dict[int, int] = {}
    for shipment in shipments:
        for shipment_line in _page_lines(shipment):
            shipped[shipment_line.line_item_id] = shipped.get(shipment_line.line_item_id, 0) + shipment_line.quantity
    waiting = []
    for line in line_items:
        if line.requires_shipping is False:
            continue
        remaining = line.quantity - shipped.get(line.pk, 0)
        if line.fulfillable_quantity is not None:
            remaining = min(remaining, line.fulfillable_quantity)
        if remaining > 0:
            waiting.append((line, remaining))
    return _items(waiting)


def _overall_label(order: Order, parcels: list[ParcelView]) -> str:
    if order.is_cancelled:
        return "Cancelled"
    if order.unified_status:
        with contextlib.suppress(ValueError):
            return str(UnifiedStatus(order.unified_status).label)
    if not parcels:
        return "Being prepared"
    if all(parcel.status == Status.DELIVERED for parcel in parcels):
        return "Delivered"
    return "On its way"


def _overall_tone(order: Order, parcels: list[ParcelView]) -> str:
    if order.is_cancelled or order.unified_status in ("delivery_issue", "returned", "cancelled", "refunded"):
        return "problem"
    if any(parcel.is_problem for parcel in parcels):
        return "problem"
    if order.unified_status == "delivered" or (parcels and all(p.status == Status.DELIVERED for p in parcels)):
        return "done"
    return ""


def delivery_window_text(estimate: DeliveryEstimate) -> str:
    def fmt(day: date) -> str:
        return day.strftime("%a %-d %b")

    if not estimate.is_range:
        return fmt(estimate.earliest)
    return f"{fmt(estimate.earliest)} – {fmt(estimate.latest)}"
