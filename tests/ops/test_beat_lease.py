"""The beat lease: one holder; renewals extend it; another beat takes it only once it expired or was released."""

from __future__ import annotations

import pytest
from django.db.models.functions import Now

from oma.ops.beat import LeasedDatabaseScheduler, lease_acquire_or_renew, lease_release
from oma.ops.models import BeatLease

pytestmark = pytest.mark.django_db


def test_one_holder_at_a_time() -> None:
    assert lease_acquire_or_renew(holder="a", seconds=30)
    assert not lease_acquire_or_renew(holder="b", seconds=30)
    first = BeatLease.objects.get()
    assert lease_acquire_or_renew(holder="a", seconds=30)  # renewal
    renewed = BeatLease.objects.get()
    assert renewed.holder == "a" and renewed.acquired_at == first.acquired_at
    assert renewed.expires_at >= first.expires_at


def test_an_expired_lease_is_taken_over() -> None:
    assert lease_acquire_or_renew(holder="a", seconds=30)
    BeatLease.objects.update(expires_at=Now())
    assert lease_acquire_or_renew(holder="b", seconds=30)
    assert not lease_acquire_or_renew(holder="a", seconds=30)
    assert BeatLease.objects.get().holder == "b"


def test_a_released_lease_is_free_at_once() -> None:
    assert lease_acquire_or_renew(holder="a", seconds=30)
    assert not lease_release(holder="b")
    assert lease_release(holder="a")
    assert lease_acquire_or_renew(holder="b", seconds=30)


@pytest.mark.django_db(transaction=True)  # django-celery-beat commits and closes connections itself
def test_a_standby_scheduler_dispatches_nothing(monkeypatch) -> None:
    from oma.celery import app

    assert lease_acquire_or_renew(holder="someone else", seconds=30)
    scheduler = LeasedDatabaseScheduler(app=app, lazy=True)
    sent: list[str] = []
    monkeypatch.setattr(scheduler, "apply_async", lambda entry, **kw: sent.append(entry.name))
    assert scheduler.tick() == scheduler.standby_interval()
    assert not scheduler.holds_lease and sent == []
    BeatLease.objects.update(expires_at=Now())
    scheduler.tick()
    assert scheduler.holds_lease
    assert BeatLease.objects.get().holder == scheduler.holder
    scheduler.close()
    assert BeatLease.objects.get().holder == ""


@pytest.mark.django_db(transaction=True)
def test_an_entry_is_not_sent_twice_when_the_heap_is_rebuilt_right_after_sending_it(monkeypatch) -> None:
    """django-celery-beat flags its heap for a rebuild when it notices a schedule change (a second beat starting
    writes its default entries); a rebuild from entries that were not advanced sent the entry again at once."""
    from datetime import timedelta

    from django.utils import timezone
    from django_celery_beat.models import PeriodicTask

    from oma.celery import app
    from tests.faults.conftest import fast_schedule

    fast_schedule(**{"ops.heartbeat": 60})
    PeriodicTask.objects.filter(task="ops.heartbeat").update(last_run_at=timezone.now() - timedelta(minutes=2))
    scheduler = LeasedDatabaseScheduler(app=app, lazy=True)
    sent: list[str] = []
    monkeypatch.setattr(scheduler, "apply_async", lambda entry, **kw: sent.append(entry.task))
    scheduler.tick()
    assert sent == ["ops.heartbeat"]
    scheduler._heap_invalidated = True  # what DatabaseScheduler sets when it re-reads a changed schedule
    for _ in range(3):
        scheduler.tick()
    assert sent == ["ops.heartbeat"]
    scheduler.close()
