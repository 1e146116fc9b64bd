"""The merchant dashboard: figures of the user's stores only, charts rendered on the server, bounded queries."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from oma.orders.models import SyncRun
from tests.admin.factories import OrderFactory, ShipmentFactory, StoreFactory, TrackingEventFactory
from tests.admin.world import merchant, superuser

pytestmark = pytest.mark.django_db
DASHBOARD = "admin:dashboard"


def _fill(store, *, marker: str, scale: int = 1):
    now = timezone.now()
    for n in range(3 * scale):
        order = OrderFactory(store=store, source_name=f"{marker}-amazon", unified_status="in_transit")
        ShipmentFactory(order=order, tracking_number=f"{marker.upper()}T{n:08d}", carrier="ups",
                        status="in_transit", last_event_at=now - timedelta(days=8))
    for n in range(4 * scale):
        order = OrderFactory(store=store, source_name="web", unified_status="delivered")
        shipment = ShipmentFactory(order=order, tracking_number=f"{marker.upper()}D{n:08d}", carrier="usps",
                                   status="delivered", delivered_at=now - timedelta(days=1),
                                   estimated_delivery_date=(now - timedelta(days=1)).date())
        TrackingEventFactory(shipment=shipment, occurred_at=now - timedelta(days=1 + 2 + n % 3))
    problem = OrderFactory(store=store, unified_status="delivery_issue", name=f"#{marker}-problem")
    ShipmentFactory(order=problem, tracking_number=f"{marker.upper()}X00000001", status="exception",
                    status_changed_at=now)
    SyncRun.objects.create(store=store, kind="incremental", state="succeeded", created=2, updated=3,
                           started_at=now - timedelta(minutes=5), finished_at=now)


def test_dashboard_shows_the_merchants_own_figures(client):
    mine, theirs = StoreFactory(name="amark shop"), StoreFactory(name="bmark shop")
    _fill(mine, marker="amark")
    _fill(theirs, marker="bmark")
    client.force_login(merchant("dash", mine))
    response = client.get(reverse(DASHBOARD))
    html = response.content.decode()
    assert response.status_code == 200
    assert "bmark" not in html and "BMARK" not in html
    assert '<svg class="oma-chart" role="img"' in html
    assert not re.search(r'<(script|link|img)[^>]+(src|href)="(https?:)?//', html)  # no CDN
    assert response.context["orders_total"] == 8
    assert dict((s, n) for s, _l, n in response.context["status_rows"]) == {
        "in_transit": 3, "delivered": 4, "delivery_issue": 1}
    assert response.context["exceptions_count"] == 1 and "AMARKX00000001" in html
    assert response.context["stuck_count"] == 3
    usps = next(c for c in response.context["carriers"] if c.carrier == "usps")
    assert usps.deliveries == 4 and usps.on_time_rate == 1.0
    assert response.context["health"].drift_7d == 5


def test_dashboard_costs_the_same_queries_with_more_data(client):
    store = StoreFactory()
    client.force_login(merchant("counts", store))
    _fill(store, marker="one")

    def count() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(reverse(DASHBOARD)).status_code == 200
        return len(captured.captured_queries)

    small = count()
    _fill(store, marker="two", scale=5)
    assert count() == small


def test_superuser_picks_a_store(client):
    first, second = StoreFactory(), StoreFactory()
    _fill(first, marker="first")
    _fill(second, marker="second")
    client.force_login(superuser())
    assert client.get(reverse(DASHBOARD)).context["orders_total"] == 16
    response = client.get(reverse(DASHBOARD), {"store": second.pk})
    assert response.context["orders_total"] == 8
    assert "FIRSTX" not in response.content.decode()


def test_dashboard_needs_a_staff_login(client):
    response = client.get(reverse(DASHBOARD))
    assert response.status_code == 302 and "login" in response["Location"]
