"""Which customer-email milestones a shipment has reached, and which one to email now. Pure: no database.

A milestone is one of six tracking statuses (tracking.vocabulary) worth telling a customer about. A shipment
reaches a milestone when its status takes that value, dated by the first carrier event with that status (or, for
a carrier that sent none, by when the status changed). `in_transit` is the first scan: it also counts from the
events alone, while the shipment is still at that stage (in transit, or an exception in transit).

What is emailed (`milestone_to_notify`): at most one milestone per change of a shipment, never one already
recorded for it, never one reached before the store turned it on, and never one the shipment has left behind
(a rank below its current status: a late "in transit" scan after "out for delivery" is not news). When one
change reaches two milestones at once (the first scan and an exception), only the later one is news.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime

from django.db import models
from django.utils.translation import gettext_lazy as _

from tracking.vocabulary import Status, progress_rank


class Milestone(models.TextChoices):
    """The milestones, named like the tracking statuses they stand for."""

    IN_TRANSIT = Status.IN_TRANSIT.value, _("On its way (first carrier scan)")
    OUT_FOR_DELIVERY = Status.OUT_FOR_DELIVERY.value, _("Out for delivery")
    AVAILABLE_FOR_PICKUP = Status.AVAILABLE_FOR_PICKUP.value, _("Ready for pickup")
    ATTEMPT_FAILED = Status.ATTEMPT_FAILED.value, _("Delivery attempt failed")
    DELIVERED = Status.DELIVERED.value, _("Delivered")
    EXCEPTION = Status.EXCEPTION.value, _("Delivery problem (exception)")


MILESTONES: tuple[str, ...] = tuple(Milestone.values)


def first_reached(
    *, status: str, status_changed_at: datetime | None, first_event_at: Mapping[str, datetime]
) -> dict[str, datetime]:
    """milestone -> when the shipment first reached it, for the milestones it may be emailed about now: its current
    status's, and `in_transit` from the first in-transit scan while the shipment is still at that rank.

    `first_event_at` maps a status to the time of the shipment's earliest event with that status."""
    reached: dict[str, datetime] = {}
    if status in MILESTONES:
        times = [moment for moment in (first_event_at.get(status), status_changed_at) if moment is not None]
        if times:
            reached[status] = min(times)
    first_scan = first_event_at.get(Milestone.IN_TRANSIT)
    if first_scan is not None and progress_rank(status) == progress_rank(Milestone.IN_TRANSIT):
        reached[Milestone.IN_TRANSIT] = min(first_scan, reached.get(Milestone.IN_TRANSIT, first_scan))
    return reached


def milestone_to_notify(
    *,
    status: str,
    status_changed_at: datetime | None,
    first_event_at: Mapping[str, datetime],
    active_since: Mapping[str, datetime],
    already: Collection[str],
) -> tuple[str, datetime] | None:
    """The (milestone, reached at) to email about now, or None.

    `active_since`: milestone -> since when the store emails it (absent: off); `already`: the milestones this
    shipment already has a notification row for (sent, skipped or in flight: never a second one)."""
    candidates = [
        (reached_at, milestone)
        for milestone, reached_at in first_reached(
            status=status, status_changed_at=status_changed_at, first_event_at=first_event_at
        ).items()
        if milestone not in already
        and milestone in active_since
        and reached_at >= active_since[milestone]
    ]
    if not candidates:
        return None
    reached_at, milestone = max(candidates)
    return milestone, reached_at
