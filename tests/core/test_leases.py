"""oma.core.leases: one conditional UPDATE per take, renewal and release; free or expired rows only; only the holder
renews or releases; `limit` splits the rows between concurrent takers."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TypedDict

import pytest
from django.db import connection, connections
from django.db.models import F, Q
from django.db.models.functions import Now
from django.test.utils import CaptureQueriesContext

from oma.core.leases import Pk, advisory_lock, advisory_lock_is_free, lease_free, lease_release, lease_renew, lease_take
from oma.ops.models import BeatLease
from oma.stores.models import Store

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


class _Held(TypedDict):
    holder_field: str
    until_field: str


class _Kept(TypedDict):
    holder_field: None
    until_field: None
    taken_field: str


SWEEP: _Held = {"holder_field": "sweep_lease_token", "until_field": "sweep_lease_until"}


def _stores(n: int) -> list[int]:
    return [Store.objects.create(domain=f"s{i:03}.genmystore.com", access_token="t", client_secret="s").pk
            for i in range(n)]


def test_a_free_row_is_taken_once_in_one_statement_and_kept_until_it_expires() -> None:
    [pk] = _stores(1)
    rows = Store.objects.filter(pk=pk)
    with CaptureQueriesContext(connection) as queries:
        assert lease_take(rows, holder="a", ttl=MINUTE, now=T0, **SWEEP) == [pk]
    assert len([q for q in queries.captured_queries if q["sql"].startswith("UPDATE")]) == 1
    assert Store.objects.values_list("sweep_lease_token", "sweep_lease_until").get() == ("a", T0 + MINUTE)
    assert lease_take(rows, holder="b", ttl=MINUTE, now=T0 + MINUTE, **SWEEP) == []  # not past its end yet
    assert lease_take(rows, holder="b", ttl=MINUTE, now=T0 + MINUTE + timedelta(microseconds=1), **SWEEP) == [pk]
    assert Store.objects.values_list("sweep_lease_token", flat=True).get() == "b"


def test_only_the_holder_renews_or_releases() -> None:
    [pk] = _stores(1)
    rows = Store.objects.filter(pk=pk)
    assert lease_take(rows, holder="a", ttl=MINUTE, now=T0, **SWEEP)
    assert lease_renew(rows, holder="b", ttl=MINUTE, now=T0, **SWEEP) == 0
    assert lease_renew(rows, holder="a", ttl=2 * MINUTE, now=T0 + MINUTE, **SWEEP) == 1
    assert Store.objects.values_list("sweep_lease_until", flat=True).get() == T0 + 3 * MINUTE
    assert lease_release(rows, holder="b", **SWEEP) == 0
    assert lease_release(rows, holder="a", **SWEEP) == 1
    assert Store.objects.values_list("sweep_lease_token", "sweep_lease_until").get() == ("", None)
    assert lease_take(rows, holder="b", ttl=MINUTE, now=T0, **SWEEP) == [pk]  # free at once


def test_an_expired_holder_renews_until_someone_else_takes_it() -> None:
    [pk] = _stores(1)
    rows = Store.objects.filter(pk=pk)
    assert lease_take(rows, holder="a", ttl=MINUTE, now=T0, **SWEEP)
    assert lease_renew(rows, holder="a", ttl=MINUTE, now=T0 + 5 * MINUTE, **SWEEP) == 1
    assert lease_take(rows, holder="b", ttl=MINUTE, now=T0 + 10 * MINUTE, **SWEEP)
    assert lease_renew(rows, holder="a", ttl=MINUTE, now=T0 + 10 * MINUTE, **SWEEP) == 0


def test_limit_takes_the_first_free_rows_in_the_querysets_order() -> None:
    pks = _stores(6)
    rows = Store.objects.filter(pk__in=pks).order_by("-domain")
    first = lease_take(rows, holder="a", ttl=MINUTE, now=T0, limit=2, **SWEEP)
    second = lease_take(rows, holder="b", ttl=MINUTE, now=T0, limit=10, **SWEEP)
    assert sorted(first) == pks[-2:] and sorted(second) == pks[:4]
    assert lease_take(rows, holder="c", ttl=MINUTE, now=T0, limit=10, **SWEEP) == []
    assert lease_take(rows, holder="c", ttl=MINUTE, now=T0, limit=0, **SWEEP) == []
    assert lease_take(Store.objects.filter(pk__in=[]), holder="c", ttl=MINUTE, **SWEEP) == []
    assert lease_take(Store.objects.filter(pk__in=[]), holder="c", ttl=MINUTE, limit=3, **SWEEP) == []
    assert lease_release(Store.objects.all(), holder="a", **SWEEP) == 2


def test_a_lease_kept_as_the_moment_it_was_taken_and_the_database_clock() -> None:
    rows = BeatLease.objects.filter(name="x")
    BeatLease.objects.create(name="x")
    kept: _Kept = {"holder_field": None, "until_field": None, "taken_field": "acquired_at"}
    assert lease_take(rows, ttl=MINUTE, **kept) == ["x"]  # the database's clock
    assert lease_take(rows, ttl=MINUTE, **kept) == []
    rows.update(acquired_at=Now() - 2 * MINUTE)
    assert rows.filter(lease_free(ttl=MINUTE, until_field=None, taken_field="acquired_at")).exists()
    assert lease_take(rows, ttl=MINUTE, **kept) == ["x"]
    assert lease_release(rows, **kept) == 1 and rows.get().acquired_at is None


def test_also_free_and_values_move_with_the_take() -> None:
    BeatLease.objects.create(name="x", holder="a", expires_at=T0 + MINUTE)
    rows = BeatLease.objects.filter(name="x")
    assert lease_take(rows, holder="b", ttl=MINUTE, now=T0) == []
    taken = lease_take(rows, holder="b", ttl=MINUTE, now=T0, also_free=Q(holder="a"),
                       values={"renewed_at": T0, "acquired_at": F("renewed_at")})
    assert taken == ["x"]
    assert rows.values_list("holder", "renewed_at", "expires_at").get() == ("b", T0, T0 + MINUTE)
    with pytest.raises(ValueError, match="own columns"):
        lease_take(rows, holder="c", ttl=MINUTE, values={"holder": "d"})
    with pytest.raises(ValueError, match="needs a holder"):  # "" is how a free lease looks
        lease_renew(rows, holder="", ttl=MINUTE)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="threads share no in-memory SQLite database")
@pytest.mark.django_db(transaction=True)
def test_concurrent_takers_split_the_rows_between_them() -> None:
    pks = _stores(40)
    rows = Store.objects.filter(pk__in=pks).order_by("pk")
    taken: dict[str, list[Pk]] = {}
    start = threading.Barrier(8)

    def take(holder: str) -> None:
        try:
            start.wait()
            got: list[Pk] = []
            while batch := lease_take(rows, holder=holder, ttl=MINUTE, now=T0, limit=3, **SWEEP):
                got += batch
            taken[holder] = got
        finally:
            connections.close_all()

    threads = [threading.Thread(target=take, args=(f"h{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [int(pk) for got in taken.values() for pk in got]
    assert sorted(every) == pks  # each row once, none left over
    for holder, got in taken.items():
        assert set(Store.objects.filter(sweep_lease_token=holder).values_list("pk", flat=True)) == set(got)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL advisory locks")
@pytest.mark.django_db(transaction=True)
def test_an_advisory_lock_is_held_by_one_session_and_freed_with_it() -> None:
    from django.db import connection as mine

    other = connections.create_connection("default")
    connections["other"] = other  # a second session (an advisory lock is re-entrant within one)
    try:
        with advisory_lock(4711) as held:
            assert held and not advisory_lock_is_free(4711, using="other")
        assert advisory_lock_is_free(4711, using="other")
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(4711)")
        with advisory_lock(4711) as held:
            assert not held
        other.close()  # the holder's session ends: PostgreSQL lets go of its lock
        # The server ends the closed session's backend on its own schedule (a loaded machine: a moment later).
        deadline = time.monotonic() + 10
        while not advisory_lock_is_free(4711) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert advisory_lock_is_free(4711)
        with advisory_lock(4711) as held:
            assert held
    finally:
        other.close()
        mine.close()
        del connections["other"]
