"""Reads shared by the dashboard and the alert digest: parcels that need attention, delivery-time figures,
webhook and sweep health. Every function takes the store ids to look at (the caller decides tenancy)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Max, Q, QuerySet, Sum
from django.db.models.functions import Coalesce

from oma.merchant.estimates import (
    NO_ESTIMATE_STATUSES,
    DeliveryEstimate,
    estimate_for_annotated,
    first_event_subquery,
    lane_figures,
    learned_lanes,
    shipments_with_estimate_facts,
    transit_start,
)
from oma.merchant.models import AlertPolicy
from oma.orders.models import Order, SyncRun
from tracking.models import Shipment
from tracking.vocabulary import TERMINAL_STATUSES, Status
from webhooks.models import WebhookDelivery

EXCEPTION_STATUSES: tuple[str, ...] = (Status.EXCEPTION, Status.ATTEMPT_FAILED, Status.RETURN_TO_SENDER)
NOT_PICKED_UP_STATUSES: tuple[str, ...] = (Status.PENDING, Status.INFO_RECEIVED, Status.UNKNOWN)
NOT_TRAVELLING: tuple[str, ...] = (*TERMINAL_STATUSES, Status.RETURN_TO_SENDER, *NOT_PICKED_UP_STATUSES)
LATE_SCAN_LIMIT = 20_000  # in-flight parcels examined for lateness per call (bounded work per page)


@dataclass(frozen=True)
class Thresholds:
    not_picked_up_after_days: int = 3
    stuck_after_days: int = 5
    late_after_days: int = 1


def thresholds_by_store(store_ids: Sequence[int]) -> dict[int, Thresholds]:
    found = {
        policy.store_id: Thresholds(policy.not_picked_up_after_days, policy.stuck_after_days, policy.late_after_days)
        for policy in AlertPolicy.objects.filter(store_id__in=list(store_ids))
    }
    return {store_id: found.get(store_id, Thresholds()) for store_id in store_ids}


def _per_store(store_ids: Sequence[int], build: Callable[[int], Q]) -> Q:
    condition = Q(pk__in=[])
    for store_id in store_ids:
        condition |= Q(store_id=store_id) & build(store_id)
    return condition


def exception_shipments(*, store_ids: Sequence[int], since: datetime | None = None) -> QuerySet[Shipment]:
    queryset = Shipment.objects.filter(store_id__in=list(store_ids), status__in=EXCEPTION_STATUSES)
    if since is not None:
        queryset = queryset.filter(status_changed_at__gte=since)
    return queryset.select_related("order").order_by("-status_changed_at", "-pk")


def not_picked_up_shipments(
    *, store_ids: Sequence[int], now: datetime, thresholds: dict[int, Thresholds]
) -> QuerySet[Shipment]:
    """A label exists, the carrier never scanned it, for longer than the store's threshold."""
    condition = _per_store(
        store_ids,
        lambda store_id: Q(created_at__lt=now - timedelta(days=thresholds[store_id].not_picked_up_after_days)),
    )
    return (
        Shipment.objects.filter(status__in=NOT_PICKED_UP_STATUSES).filter(condition)
        .select_related("order").order_by("created_at", "pk")
    )


def stuck_shipments(*, store_ids: Sequence[int], now: datetime, thresholds: dict[int, Thresholds]) -> QuerySet:
    """Travelling parcels with no new carrier scan for longer than the store's threshold."""
    condition = _per_store(
        store_ids, lambda store_id: Q(quiet_since__lt=now - timedelta(days=thresholds[store_id].stuck_after_days))
    )
    return (
        Shipment.objects.exclude(status__in=NOT_TRAVELLING)
        .alias(quiet_since=Coalesce("last_event_at", "created_at"))
        .filter(condition)
        .select_related("order").order_by("last_event_at", "pk")
    )


def late_shipments(
    *, store_ids: Sequence[int], now: datetime, thresholds: dict[int, Thresholds]
) -> Iterator[tuple[Shipment, DeliveryEstimate]]:
    """Parcels still travelling past their estimated delivery (carrier's, else learned) plus the store's grace."""
    lanes = learned_lanes(store_ids=store_ids)
    # Only parcels that can have an estimate at all: a carrier date already past, or a carrier with learned
    # figures in that store. The exact test (first scan, destination, grace) is delivery_estimate's.
    candidates = Q(estimated_delivery_date__lt=now.date()) | Q(estimated_delivery_at__lt=now)
    for store_id, carrier in {(store_id, carrier) for store_id, carrier, _destination in lanes}:
        candidates |= Q(store_id=store_id, carrier=carrier, estimated_delivery_date__isnull=True,
                        estimated_delivery_at__isnull=True)
    queryset = shipments_with_estimate_facts(
        Shipment.objects.filter(store_id__in=list(store_ids)).exclude(status__in=NO_ESTIMATE_STATUSES)
        .filter(candidates)
    ).select_related("order").order_by("created_at", "pk")[:LATE_SCAN_LIMIT]
    for shipment in queryset.iterator(chunk_size=2000):
        estimate = estimate_for_annotated(shipment, lanes)
        if estimate is not None and estimate.is_late(now, thresholds[shipment.store_id].late_after_days):
            yield shipment, estimate


