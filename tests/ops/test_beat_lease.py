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
