"""Genstore's `shipmentStatus` values and their order along a journey (genstore-contract.md, Part B).

What OMA pushes for each of its own tracking statuses is decided in oma/fulfillment/pushed_status.py, and how an
untracked fulfillment's shipmentStatus reads as a tracking status in oma/fulfillment/status.py: both know OMA's
vocabulary and Genstore's, so they live above both.
"""

from __future__ import annotations

__all__ = [
    "SHIPMENT_STATUSES",
    "SHIPMENT_STATUS_RANK",
    "shipment_status_moves_forward",
]

# Every documented value, in the contract's order.
SHIPMENT_STATUSES: tuple[str, ...] = (
    "label_printed",
    "label_purchased",
    "confirmed",
    "in_transit",
    "out_for_delivery",
    "attempted_delivery",
    "ready_for_pickup",
    "delayed",
    "delivered",
    "failure",
)

# Order of the values along a journey, for "a push never moves a fulfillment backwards". Equal ranks may alternate
# (delayed <-> in_transit when a problem clears).
SHIPMENT_STATUS_RANK: dict[str, int] = {
    "label_printed": 0,
    "label_purchased": 0,
    "confirmed": 10,
    "in_transit": 20,
    "delayed": 20,
    "out_for_delivery": 30,
    "ready_for_pickup": 30,
    "attempted_delivery": 30,
    "failure": 40,
    "delivered": 50,
}


def shipment_status_moves_forward(previous: str | None, candidate: str) -> bool:
    """Whether pushing `candidate` after `previous` (the last pushed value, None if none) moves forward."""
    if previous is None:
        return True
    return SHIPMENT_STATUS_RANK.get(candidate, 0) >= SHIPMENT_STATUS_RANK.get(previous, 0)
