"""Genstore's fulfillment `status` values (genstore-contract.md, the Fulfillment object) and which of them mean the
fulfillment no longer stands.

The one definition for the apps that read fulfillments: pushes, plans and reconciliation (oma.fulfillment), the
unified status, matching tracking records to what is left to ship and cancelling external orders (oma.channels).
"""

from __future__ import annotations

__all__ = ["DEAD_FULFILLMENT_STATUSES", "FULFILLMENT_STATUSES"]

# Every documented value of a Fulfillment's `status`.
FULFILLMENT_STATUSES: tuple[str, ...] = ("pending", "open", "success", "cancelled", "error", "failure")

# A fulfillment in one of these holds no items and ships nothing: cancelled, or never made.
DEAD_FULFILLMENT_STATUSES: frozenset[str] = frozenset({"cancelled", "error", "failure"})
