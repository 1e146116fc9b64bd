"""Estimated delivery: the carrier's date first, else percentiles learned from the store's own deliveries per
carrier and destination (once a lane has enough of them), shown on the tracking page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from oma.merchant.estimates import learned_lanes, percentile, transit_stats_recompute
from oma.merchant.models import TransitTimeStat
from oma.merchant.tokens import tracking_token_for
from tests.admin.factories import OrderFactory, ShipmentFactory, StoreFactory, TrackingEventFactory

pytestmark = pytest.mark.django_db


def test_percentile_interpolates_between_ranks():
    values = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 3.0
    assert percentile(values, 100) == 5.0
    assert percentile(values, 40) == pytest.approx(2.6)
    assert percentile([7.0], 90) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)


def _delivered(store, *, days: float, country: str, carrier: str = "ups", promised_late: bool = False):
    delivered_at = timezone.now() - timedelta(days=2)
    order = OrderFactory(store=store, raw={"shippingAddress": {"country": country}})
    shipment = ShipmentFactory(
        order=order, carrier=carrier, status="delivered", delivered_at=delivered_at,
        estimated_delivery_date=(delivered_at - timedelta(days=1 if promised_late else 0)).date(),
    )
    # The clock starts at the first carrier scan (earlier than when OMA learned of the parcel here).
    TrackingEventFactory(shipment=shipment, occurred_at=delivered_at - timedelta(days=days), status="info_received")
    return shipment


@pytest.fixture
def history():
    store = StoreFactory()
    for day in range(1, 13):  # 12 parcels to the US: 1..12 days
        _delivered(store, days=day, country="US", promised_late=day > 9)
    for day in (20, 21, 22):  # 3 to Canada: too few for a lane of their own
        _delivered(store, days=day, country="ca")
    return store


def test_recompute_learns_percentiles_per_carrier_and_destination(history):
    lanes = transit_stats_recompute(store=history)
    assert lanes == 3
    us = TransitTimeStat.objects.get(store=history, carrier="ups", destination="US")
    assert us.sample_size == 12
    assert us.p50_days == pytest.approx(6.5, abs=0.01)
    assert us.p90_days == pytest.approx(10.9, abs=0.01)
    assert us.on_time_rate == pytest.approx(9 / 12)
    everywhere = TransitTimeStat.objects.get(store=history, carrier="ups", destination="")
    assert everywhere.sample_size == 15
    assert TransitTimeStat.objects.get(store=history, destination="CA").sample_size == 3
    usable = learned_lanes(store_ids=[history.pk])
    assert (history.pk, "ups", "US") in usable and (history.pk, "ups", "CA") not in usable
    assert transit_stats_recompute(store=history) == 3  # idempotent: replaced, not duplicated
    assert TransitTimeStat.objects.filter(store=history).count() == 3


def _page(client, order):
    return client.get(reverse("track:order", args=[tracking_token_for(order)]))


def test_the_page_shows_the_learned_window_for_the_lane(client, history):
    transit_stats_recompute(store=history)
    lane = TransitTimeStat.objects.get(store=history, destination="US")
    order = OrderFactory(store=history, raw={"shippingAddress": {"country": "US"}})
    shipment = ShipmentFactory(order=order, carrier="ups", status="in_transit")
    start = timezone.now() - timedelta(days=1)
    TrackingEventFactory(shipment=shipment, occurred_at=start, status="in_transit")
    response = _page(client, order)
    parcel = response.context["page"].parcels[0]
    assert parcel.estimate.source == "learned" and parcel.estimate.sample_size == 12
    assert parcel.estimate.earliest == (start + timedelta(days=lane.p40_days)).date()
    assert parcel.estimate.latest == (start + timedelta(days=lane.p60_days)).date()
    assert not parcel.running_late
    html = response.content.decode()
    assert "Estimated delivery" in html and "Based on 12 recent deliveries" in html


def test_a_thin_lane_falls_back_to_the_carriers_figures_for_every_destination(client, history):
    transit_stats_recompute(store=history)
    order = OrderFactory(store=history, raw={"shippingAddress": {"country": "CA"}})
    ShipmentFactory(order=order, carrier="ups", status="in_transit")
    estimate = _page(client, order).context["page"].parcels[0].estimate
    assert estimate.sample_size == 15 and estimate.lane_destination == ""


def test_the_carriers_own_date_wins(client, history):
    transit_stats_recompute(store=history)
    order = OrderFactory(store=history, raw={"shippingAddress": {"country": "US"}})
    promised = (timezone.now() + timedelta(days=3)).date()
    ShipmentFactory(order=order, carrier="ups", status="in_transit", estimated_delivery_date=promised)
    estimate = _page(client, order).context["page"].parcels[0].estimate
    assert estimate.source == "carrier" and estimate.earliest == estimate.latest == promised


def test_no_history_no_estimate(client):
    store = StoreFactory()
    for day in range(1, 9):  # 8 deliveries: below the threshold of 10
        _delivered(store, days=day, country="US")
    transit_stats_recompute(store=store)
    order = OrderFactory(store=store, raw={"shippingAddress": {"country": "US"}})
    ShipmentFactory(order=order, carrier="ups", status="in_transit")
    response = _page(client, order)
    assert response.context["page"].parcels[0].estimate is None
    assert "Estimated delivery" not in response.content.decode()


def test_a_parcel_past_its_90th_percentile_is_running_late(client, history):
    transit_stats_recompute(store=history)
    order = OrderFactory(store=history, raw={"shippingAddress": {"country": "US"}})
    shipment = ShipmentFactory(order=order, carrier="ups", status="in_transit")
    TrackingEventFactory(shipment=shipment, occurred_at=timezone.now() - timedelta(days=15))
    response = _page(client, order)
    assert response.context["page"].parcels[0].running_late
    assert "Taking longer than usual" in response.content.decode()


def test_the_nightly_task_learns_every_active_store(history):
    from oma.celery import app
    from oma.merchant.tasks import learn_transit_times

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        assert learn_transit_times.apply().get() == 1  # fans out one task per active store
    finally:
        app.conf.task_always_eager = previous
    assert TransitTimeStat.objects.filter(store=history).count() == 3
