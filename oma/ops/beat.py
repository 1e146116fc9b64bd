"""Exactly one beat: django-celery-beat's DatabaseScheduler that runs the schedule only while it holds a lease.

Celery's docs require a single scheduler ("otherwise you'd end up with duplicate tasks"), yet a deploy that
overlaps, a scaled service or a second `make run` starts another one. So every beat ticks through a lease row
(oma.ops.models.BeatLease), renewed or taken with a conditional UPDATE against the database clock (oma.core.leases):

* free or expired -> the beat takes it and runs the schedule; it renews it on every tick (at most every 5 s);
* held by another beat -> this one stands by, asking again every few seconds, dispatching nothing;
* the holder dies -> its lease expires after OMA_BEAT_LEASE_SECONDS and a standby takes over, re-reading the
  schedule (with each entry's last run) from the database first;
* a holder that cannot renew (database gone) stops dispatching until it holds the lease again.

The holder saves each entry's last run right after sending it (`sync_every_tasks = 1`), so a takeover does not
re-send what the previous holder already sent. The renewal is also beat's heartbeat for /healthz. The lease is an
efficiency measure, not the only guard: every periodic task is safe to run twice (database constraints and locks).
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, InterfaceError, connection
from django.db.models.functions import Now
from django_celery_beat.schedulers import DatabaseScheduler

from oma.core import leases
from oma.ops.health import BEAT_LEASE_NAME
from oma.ops.models import BeatLease

logger = logging.getLogger(__name__)


def lease_seconds() -> float:
    return float(settings.OMA_BEAT_LEASE_SECONDS)


def lease_acquire_or_renew(*, holder: str, seconds: float, name: str = BEAT_LEASE_NAME) -> bool:
    """Extend the lease if `holder` has it, or take it if it is free or expired (oma.core.leases, against the
    database's clock: beats on two hosts agree on it). True when `holder` holds it now."""
    row = BeatLease.objects.filter(name=name)
    ttl = timedelta(seconds=seconds)
    for _ in range(2):
        if leases.lease_renew(row, holder=holder, ttl=ttl, values={"renewed_at": Now()}):
            return True
        if leases.lease_take(row, holder=holder, ttl=ttl, taken_field="acquired_at", values={"renewed_at": Now()}):
            return True
        _, created = BeatLease.objects.get_or_create(name=name)
        if not created:
            return False
    return False


def lease_release(*, holder: str, name: str = BEAT_LEASE_NAME) -> bool:
    """Let a standby take over at once (a clean stop) instead of after the lease expires."""
    return bool(leases.lease_release(BeatLease.objects.filter(name=name), holder=holder))


class LeasedDatabaseScheduler(DatabaseScheduler):
    """`celery -A oma beat` with CELERY_BEAT_SCHEDULER = "oma.ops.beat:LeasedDatabaseScheduler"."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.lease_seconds = lease_seconds()
        self.holds_lease = False
        super().__init__(*args, **kwargs)
        # Save an entry's last run right after sending it: a beat taking over must not send it again.
        self.sync_every_tasks = 1

    def standby_interval(self) -> float:
        return max(0.5, min(float(self.max_interval), self.lease_seconds / 3))

    def _check_lease(self) -> bool:
        try:
            held = lease_acquire_or_renew(holder=self.holder, seconds=self.lease_seconds)
        except (DatabaseError, InterfaceError) as exc:
            if self.holds_lease:
                logger.warning("beat: cannot renew the lease (%s); dispatching nothing until it is renewed", exc)
            connection.close()
            held = False
        if held and not self.holds_lease:
            logger.info("beat: lease acquired by %s; this beat runs the schedule", self.holder)
            # Another beat may have run the schedule meanwhile: start from the database's last runs.
            self._initial_read = True
            self._heap = None
        elif self.holds_lease and not held:
            logger.warning("beat: lease lost by %s; standing by", self.holder)
        elif not held and not getattr(self, "_announced_standby", False):
            logger.info("beat: another beat holds the lease; %s stands by", self.holder)
            self._announced_standby = True
        self.holds_lease = held
        return held

    def reserve(self, entry: Any) -> Any:
        # DatabaseScheduler keeps the entry it just sent in its schedule dict: should the heap be rebuilt from that
        # dict before the next read of the database (a schedule change noticed mid-tick, as when a second beat
        # starts), the stale entry looks due again and goes out twice. Keep the advanced entry there instead,
        # as Celery's own PersistentScheduler does.
        new_entry = super().reserve(entry)
        if self._schedule is not None and entry.name in self._schedule:
            self._schedule[entry.name] = new_entry
        return new_entry

    def tick(self, *args: Any, **kwargs: Any) -> float:
        if not self._check_lease():
            return self.standby_interval()
        return min(super().tick(*args, **kwargs), self.standby_interval())

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.holds_lease:
                try:
                    lease_release(holder=self.holder)
                    logger.info("beat: lease released by %s", self.holder)
                except (DatabaseError, InterfaceError) as exc:
                    logger.warning("beat: could not release the lease (%s); it expires by itself", exc)
                self.holds_lease = False
