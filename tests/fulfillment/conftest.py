"""Fixtures for fulfillment tests: a Genstore sandbox over real HTTP, a store mirrored from it, shipments; for the
worker-backed acceptance tests, the test's own broker and the carrier sandbox with accounts on it."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from oma.orders.models import LineItem, Order, SyncRun
from oma.orders.services import orders_sweep
from oma.sandbox.server import GenstoreSandbox
from oma.stores.models import Store
from tests.faults.processes import celery_app_publishing_to
from tests.fixtures_celery import RedisServer, private_redis  # noqa: F401 (a fixture, for `broker`)
from tests.genstore_sandbox import connect, start_sandbox
from tests.tracking.conftest import EPOCH, FAST_LIMITS, add_sandbox_account
from tracking.carriers.base import TrackingEventRecord, TrackingResult
from tracking.models import Shipment
from tracking.polling import forget_transports
from tracking.sandbox import CARRIERS, CarrierSandbox
from tracking.services import shipment_add, shipment_apply_result

_numbers = itertools.count(1)


@pytest.fixture
def sandbox() -> Iterator[GenstoreSandbox]:
    box = start_sandbox(orders=80, seed=7, rate_limit=None)
    yield box
    box.stop()


@pytest.fixture
def store(sandbox: GenstoreSandbox, redis_client) -> Store:
    store = connect(sandbox, rate_limit=(1000, 1000.0))
    run = orders_sweep(store=store, kind=SyncRun.Kind.FULL)
    assert run.state == SyncRun.State.SUCCEEDED, run.error_message
    return store


@pytest.fixture
def broker(private_redis: RedisServer) -> Iterator[str]:  # noqa: F811
    """This process publishes to the test's own Redis, where the test's workers listen (also imported by
    tests/notifications/test_acceptance.py)."""
    with celery_app_publishing_to(private_redis.url()):
        yield private_redis.url()


@pytest.fixture
def carriers(transactional_db: None) -> Iterator[CarrierSandbox]:
    """The carrier sandbox over HTTP, mid-journey for many parcels (in transit, out for delivery, delivered,
    exceptions, pickups, returns), with a global account on it for each of its carriers."""
    sandbox = CarrierSandbox(port=0, epoch=EPOCH, rate_limits=FAST_LIMITS).start()
    sandbox.set_clock(EPOCH + timedelta(days=3, hours=6))
    try:
        for carrier in CARRIERS:
            add_sandbox_account(sandbox, carrier)
        yield sandbox
    finally:
        sandbox.stop()
        forget_transports()  # the polls' sessions point at this server's port


def open_orders(store: Store, *, lines_at_least: int = 1) -> list[Order]:
    """Orders that may be fulfilled: paid, not cancelled, every line still fully fulfillable and shippable."""
    result = []
    for order in Order.objects.filter(store=store, cancelled_at__isnull=True, financial_status="paid").order_by("pk"):
        lines = list(order.line_items.all())
        if len(lines) >= lines_at_least and all(
            line.fulfillable_quantity == line.quantity and line.quantity > 0 and line.requires_shipping is not False
            for line in lines
        ):
            result.append(order)
    return result


def new_number() -> str:
    return f"9400{next(_numbers):018d}"


def add_shipment(
    store: Store, order: Order, lines: list[tuple[LineItem, int]] | None = None, *, number: str | None = None,
    carrier: str = "usps",
) -> Shipment:
    if lines is None:
        lines = [(line, line.quantity) for line in order.line_items.order_by("pk")]
    return shipment_add(
        store=store, tracking_number=number or new_number(), carrier=carrier, order=order, lines=lines,
        source=Shipment.Source.CSV,
    )


def carrier_says(shipment: Shipment, status: str, substatus: str = "", *, hours_ago: float = 0) -> Shipment:
    """Apply a carrier answer through the tracking engine, as a poll would."""
    occurred = datetime.now(UTC) - timedelta(hours=hours_ago)
    event = TrackingEventRecord(
        occurred_at=occurred, status=status, substatus=substatus, raw_code=status.upper(), raw_text=status
    )
    shipment.refresh_from_db()
    shipment_apply_result(
        shipment=shipment,
        result=TrackingResult(
            tracking_number=shipment.tracking_number, carrier=shipment.carrier, status=status, substatus=substatus,
            events=(event,),
        ),
    )
    shipment.refresh_from_db()
    return shipment
