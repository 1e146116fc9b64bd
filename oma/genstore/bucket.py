"""Genstore's rate-limit bucket as the contract documents it (Part A "rate limit", Part B "rate limit recovery"):
the figures to start from and the documented plans a measured bucket snaps to. The learning itself is
oma.core.ratelimit's (`BucketLearning`, `refill_update`); the header it learns from is read by oma.genstore.client.
"""

from __future__ import annotations

from oma.core.ratelimit import BucketLearning

__all__ = ["GENSTORE_BUCKET", "GENSTORE_PLANS"]

# The documented refills disagree: 40 tokens at 2/s, or by plan 40 at 4/s, 200 at 20/s, 400 at 40/s.
GENSTORE_PLANS: tuple[tuple[int, float], ...] = ((40, 2.0), (40, 4.0), (200, 20.0), (400, 40.0))

# Until a store's answers say otherwise: the contract's 40 at 2/s (the smallest plan: never too fast).
GENSTORE_BUCKET = BucketLearning(start_capacity=40, start_refill=2.0, plans=GENSTORE_PLANS)