# --- figures ---------------------------------------------------------------------------------------------------


def orders_per_unified_status(*, store_ids: Sequence[int]) -> list[tuple[str, int]]:
    rows = (
        Order.objects.filter(store_id__in=list(store_ids)).values("unified_status").annotate(n=Count("pk"))
        .order_by("-n", "unified_status")
    )
    return [(row["unified_status"], row["n"]) for row in rows]


def orders_per_channel(*, store_ids: Sequence[int], limit: int = 12) -> list[tuple[str, int]]:
    rows = (
        Order.objects.filter(store_id__in=list(store_ids)).values("source_name").annotate(n=Count("pk"))
        .order_by("-n", "source_name")[:limit]
    )
    return [(row["source_name"], row["n"]) for row in rows]


@dataclass(frozen=True)
class CarrierFigures:
    carrier: str
    deliveries: int
    median_days: float
    p90_days: float
    on_time_rate: float | None
    with_estimate: int


def delivery_times_per_carrier(*, store_ids: Sequence[int], since: datetime) -> list[CarrierFigures]:
    """Door-to-door days of parcels delivered since `since`, per carrier; on time = by the carrier's estimate."""
    rows = (
        Shipment.objects.filter(store_id__in=list(store_ids), status=Status.DELIVERED, delivered_at__gte=since)
        .annotate(first_event_at=first_event_subquery())
        .values_list("carrier", "created_at", "first_event_at", "delivered_at", "estimated_delivery_date")
        .order_by()
    )
    durations: dict[str, list[float]] = defaultdict(list)
    on_time: dict[str, list[bool]] = defaultdict(list)
    for carrier, created_at, first_event_at, delivered_at, promised in rows.iterator(chunk_size=5000):
        if delivered_at is None:
            continue  # never: the query filters on delivered_at__gte
        days = (delivered_at - transit_start(created_at, first_event_at)).total_seconds() / 86400
        if days < 0:
            continue
        durations[carrier or "unknown"].append(days)
        if promised is not None:
            on_time[carrier or "unknown"].append(delivered_at.date() <= promised)
    figures = []
    for carrier, values in durations.items():
        lane = lane_figures(values, on_time.get(carrier, []))
        figures.append(CarrierFigures(carrier, lane.sample_size, lane.p50, lane.p90, lane.on_time_rate,
                                      lane.with_carrier_estimate))
    return sorted(figures, key=lambda figure: -figure.deliveries)


@dataclass(frozen=True)
class WebhookHealth:
    last_received_at: datetime | None
    received_24h: int
    failed_7d: int
    retrying_now: int
    last_sweep_at: datetime | None
    last_sweep_state: str
    sweeps_failed_7d: int
    drift_7d: int  # orders sweeps had to create or update: changes the webhooks did not bring


def webhook_health(*, store_ids: Sequence[int], now: datetime) -> WebhookHealth:
    deliveries = WebhookDelivery.objects.filter(store_id__in=list(store_ids))
    figures = deliveries.aggregate(
        last=Max("received_at"),
        received_24h=Count("pk", filter=Q(received_at__gte=now - timedelta(hours=24))),
        failed_7d=Count("pk", filter=Q(state=WebhookDelivery.State.FAILED, received_at__gte=now - timedelta(days=7))),
        retrying=Count("pk", filter=Q(state=WebhookDelivery.State.RETRYING)),
    )
    sweeps = SyncRun.objects.filter(store_id__in=list(store_ids))
    week = sweeps.filter(started_at__gte=now - timedelta(days=7)).aggregate(
        failed=Count("pk", filter=Q(state=SyncRun.State.FAILED)),
        drift=Coalesce(Sum("created", filter=Q(kind=SyncRun.Kind.INCREMENTAL)), 0)
        + Coalesce(Sum("updated", filter=Q(kind=SyncRun.Kind.INCREMENTAL)), 0),
    )
    last_sweep = sweeps.order_by("-started_at").values("started_at", "state").first()
    return WebhookHealth(
        last_received_at=figures["last"],
        received_24h=figures["received_24h"],
        failed_7d=figures["failed_7d"],
        retrying_now=figures["retrying"],
        last_sweep_at=last_sweep["started_at"] if last_sweep else None,
        last_sweep_state=last_sweep["state"] if last_sweep else "",
        sweeps_failed_7d=week["failed"],
        drift_7d=week["drift"],
    )
