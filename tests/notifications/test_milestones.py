"""Milestone detection (pure): which milestone a shipment's change is news of, and which it is not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from oma.notifications.milestones import MILESTONES, first_reached, milestone_to_notify

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
OPT_IN = T0
ALL_ON = dict.fromkeys(MILESTONES, OPT_IN)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def notify(status, changed_at=None, events=None, active=None, already=()):
    return milestone_to_notify(
        status=status,
        status_changed_at=changed_at,
        first_event_at=events or {},
        active_since=ALL_ON if active is None else active,
        already=set(already),
    )


def test_the_first_in_transit_scan_is_the_in_transit_milestone():
    assert notify("in_transit", at(2), {"in_transit": at(1)}) == ("in_transit", at(1))


def test_each_later_status_is_its_own_milestone_dated_by_its_first_event():
    assert notify("out_for_delivery", at(5), {"in_transit": at(1), "out_for_delivery": at(4)}, already={"in_transit"}
                  ) == ("out_for_delivery", at(4))
    assert notify("available_for_pickup", at(5)) == ("available_for_pickup", at(5))  # no event: the status change
    assert notify("attempt_failed", at(6), {"attempt_failed": at(6)}) == ("attempt_failed", at(6))
    assert notify("delivered", at(9), {"delivered": at(8)}) == ("delivered", at(8))
    assert notify("exception", at(3), {"exception": at(3)}) == ("exception", at(3))


def test_statuses_that_are_no_milestone_notify_nothing():
    for status in ("pending", "info_received", "return_to_sender", "cancelled", "expired", "unknown"):
        assert notify(status, at(1), {"in_transit": at(1)}) is None, status


def test_a_milestone_already_recorded_is_never_news_again():
    assert notify("in_transit", at(2), {"in_transit": at(1)}, already={"in_transit"}) is None
    # out for delivery -> attempt failed -> out for delivery again: the second time is not news
    assert notify("out_for_delivery", at(9), {"out_for_delivery": at(4)}, already={"out_for_delivery"}) is None


def test_milestones_reached_before_opt_in_are_not_emailed():
    late_opt_in = dict.fromkeys(MILESTONES, at(3))
    assert notify("in_transit", at(2), {"in_transit": at(1)}, active=late_opt_in) is None
    # The status changed after the opt-in, but the parcel first reached it before: no backlog.
    assert notify("out_for_delivery", at(4), {"out_for_delivery": at(2)}, active=late_opt_in) is None
    assert notify("delivered", at(5), {"delivered": at(4)}, active=late_opt_in) == ("delivered", at(4))


def test_a_milestone_switched_off_is_not_emailed():
    assert notify("delivered", at(5), active={m: OPT_IN for m in MILESTONES if m != "delivered"}) is None
    assert notify("delivered", at(5), active={}) is None


def test_a_late_in_transit_scan_after_a_later_milestone_is_not_news():
    # A backwards-looking scan: the shipment is out for delivery, a first in-transit event arrives late.
    assert notify("out_for_delivery", at(5), {"in_transit": at(6), "out_for_delivery": at(4)},
                  already={"out_for_delivery"}) is None
    assert first_reached(status="delivered", status_changed_at=at(9), first_event_at={"in_transit": at(1)}) == {
        "delivered": at(9)
    }


def test_one_change_reaching_two_milestones_emails_only_the_later_one():
    # First scan and an exception in one poll: the exception is the news.
    assert notify("exception", at(3), {"in_transit": at(1), "exception": at(2)}) == ("exception", at(2))
    # Once the problem clears, "on its way" is news (it was never sent).
    assert notify("in_transit", at(6), {"in_transit": at(1), "exception": at(2)}, already={"exception"}) == (
        "in_transit", at(1)
    )


def test_a_shipment_jumping_straight_to_delivered_gets_only_delivered():
    assert notify("delivered", at(9), {"in_transit": at(1), "out_for_delivery": at(5), "delivered": at(8)}) == (
        "delivered", at(8)
    )


def test_no_date_at_all_is_not_news():
    assert notify("in_transit", None, {}) is None
