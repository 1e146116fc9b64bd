"""Scripted parcel journeys: what happens to a parcel and when, decided by its tracking number alone.

A journey is a list of milestones (carrier-neutral: label created, picked up, departed, ..., delivered) at fixed
offsets from the journey's start. The scenario and the start come from a hash of the number, so every run of the
sandbox tells the same story about the same number; what is visible depends on the sandbox clock (a milestone
shows once the clock has passed it). Each carrier renders milestones in its own codes (tracking/sandbox/carriers).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class Milestone(StrEnum):
    LABEL_CREATED = "label_created"
    PICKED_UP = "picked_up"
    DEPARTED = "departed"
    ARRIVED = "arrived"
    DELAYED = "delayed"
    DAMAGED = "damaged"
    OUT_FOR_DELIVERY = "out_for_delivery"
    ATTEMPT_FAILED = "attempt_failed"
    AVAILABLE_FOR_PICKUP = "available_for_pickup"
    DELIVERED = "delivered"
    RETURNING = "returning"
    RETURNED = "returned"


class Scenario(StrEnum):
    DELIVERED = "delivered"
    DELAYED = "delayed"  # a weather delay on the way, delivered late
    EXCEPTION = "exception"  # damaged in transit: ends in an exception
    FAILED_ATTEMPT = "failed_attempt"  # recipient not home, delivered on the second attempt
    PICKUP = "pickup"  # held at a pickup point for the recipient
    RETURNED = "returned"  # refused, returned to the sender
    NOT_FOUND_FIRST = "not_found_first"  # unknown to the carrier for the first 12 hours, then delivered
    # Only by explicit scripting (CarrierSandbox.script): never part of the automatic rotation.
    NEVER_FOUND = "never_found"


# The automatic rotation: the number's hash picks one of these.
ROTATION: tuple[Scenario, ...] = (
    Scenario.DELIVERED,
    Scenario.DELAYED,
    Scenario.EXCEPTION,
    Scenario.FAILED_ATTEMPT,
    Scenario.PICKUP,
    Scenario.RETURNED,
    Scenario.NOT_FOUND_FIRST,
)

M = Milestone
_OUTBOUND = ((0, M.LABEL_CREATED), (5, M.PICKED_UP), (9, M.DEPARTED), (26, M.ARRIVED))
# Offsets in hours from the journey's start.
SCRIPTS: dict[Scenario, tuple[tuple[float, Milestone], ...]] = {
    Scenario.DELIVERED: (*_OUTBOUND, (44, M.OUT_FOR_DELIVERY), (50.5, M.DELIVERED)),
    Scenario.DELAYED: (
        (0, M.LABEL_CREATED), (5, M.PICKED_UP), (9, M.DEPARTED), (20, M.DELAYED), (50, M.ARRIVED),
        (68, M.OUT_FOR_DELIVERY), (74.25, M.DELIVERED),
    ),
    Scenario.EXCEPTION: (*_OUTBOUND, (30, M.DAMAGED)),
    Scenario.FAILED_ATTEMPT: (
        *_OUTBOUND, (44, M.OUT_FOR_DELIVERY), (51, M.ATTEMPT_FAILED), (68, M.OUT_FOR_DELIVERY), (73.5, M.DELIVERED),
    ),
    Scenario.PICKUP: (*_OUTBOUND, (40, M.AVAILABLE_FOR_PICKUP)),
    Scenario.RETURNED: (
        *_OUTBOUND, (44, M.OUT_FOR_DELIVERY), (51, M.ATTEMPT_FAILED), (75, M.RETURNING), (140, M.RETURNED),
    ),
    Scenario.NOT_FOUND_FIRST: (
        (12, M.LABEL_CREATED), (16, M.PICKED_UP), (20, M.DEPARTED), (36, M.ARRIVED), (52, M.OUT_FOR_DELIVERY),
        (57.75, M.DELIVERED),
    ),
    Scenario.NEVER_FOUND: (),
}

# The normalized status (tracking.vocabulary) a shipment must end in once the whole journey is visible.
FINAL_STATUS: dict[Scenario, str] = {
    Scenario.DELIVERED: "delivered",
    Scenario.DELAYED: "delivered",
    Scenario.EXCEPTION: "exception",
    Scenario.FAILED_ATTEMPT: "delivered",
    Scenario.PICKUP: "available_for_pickup",
    Scenario.RETURNED: "return_to_sender",
    Scenario.NOT_FOUND_FIRST: "delivered",
    Scenario.NEVER_FOUND: "pending",
}
# The longest script, plus the latest start: past epoch + this, every journey is complete.
JOURNEY_SPAN = timedelta(hours=140 + 48)


@dataclass(frozen=True, slots=True)
class Step:
    at: datetime  # UTC
    milestone: Milestone
    index: int  # position in the journey (0 = first), for stable per-step choices (places, times)


def _digest(number: str) -> int:
    return int.from_bytes(hashlib.sha256(number.upper().encode()).digest()[:8], "big")


def scenario_for(number: str) -> Scenario:
    return ROTATION[_digest(number) % len(ROTATION)]


def journey_start(number: str, epoch: datetime) -> datetime:
    """Journeys start within the 48 hours after the epoch, spread by the number's hash (minute precision)."""
    return epoch + timedelta(minutes=(_digest(number) >> 16) % (48 * 60))


def journey(number: str, epoch: datetime, scenario: Scenario | None = None) -> list[Step]:
    """Every step of the number's journey, oldest first (visible or not)."""
    scenario = scenario or scenario_for(number)
    start = journey_start(number, epoch)
    # A few minutes of per-number jitter on every step, so that parcels do not all move on the hour.
    jitter = (_digest(number) >> 40) % 37
    return [
        Step(at=start + timedelta(hours=hours, minutes=jitter), milestone=milestone, index=index)
        for index, (hours, milestone) in enumerate(SCRIPTS[scenario])
    ]


def visible_steps(number: str, epoch: datetime, now: datetime, scenario: Scenario | None = None) -> list[Step]:
    return [step for step in journey(number, epoch, scenario) if step.at <= now]
