"""The status vocabulary and its derived tables, checked against the references when they are present.

What is pushed to Genstore for a status: tests/fulfillment/test_pushed_status.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tracking.vocabulary import (
    FAILURE_SUBSTATUSES,
    PROGRESS_RANK,
    STATUSES,
    SUBSTATUSES,
    TERMINAL_STATUSES,
    Status,
    Substatus,
    is_terminal,
    moves_forward,
    substatus_from_text,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
CARRIERS_MD = SHARED / "reference" / "carriers.md"

EXPECTED_STATUSES = (
    "pending",
    "info_received",
    "in_transit",
    "out_for_delivery",
    "available_for_pickup",
    "attempt_failed",
    "delivered",
    "exception",
    "return_to_sender",
    "cancelled",
    "expired",
    "unknown",
)


def test_twelve_statuses_usable_as_django_choices() -> None:
    assert STATUSES == EXPECTED_STATUSES
    assert dict(Status.choices)["attempt_failed"] == "Delivery attempt failed"
    assert Status("delivered") == "delivered"


@pytest.mark.skipif(not CARRIERS_MD.exists(), reason="../shared/reference/carriers.md absent")
def test_statuses_and_substatuses_match_the_carriers_reference() -> None:
    text = CARRIERS_MD.read_text()
    short_answer = text.split("## 0. Short answer", 1)[1].split("* **Best external test sets**", 1)[0]
    listed = re.findall(r"`([a-z_]+)`", short_answer.split("Add an optional", 1)[0])
    assert tuple(listed) == STATUSES
    named_substatuses = re.search(r"\((picked_up,[a-z_,\s]+)\)", short_answer).group(1)
    names = [name.strip() for name in named_substatuses.split(",")]
    assert len(names) == 12
    for name in names:
        assert name in SUBSTATUSES, name


def test_terminal_statuses() -> None:
    assert {"delivered", "cancelled", "expired"} == TERMINAL_STATUSES
    assert is_terminal("delivered")
    assert is_terminal("return_to_sender", "returned_completed")
    assert not is_terminal("return_to_sender")
    assert not is_terminal("exception", "lost")
    assert not is_terminal("in_transit")


def test_progress_never_moves_backwards() -> None:
    assert set(PROGRESS_RANK) == set(STATUSES)
    assert moves_forward("in_transit", "out_for_delivery")
    assert moves_forward("out_for_delivery", "attempt_failed")
    assert moves_forward("attempt_failed", "out_for_delivery")  # second attempt
    assert moves_forward("exception", "in_transit")  # the problem cleared
    assert not moves_forward("delivered", "in_transit")
    assert not moves_forward("out_for_delivery", "info_received")
    assert not moves_forward("in_transit", "unknown")
    assert not moves_forward("in_transit", "pending")
    assert moves_forward("pending", "info_received")


def test_failure_substatuses_are_substatuses() -> None:
    assert set(FAILURE_SUBSTATUSES) <= set(SUBSTATUSES)
    assert Substatus.NONE == ""


@pytest.mark.parametrize(
    ("text", "substatus"),
    [
        ("Severe weather conditions have delayed delivery", "weather"),
        ("Customer not available or business closed", "recipient_unavailable"),
        ("Business closed", "business_closed"),
        ("Incorrect address - contact shipper", "address_issue"),
        ("Package damaged - contents being inspected", "damaged"),
        ("Refused by recipient", "refused"),
        ("Sent to lost and found", "lost"),
        ("Clearance information required", "customs_hold"),
        ("Held at customs", "customs"),
        ("Running late", "delayed"),
        ("Arrived at facility", ""),
    ],
)
def test_substatus_hints_from_carrier_text(text: str, substatus: str) -> None:
    assert substatus_from_text(text) == substatus
