"""Estimated delivery: the carrier's own estimate when it gives one, else learned from the store's history.

Learning follows Retino's published method (features.md, "Learned EDD"): per store, carrier and destination
country, the percentiles of door-to-door time of delivered shipments, used once a lane has enough deliveries
(OMA_EDD_MIN_SAMPLES, 10 by default). The customer sees the 40th-60th percentile as a date range; a parcel still
travelling past the 90th percentile counts as late. A lane with too few deliveries for its country falls back to
the carrier's figures for every destination, then to nothing (the page never invents a date).

Transit time runs from the first carrier scan (or from when OMA learned of the parcel, if earlier or unscanned)
to delivery.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Literal

from django.conf import settings
from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Coalesce
from django.utils import timezone

from oma.merchant.models import TransitTimeStat
from oma.stores.models import Store
from tracking.models import Shipment, TrackingEvent
from tracking.vocabulary import Status

# Parcels that are no longer travelling towards the customer: no estimate.
NO_ESTIMATE_STATUSES: frozenset[str] = frozenset(
    {Status.DELIVERED, Status.CANCELLED, Status.EXPIRED, Status.RETURN_TO_SENDER}
)
ANY_DESTINATION = ""

Lane = tuple[str, str]  # (carrier, destination country or "")


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of ascending values, interpolating linearly between ranks."""
    if not sorted_values:
        raise ValueError("percentile of nothing")
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    rank = (len(sorted_values) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    if low == high:
        return float(sorted_values[low])
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


def normalize_destination(value: Any) -> str:
    return str(value or "").strip().upper()[:64]


def destination_expression() -> Coalesce:
    """The order's shipping country from its Genstore JSON (absent until protected fields are approved)."""
    address = KeyTextTransform("shippingAddress", "order__raw")
    return Coalesce(
        KeyTextTransform("countryCode", address), KeyTextTransform("country", address)
    )


def first_event_subquery() -> Subquery:
    return Subquery(
        TrackingEvent.objects.filter(shipment=OuterRef("pk")).order_by("occurred_at").values("occurred_at")[:1]
    )


def transit_start(created_at: datetime, first_event_at: datetime | None) -> datetime:
    return min(created_at, first_event_at) if first_event_at else created_at


# --- learning ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LaneFigures:
    sample_size: int
    p10: float
    p40: float
    p50: float
    p60: float
    p90: float
    on_time_rate: float | None
    with_carrier_estimate: int


def lane_figures(durations_days: Iterable[float], on_time: Iterable[bool]) -> LaneFigures:
    values = sorted(durations_days)
    verdicts = list(on_time)
    return LaneFigures(
        sample_size=len(values),
        p10=percentile(values, 10),
        p40=percentile(values, 40),
        p50=percentile(values, 50),
        p60=percentile(values, 60),
        p90=percentile(values, 90),
        on_time_rate=(sum(verdicts) / len(verdicts)) if verdicts else None,
        with_carrier_estimate=len(verdicts),
    )


def transit_stats_recompute(*, store: Store, now: datetime | None = None) -> int:
    """Replace the store's learned lanes with figures from its recent deliveries; returns the number of lanes."""
    now = now or timezone.now()
    since = now - timedelta(days=settings.OMA_EDD_HISTORY_DAYS)
    rows = (
        Shipment.objects.filter(store=store, status=Status.DELIVERED, delivered_at__gte=since)
        .exclude(carrier="")
        .annotate(first_event_at=first_event_subquery(), destination=destination_expression())
        .values_list("carrier", "destination", "created_at", "first_event_at", "delivered_at",
                     "estimated_delivery_date")
        .order_by()
    )
    durations: dict[Lane, list[float]] = defaultdict(list)
    on_time: dict[Lane, list[bool]] = defaultdict(list)
    for carrier, destination, created_at, first_event_at, delivered_at, promised in rows.iterator(chunk_size=2000):
        if delivered_at is None:
            continue  # never: the query filters on delivered_at__gte
        days = (delivered_at - transit_start(created_at, first_event_at)).total_seconds() / 86400
        if days < 0:
            continue  # a clock or data error: ignored rather than allowed to pull the percentiles down
        lanes = [(carrier, ANY_DESTINATION)]
        country = normalize_destination(destination)
        if country:
            lanes.append((carrier, country))
        for lane in lanes:
            durations[lane].append(days)
            if promised is not None:
                on_time[lane].append(delivered_at.date() <= promised)
    with transaction.atomic():
        TransitTimeStat.objects.filter(store=store).delete()
        TransitTimeStat.objects.bulk_create(
            [
                TransitTimeStat(
                    store=store,
                    carrier=carrier,
                    destination=destination,
                    sample_size=figures.sample_size,
                    p10_days=figures.p10,
                    p40_days=figures.p40,
                    p50_days=figures.p50,
                    p60_days=figures.p60,
                    p90_days=figures.p90,
                    on_time_rate=figures.on_time_rate,
                    with_carrier_estimate=figures.with_carrier_estimate,
                    computed_at=now,
                )
                for (carrier, destination), values in durations.items()
                for figures in [lane_figures(values, on_time.get((carrier, destination), []))]
            ]
        )
    return len(durations)


# --- estimating ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryEstimate:
    source: Literal["carrier", "learned"]
    earliest: date
    latest: date
    late_after: datetime  # from then on the parcel is late
    sample_size: int = 0
    lane_destination: str = ""

    @property
    def is_range(self) -> bool:
        return self.earliest != self.latest

    def is_late(self, now: datetime, grace_days: int = 0) -> bool:
        return now > self.late_after + timedelta(days=grace_days)


def learned_lanes(*, store_ids: Iterable[int]) -> dict[tuple[int, str, str], TransitTimeStat]:
    """(store id, carrier, destination) -> learned figures, for lanes with enough deliveries."""
    stats = TransitTimeStat.objects.filter(
        store_id__in=list(store_ids), sample_size__gte=settings.OMA_EDD_MIN_SAMPLES
    )
    return {(stat.store_id, stat.carrier, stat.destination): stat for stat in stats}


def _end_of(day: date) -> datetime:
    return datetime.combine(day, time.max, tzinfo=timezone.get_current_timezone())


def delivery_estimate(
    *,
    shipment: Shipment,
    first_event_at: datetime | None,
    destination: str,
    lanes: dict[tuple[int, str, str], TransitTimeStat],
) -> DeliveryEstimate | None:
    """When the parcel should arrive; None when it has arrived, stopped, or nothing reliable is known."""
    if shipment.status in NO_ESTIMATE_STATUSES:
        return None
    promised: date | None = None
    if shipment.estimated_delivery_at:
        promised = timezone.localtime(shipment.estimated_delivery_at).date()
    elif shipment.estimated_delivery_date:
        promised = shipment.estimated_delivery_date
    if promised is not None:
        return DeliveryEstimate(source="carrier", earliest=promised, latest=promised, late_after=_end_of(promised))
    country = normalize_destination(destination)
    stat = (lanes.get((shipment.store_id, shipment.carrier, country)) if country else None) or lanes.get(
        (shipment.store_id, shipment.carrier, ANY_DESTINATION)
    )
    if stat is None:
        return None
    start = transit_start(shipment.created_at, first_event_at)
    return DeliveryEstimate(
        source="learned",
        earliest=timezone.localtime(start + timedelta(days=stat.p40_days)).date(),
        latest=timezone.localtime(start + timedelta(days=stat.p60_days)).date(),
        late_after=start + timedelta(days=stat.p90_days),
        sample_size=stat.sample_size,
        lane_destination=stat.destination,
    )


def shipments_with_estimate_facts(queryset: Any) -> Any:
    """Annotate what delivery_estimate() needs beyond the row: first scan time and destination."""
    return queryset.annotate(first_event_at=first_event_subquery(), destination=destination_expression())


def estimate_for_annotated(shipment: Shipment, lanes: dict[tuple[int, str, str], TransitTimeStat]) -> (
    DeliveryEstimate | None
):
    return delivery_estimate(
        shipment=shipment,
        first_event_at=getattr(shipment, "first_event_at", None),
        destination=getattr(shipment, "destination", "") or "",
        lanes=lanes,
    )

