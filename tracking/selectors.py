"""Tracking reads: which shipments are due, which carrier account answers for a shipment, timelines."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db.models import Count, Q, QuerySet

from oma.core.leases import lease_free
from oma.stores.models import Store
from tracking.carriers.registry import api_carrier_for
from tracking.models import CarrierAccount, CarrierCode, Shipment, TrackingEvent
from tracking.vocabulary import TERMINAL_STATUSES, Status, Substatus


def due_shipments(*, now: datetime, store: Store | None = None) -> QuerySet[Shipment]:
    """Shipments whose next poll time has passed, of active stores, not terminal, not claimed by a dispatcher."""
    queryset = (
        Shipment.objects.filter(next_poll_at__lte=now, store__is_active=True)
        .filter(lease_free(now=now, until_field="poll_claimed_until"))
        .exclude(status__in=TERMINAL_STATUSES)
        .exclude(status=Status.RETURN_TO_SENDER, substatus=Substatus.RETURNED_COMPLETED)
    )
    if store is not None:
        queryset = queryset.filter(store=store)
    return queryset


def due_groups(*, now: datetime, store: Store | None = None) -> dict[tuple[int, str], int]:
    """(store id, carrier) -> number of due shipments: the polling plan in one small GROUP BY."""
    rows = due_shipments(now=now, store=store).values("store_id", "carrier").annotate(n=Count("id")).order_by()
    return {(row["store_id"], row["carrier"]): row["n"] for row in rows}


def active_accounts(*, store_ids: Iterable[int]) -> list[CarrierAccount]:
    return list(
        CarrierAccount.objects.filter(is_active=True)
        .filter(Q(store_id__in=list(store_ids)) | Q(store__isnull=True))
        .order_by("id")
    )


def account_routes(
    *, pairs: Iterable[tuple[int, str]], accounts: Iterable[CarrierAccount]
) -> dict[tuple[int, str], CarrierAccount | None]:
    """For each (store id, detected carrier): the account to ask, or None.

    Order of preference: the store's own account for the carrier's API, the shared one, then (for a direct
    carrier with no account at all) the store's 17TRACK account, then the shared 17TRACK account.
    """
    by_owner: dict[tuple[int | None, str], CarrierAccount] = {}
    for account in accounts:
        by_owner.setdefault((account.store_id, account.carrier), account)
    routes: dict[tuple[int, str], CarrierAccount | None] = {}
    for store_id, carrier in pairs:
        api = api_carrier_for(carrier)
        chosen = by_owner.get((store_id, api)) or by_owner.get((None, api))
        if chosen is None and api != CarrierCode.SEVENTEENTRACK:
            chosen = by_owner.get((store_id, CarrierCode.SEVENTEENTRACK)) or by_owner.get(
                (None, CarrierCode.SEVENTEENTRACK)
            )
        routes[(store_id, carrier)] = chosen
    return routes


def account_for(*, store: Store | None, carrier: str) -> CarrierAccount | None:
    """The account that answers for one number of `carrier` (store None: shared accounts only)."""
    store_id = store.pk if store is not None else 0
    accounts = active_accounts(store_ids=[store_id] if store is not None else [])
    return account_routes(pairs=[(store_id, carrier)], accounts=accounts)[(store_id, carrier)]


def shipment_timeline(shipment: Shipment) -> QuerySet[TrackingEvent]:
    """The shipment's events, newest first."""
    return shipment.events.order_by("-occurred_at", "-id")
