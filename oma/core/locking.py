"""Telling a lost race between writers (a deadlock, a serialization failure) from a real database error."""

from __future__ import annotations

_DEADLOCK_DETECTED, _SERIALIZATION_FAILURE = "40P01", "40001"


def lost_a_lock_race(exc: BaseException) -> bool:
    """True when PostgreSQL aborted this statement for another writer's sake: running it again cures it."""
    return getattr(exc.__cause__, "sqlstate", None) in (_DEADLOCK_DETECTED, _SERIALIZATION_FAILURE)
