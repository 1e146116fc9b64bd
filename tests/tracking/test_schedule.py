"""Adaptive scheduling: when a shipment is asked again (`next_poll_at_for`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tracking.models import Shipment
from tracking.services import next_poll_at_for

NOW = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)


def shipment(status: str, *, quiet: timedelta = timedelta(hours=1), age: timedelta = timedelta(days=1),
             failures: int = 0, substatus: str = "", pk: int = 7, **fields: object) -> Shipment:
    return Shipment(
        pk=pk, status=status, substatus=substatus, last_event_at=NOW - quiet if status != "pending" else None,
        created_at=NOW - age, consecutive_failures=failures, **fields,
    )


def wait(s: Shipment) -> timedelta:
    moment = next_poll_at_for(s, NOW)
    assert moment is not None
    return moment - NOW


@pytest.mark.parametrize("status", ["delivered", "cancelled", "expired"])
def test_terminal_statuses_are_never_polled_again(status: str) -> None:
    assert next_poll_at_for(shipment(status), NOW) is None


def test_a_completed_return_is_terminal_but_a_return_on_its_way_is_not() -> None:
    assert next_poll_at_for(shipment("return_to_sender", substatus="returned_completed"), NOW) is None
    assert next_poll_at_for(shipment("return_to_sender"), NOW) is not None


def test_out_for_delivery_is_asked_again_within_the_hour() -> None:
    assert timedelta(minutes=30) <= wait(shipment("out_for_delivery")) <= timedelta(hours=1)


def test_moving_parcels_every_few_hours_quiet_ones_less_often() -> None:
    moving = wait(shipment("in_transit", quiet=timedelta(hours=5)))
    quiet = wait(shipment("in_transit", quiet=timedelta(days=4)))
    silent = wait(shipment("in_transit", quiet=timedelta(days=10)))
    assert timedelta(hours=2) <= moving <= timedelta(hours=4)
    assert timedelta(hours=6) <= quiet <= timedelta(hours=10)
    assert timedelta(hours=20) <= silent <= timedelta(hours=28)
    assert moving < quiet < silent


def test_new_labels_not_found_yet_are_asked_soon_then_less_often() -> None:
    fresh = wait(shipment("pending", age=timedelta(minutes=10)))
    day_old = wait(shipment("pending", age=timedelta(hours=20)))
    old = wait(shipment("pending", age=timedelta(days=5)))
    assert fresh <= timedelta(minutes=35) and timedelta(hours=1) < day_old <= timedelta(hours=3) and old > day_old


def test_expected_today_is_watched_closely() -> None:
    far = shipment("in_transit", quiet=timedelta(days=4))
    today = shipment("in_transit", quiet=timedelta(days=4), estimated_delivery_date=NOW.date())
    assert wait(today) <= timedelta(hours=2) < wait(far)


def test_failures_back_off_exponentially_with_a_cap() -> None:
    waits = [wait(shipment("out_for_delivery", failures=n)) for n in (1, 3, 5, 20)]
    assert waits[0] < waits[1] < waits[2] <= waits[3] <= timedelta(hours=12) * 1.1
    assert waits[1] >= timedelta(minutes=50)  # 15 min doubled twice, spread by ±10 %


def test_never_later_than_the_expiry_so_expiry_happens_on_time(settings) -> None:
    settings.TRACKING_MAX_AGE_DAYS = 60
    nearly = shipment("in_transit", quiet=timedelta(days=59, hours=23))
    assert wait(nearly) <= timedelta(hours=1)


def test_the_spread_is_stable_per_shipment_and_differs_between_shipments() -> None:
    a, b = shipment("in_transit", pk=1), shipment("in_transit", pk=2)
    assert wait(a) == wait(shipment("in_transit", pk=1))
    assert wait(a) != wait(b)
