"""Fixtures for customer-notification tests: a store with a customer order and a parcel, statuses written the way a
carrier poll writes them (tracking.services.shipments_apply_results)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from oma.notifications.models import StoreNotificationSettings
from oma.notifications.services import store_notifications_enable
from oma.orders.models import Order
from oma.stores.models import Store
from tests.admin.factories import OrderFactory, StoreFactory
from tracking.carriers.base import TrackingEventRecord, TrackingResult
from tracking.models import Shipment
from tracking.services import shipment_add, shipments_apply_results

PUBLIC_URL = "https://oma.example.com"
_texts = itertools.count(1)


@pytest.fixture
def public_url(settings) -> str:
    settings.OMA_PUBLIC_URL = PUBLIC_URL
    return PUBLIC_URL


@pytest.fixture
def store(db) -> Store:
    return StoreFactory(name="Acme & Sons")


@pytest.fixture
def opted_in(store: Store) -> StoreNotificationSettings:
    """Customer emails on for every milestone, since an hour ago."""
    return store_notifications_enable(store_id=store.pk, now=timezone.now() - timedelta(hours=1))


def new_order(store: Store, **fields: object) -> Order:
    return OrderFactory(store=store, **fields)


def new_shipment(store: Store, order: Order | None = None, *, number: str | None = None) -> Shipment:
    return shipment_add(
        store=store, order=order, tracking_number=number or f"1Z999AA1{next(_texts):010d}", carrier="ups"
    )


def event(status: str, at: datetime, location: str = "Louisville, KY, US") -> TrackingEventRecord:
    return TrackingEventRecord(
        occurred_at=at, status=status, raw_code=status.upper(), raw_text=f"{status} scan {next(_texts)}",
        location=location,
    )


def carrier_says(shipments: Sequence[Shipment], status: str, *, at: datetime | None = None) -> None:
    """One poll: the carrier reports a new scan with `status` for each shipment (each reloaded first)."""
    at = at or timezone.now()
    fresh = list(Shipment.objects.filter(pk__in=[s.pk for s in shipments]).order_by("pk"))
    pairs = [
        (
            shipment,
            TrackingResult(
                tracking_number=shipment.tracking_number, carrier="ups", status=status,
                events=(event(status, at),),
                delivered_at=at if status == "delivered" else None,
            ),
        )
        for shipment in fresh
    ]
    shipments_apply_results(pairs=pairs, now=at)
