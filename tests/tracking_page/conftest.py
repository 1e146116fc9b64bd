"""A Genstore sandbox store with mirrored orders, a carrier sandbox, and a parcel tracked on one order."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.core.cache import cache

from oma.orders.models import Order
from oma.orders.services import orders_sweep
from oma.stores.models import Store
from tests.genstore_sandbox import connect, start_sandbox
from tests.tracking.conftest import add_sandbox_account, carrier_sandbox  # noqa: F401 - carrier_sandbox: fixture
from tracking.models import Shipment
from tracking.polling import poll_due_shipments
from tracking.sandbox import CarrierSandbox, numbers_for
from tracking.services import shipment_add


@pytest.fixture(autouse=True)
def local_cache(settings) -> Iterator[None]:
    """The rate limiter's counters in process memory: parallel test runs share Redis db 15 and flush it."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                   "LOCATION": "tracking-page-tests"}}
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def genstore_store(db) -> Iterator[Store]:
    sandbox = start_sandbox(orders=25, seed=7)
    try:
        store = connect(sandbox)
        orders_sweep(store=store, kind="full")
        yield store
    finally:
        sandbox.stop()


@dataclass
class Tracked:
    store: Store
    order: Order
    shipment: Shipment


@pytest.fixture
def tracked_order(genstore_store: Store, carrier_sandbox: CarrierSandbox) -> Tracked:  # noqa: F811
    """A sandbox order with an email, and a UPS parcel on it polled from the carrier sandbox."""
    order = Order.objects.filter(store=genstore_store).exclude(email="").filter(cancelled_at__isnull=True).first()
    assert order is not None
    add_sandbox_account(carrier_sandbox, "ups")
    number = next(iter(numbers_for("ups", 1, start=4242)))
    shipment = shipment_add(store=genstore_store, tracking_number=number, carrier="ups", order=order)
    poll_due_shipments()
    shipment.refresh_from_db()
    assert shipment.events.exists()
    return Tracked(store=genstore_store, order=order, shipment=shipment)
