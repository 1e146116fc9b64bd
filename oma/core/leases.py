"""Leases: "this worker has these rows until then", taken, renewed and released with one conditional UPDATE each.

A lease lives in a model's own columns: a holder (a token or a name, `holder_field`) and the end of the lease
(`until_field`), or, for a lease kept as the moment it was taken (`taken_field`), that moment plus `ttl`.
A row is free when its end is empty or past; `lease_take` takes free rows only, `lease_renew` and `lease_release`
touch only rows their holder still has. Every call is a single UPDATE whose WHERE carries the condition, so of two
callers racing for a row exactly one gets it, on PostgreSQL and on SQLite alike; nothing is read first.

`now` is the clock the lease is measured by: the caller's (a datetime, as a poll that plans with one `now` does) or,
when None, the database's, the one clock that every host agrees on (beats on two machines).

The users, each with its own columns:

| lease                       | holder              | end / taken at                 | take                        |
|-----------------------------|---------------------|--------------------------------|-----------------------------|
| webhook processing claim    | `claim_token`       | `lease_expires_at`             | by id, with the state moves |
| tracking poll claim         | `poll_claim_token`  | `poll_claimed_until`           | `limit` due ones, SKIP LOCKED |
| order sweep (per store)     | `sweep_lease_token` | `sweep_lease_until`            | one row, renewed per page   |
| channel poll                | (none)              | `poll_lease_until`             | one row                     |
| queued CSV import           | (none)              | taken at `claimed_at`          | one row, never renewed      |
| push on SQLite              | (none)              | taken at `last_attempt_at`     | one row, while in progress  |
| beat                        | `holder`            | `expires_at` (database clock)  | one named row               |

A push on PostgreSQL is held by a session advisory lock instead (`advisory_lock`): PostgreSQL drops it the moment
the holder's connection dies, so a redelivered task takes over at once, which no lease that must run out can do.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import TypeAlias, TypeVar, cast

from django.core.exceptions import EmptyResultSet
from django.db import connections, models, transaction
from django.db.models import DateTimeField, ExpressionWrapper, Q, QuerySet, Value
from django.db.models.expressions import Combinable
from django.db.models.functions import Now
from django.db.models.sql import UpdateQuery

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=models.Model)
Pk: TypeAlias = int | str
# What a lease column is compared with or set to: the caller's clock, or an expression of the database's.
_Moment: TypeAlias = datetime | Combinable


def _moment(now: datetime | None, offset: timedelta = timedelta(0)) -> _Moment:
    if now is not None:
        return now + offset
    if not offset:
        return Now()
    return ExpressionWrapper(Now() + Value(offset), output_field=DateTimeField())


def lease_free(
    *,
    now: datetime | None = None,
    ttl: timedelta | None = None,
    until_field: str | None = "expires_at",
    taken_field: str | None = None,
) -> Q:
    """The rows whose lease is free: its end (`until_field`) is empty or past, or, for a lease kept as the moment
    it was taken (`until_field=None`), that moment is empty or more than `ttl` ago."""
    if until_field is not None:
        return Q(**{f"{until_field}__isnull": True}) | Q(**{f"{until_field}__lt": _moment(now)})
    if taken_field is None or ttl is None:
        raise ValueError("a lease needs an until_field, or a taken_field and its ttl")
    return Q(**{f"{taken_field}__isnull": True}) | Q(**{f"{taken_field}__lt": _moment(now, -ttl)})


def lease_take(
    queryset: QuerySet[M],
    *,
    holder: str = "",
    ttl: timedelta,
    now: datetime | None = None,
    limit: int | None = None,
    holder_field: str | None = "holder",
    until_field: str | None = "expires_at",
    taken_field: str | None = None,
    also_free: Q | None = None,
    values: Mapping[str, object] | None = None,
) -> list[Pk]:
    """Take the lease of the rows of `queryset` that are free (see `lease_free`; `also_free`: rows free whatever
    their lease columns say) for `holder` until `now + ttl`; the primary keys taken (empty: none was free).

    One conditional UPDATE ... RETURNING sets the holder, the end (or the taken moment) and `values` (columns the
    caller moves along with the lease: a state, an attempt count; expressions allowed). With `limit`, the first
    `limit` free rows in the queryset's order are taken, skipping rows another transaction has locked (PostgreSQL's
    SKIP LOCKED), so concurrent takers split the rows between them instead of queueing behind each other.
    """
    free = lease_free(now=now, ttl=ttl, until_field=until_field, taken_field=taken_field)
    if also_free is not None:
        free |= also_free
    update: dict[str, object] = {}
    if holder_field is not None:
        update[holder_field] = _named(holder)
    if until_field is not None:
        update[until_field] = _moment(now, ttl)
    if taken_field is not None:
        update[taken_field] = _moment(now)
    _check_values(values, update)
    update.update(values or {})
    if limit is None:
        return _update_returning_pks(queryset.filter(free), update)
    if limit <= 0:
        return []
    candidates = queryset.filter(free).values("pk")[:limit]
    if connections[queryset.db].features.has_select_for_update_skip_locked:
        candidates = candidates.select_for_update(skip_locked=True, of=("self",))
    # The outer condition repeats `free`: on a database without SKIP LOCKED it is what keeps two takers apart.
    target = queryset.model._base_manager.using(queryset.db).filter(pk__in=candidates).filter(free)
    return _update_returning_pks(target, update)


def lease_renew(
    queryset: QuerySet[M],
    *,
    holder: str,
    ttl: timedelta,
    now: datetime | None = None,
    holder_field: str = "holder",
    until_field: str = "expires_at",
    values: Mapping[str, object] | None = None,
) -> int:
    """Extend `holder`'s lease of these rows to `now + ttl` (and set `values`); the number of rows it still held
    (0: the lease was taken over by another holder after it ran out, or released)."""
    update: dict[str, object] = {until_field: _moment(now, ttl)}
    _check_values(values, {holder_field: holder, **update})
    update.update(values or {})
    return queryset.filter(**{holder_field: _named(holder)}).update(**update)


def lease_release(
    queryset: QuerySet[M],
    *,
    holder: str = "",
    holder_field: str | None = "holder",
    until_field: str | None = "expires_at",
    taken_field: str | None = None,
    values: Mapping[str, object] | None = None,
) -> int:
    """Give `holder`'s lease of these rows back at once (empty holder and end): the number of rows released.
    A lease without a holder column (`holder_field=None`) is released by the one caller that took it."""
    update: dict[str, object] = {}
    if holder_field is not None:
        queryset = queryset.filter(**{holder_field: _named(holder)})
        update[holder_field] = ""
    for field in (until_field, taken_field):
        if field is not None:
            update[field] = None
    _check_values(values, update)
    update.update(values or {})
    return queryset.update(**update)


def _named(holder: str) -> str:
    if not holder:  # an empty holder column is how a free lease looks: it names nobody
        raise ValueError("a lease with a holder column needs a holder")
    return holder


def _check_values(values: Mapping[str, object] | None, lease_columns: Mapping[str, object]) -> None:
    clash = set(values or {}) & set(lease_columns)
    if clash:
        raise ValueError(f"values may not set the lease's own columns: {sorted(clash)}")


def _update_returning_pks(queryset: QuerySet[M], update: Mapping[str, object]) -> list[Pk]:
    """queryset.update(**update), returning the primary keys of the rows it changed (PostgreSQL, SQLite >= 3.35)."""
    query = cast(UpdateQuery, queryset.query.chain(UpdateQuery))  # chain(klass) returns a klass
    query.add_update_values(dict(update))
    query.annotations = {}
    if query.get_related_updates():  # an UpdateQuery per parent table that `update` touches
        raise ValueError("a lease lives in the model's own table, not in a parent's")
    connection = connections[queryset.db]
    pk = queryset.model._meta.pk
    assert pk is not None and pk.column is not None
    returning = connection.ops.quote_name(pk.column)
    # atomic: a SELECT ... FOR UPDATE inside the statement needs a transaction, even a one-statement one.
    with transaction.atomic(using=queryset.db, savepoint=False):
        try:
            sql, params = query.get_compiler(queryset.db).as_sql()
        except EmptyResultSet:  # a filter that matches nothing (pk__in=[]), as QuerySet.update() knows too
            return []
        if not sql:
            return []
        with connection.cursor() as cursor:
            cursor.execute(f"{sql} RETURNING {returning}", params)
            return [row[0] for row in cursor.fetchall()]


# --- PostgreSQL session advisory locks --------------------------------------------------------------------------


@contextlib.contextmanager
def advisory_lock(key: int, *, using: str = "default") -> Iterator[bool]:
    """Hold PostgreSQL's session advisory lock `key` (a signed 64-bit number) while the block runs; yields False,
    without waiting, when another session holds it. PostgreSQL releases it itself when the session ends."""
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        row = cursor.fetchone()
    if not (row and row[0]):
        yield False
        return
    try:
        yield True
    finally:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
        except Exception:  # a broken connection: closing it releases the lock
            logger.warning("could not release advisory lock %s; closing the connection", key)
            connection.close()


def advisory_lock_is_free(key: int, *, using: str = "default") -> bool:
    """True when no session holds the advisory lock `key` (taken and let go at once to find out)."""
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        row = cursor.fetchone()
        if not (row and row[0]):
            return False
        cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
    return True
