"""In a real browser: the customer follows the trackingUrl OMA pushed to the Genstore order to the branded page."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from oma.fulfillment.services.push import PushResult, shipment_push
from oma.merchant.models import StoreBranding
from oma.orders.models import SyncRun
from oma.orders.services import orders_sweep
from oma.sandbox.server import GenstoreSandbox
from oma.stores.models import Store
from oma.stores.services import genstore_client_for
from tests.browser.conftest import screenshot
from tests.fulfillment.conftest import add_shipment, open_orders
from tests.genstore_sandbox import connect, start_sandbox
from tracking.carriers.base import TrackingEventRecord, TrackingResult
from tracking.models import Shipment
from tracking.services import shipment_apply_result

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


@pytest.fixture
def sandbox() -> Iterator[GenstoreSandbox]:
    box = start_sandbox(orders=12, seed=7, rate_limit=None)
    yield box
    box.stop()


@pytest.fixture
def store(sandbox: GenstoreSandbox, redis_client) -> Store:
    store = connect(sandbox, rate_limit=(1000, 1000.0))
    assert store.branded_tracking_link  # on for a newly connected store
    StoreBranding.objects.create(store=store, display_name="The Teapot Emporium", accent_colour="#0a5d3a")
    run = orders_sweep(store=store, kind=SyncRun.Kind.FULL)
    assert run.state == SyncRun.State.SUCCEEDED, run.error_message
    return store


def carrier_reports(shipment: Shipment) -> Shipment:
    """Two scans, applied through the tracking engine as a poll would."""
    now = datetime.now(UTC)
    events = (
        TrackingEventRecord(occurred_at=now - timedelta(days=1), status="in_transit", raw_code="AR",
                            raw_text="Arrived at regional facility", location="Louisville, KY, US"),
        TrackingEventRecord(occurred_at=now - timedelta(hours=3), status="out_for_delivery", raw_code="OD",
                            raw_text="Out for delivery", location="Boston, MA, US"),
    )
    shipment_apply_result(shipment=shipment, result=TrackingResult(
        tracking_number=shipment.tracking_number, carrier=shipment.carrier, status="out_for_delivery", events=events,
    ))
    shipment.refresh_from_db()
    return shipment


def test_customer_follows_the_pushed_tracking_url_to_the_branded_page(live_server, page, store, settings):
    settings.OMA_PUBLIC_URL = live_server.url
    order = open_orders(store)[0]
    shipment = carrier_reports(add_shipment(store, order))
    carrier_url = shipment.tracking_url
    assert carrier_url.startswith("https://")
    assert shipment_push(shipment_id=shipment.pk).result == PushResult.CREATED

    # What the customer's order page in Genstore links to: the order as Genstore serves it.
    client = genstore_client_for(store)
    try:
        fresh = client.get_order(order.order_id)
    finally:
        client.close()
    [fulfillment] = [f for f in fresh.fulfillments if f.tracking_number == shipment.tracking_number]
    assert fulfillment.tracking_url and fulfillment.tracking_url.startswith(f"{live_server.url}/track/")

    page.goto(fulfillment.tracking_url)
    page.wait_for_selector("section.parcel")
    screenshot(page, "customer-03-branded-link-from-genstore")
    assert page.locator("header.brand .name").inner_text() == "The Teapot Emporium"
    main = page.locator("main").inner_text()
    assert f"Order {order.name or '#' + order.order_id}" in main
    assert shipment.tracking_number in main
    assert "Out for delivery" in main
    timeline = page.locator("ol.timeline li")
    assert timeline.count() == 2
    assert "Out for delivery" in timeline.nth(0).inner_text()
    assert "Arrived at regional facility" in timeline.nth(1).inner_text()
    # The carrier's own page is one click away, and it is the carrier's, not OMA's.
    carrier_link = page.locator(f"a:has-text('{shipment.tracking_number}')")
    assert carrier_link.get_attribute("href") == carrier_url
    assert not carrier_url.startswith(live_server.url)
