"""The one bulk writer: many rows in one statement, sent as one JSON parameter (order sweeps, webhook intake,
tracking events and polls, unified order statuses).

`rows_insert` inserts (optionally skipping conflicts, or upserting) and can return columns; `rows_update` writes
some columns of many rows, each row found by its primary key (`objects_update`: the same from model instances).
`AnyOf` is the read side: a filter on many values (a batch's thousand keys) sent as one parameter.

A sweep writes a page of 250 orders, their lines and their fulfillments; the webhook intake writes the deliveries
that arrived together. Through Django's bulk_create each value of each row is prepared by its field in Python (a
model instance per row, several calls per value), which cost more than fetching and parsing the page. Here the
rows are plain dicts keyed by column; json.dumps (C) encodes the batch, and the database reads it back into typed
columns itself:

- PostgreSQL: `jsonb_populate_recordset(NULL::<table>, %s::jsonb)`, which converts each value with the column's
  type (sent with server-side binding: megabytes of JSON are not quoted into the statement by the client);
- SQLite (the embedded default): `json_each(%s)` with `json_extract` per column.

The statement text depends only on the table and the columns, so it is built once. Values: str, int, bool, None,
Decimal (sent as its exact text), datetime (aware; sent in the form Django stores on that database), date, and dict/list
for JSON columns, or JsonText for a JSON document already encoded. Columns a row does not name get their field's
default (auto_now fields: now).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from itertools import chain
from operator import methodcaller
from typing import Any, cast

from django.db import connection, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from django.db.models import Field, Lookup
from django.db.models.sql.compiler import SQLCompiler
from django.utils import timezone

Row = Mapping[str, object]


class JsonText(str):
    """A value already encoded as JSON (e.g. a document whose canonical text was just computed for a hash): it is
    put into the batch as it is, not encoded a second time."""

    __slots__ = ()


@lru_cache(maxsize=64)
def _column_fields(model: type[models.Model]) -> dict[str, Field[Any, Any]]:
    # A concrete field is one with a column: the test only narrows the type.
    return {field.column: field for field in model._meta.concrete_fields if field.column is not None}


@lru_cache(maxsize=64)
def _statement(
    vendor: str,
    model: type[models.Model],
    columns: tuple[str, ...],
    conflict: tuple[str, ...] | None,
    update: tuple[str, ...],
    returning: tuple[str, ...],
) -> str:
    quote = connection.ops.quote_name
    fields = _column_fields(model)
    unknown = [column for column in (*columns, *(conflict or ()), *update, *returning) if column not in fields]
    if unknown:
        raise ValueError(f"{model.__name__} has no column {', '.join(unknown)}")
    table = quote(model._meta.db_table)
    if vendor == "postgresql":
        values = ", ".join(f"r.{quote(column)}" for column in columns)
        source = f"jsonb_populate_recordset(NULL::{table}, %s::jsonb) AS r"
    else:
        values = ", ".join(f"json_extract(r.value, '$.{column}')" for column in columns)
        source = "json_each(%s) AS r WHERE true"  # SQLite: an upsert's SELECT needs a WHERE (parsing ambiguity)
    # Identifiers come from the model's metadata; every value is in the one parameter.
    sql = f"INSERT INTO {table} ({', '.join(quote(c) for c in columns)}) SELECT {values} FROM {source}"  # noqa: S608
    if conflict == ():  # skip a row that any unique constraint refuses
        if update:
            raise ValueError("an upsert needs the columns of its unique constraint")
        sql += " ON CONFLICT DO NOTHING"
    elif conflict is not None:
        target = ", ".join(quote(column) for column in conflict)
        if update:
            assignments = ", ".join(f"{quote(column)} = excluded.{quote(column)}" for column in update)
            sql += f" ON CONFLICT ({target}) DO UPDATE SET {assignments}"
        else:
            sql += f" ON CONFLICT ({target}) DO NOTHING"
    if returning:
        sql += f" RETURNING {', '.join(quote(column) for column in returning)}"
    return sql


@lru_cache(maxsize=4)
def _encoder(vendor: str) -> json.JSONEncoder:
    if vendor == "postgresql":

        def value(item: object) -> object:
            if isinstance(item, Decimal):
                return str(item)
            if isinstance(item, datetime | date):
                return item.isoformat()
            raise TypeError(f"cannot send {type(item).__name__} as a column value")

    else:
        adapt_datetime = connection.ops.adapt_datetimefield_value

        def value(item: object) -> object:
            if isinstance(item, Decimal):
                return str(item)
            if isinstance(item, datetime):
                return adapt_datetime(item)  # the text Django stores and compares on this database
            if isinstance(item, date):
                return item.isoformat()
            raise TypeError(f"cannot send {type(item).__name__} as a column value")

    return json.JSONEncoder(default=value, separators=(",", ":"), ensure_ascii=False)


@lru_cache(maxsize=64)
def _default_plan(
    model: type[models.Model], given: frozenset[str]
) -> tuple[dict[str, object], tuple[tuple[str, Field[Any, Any] | None], ...]]:
    """For the columns the rows do not name: the fixed defaults, and those computed per write (auto_now fields,
    given as None: now; fields with a callable default)."""
    fixed: dict[str, object] = {}
    computed: list[tuple[str, Field[Any, Any] | None]] = []
    for column, field in _column_fields(model).items():
        if column in given or field.primary_key:
            continue
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            computed.append((column, None))
        elif field.has_default() and callable(field.default):
            computed.append((column, field))
        else:  # only ever encoded, never changed: one value serves every row
            fixed[column] = field.get_default() if field.has_default() or not field.null else None
    return fixed, tuple(computed)


def _defaults(model: type[models.Model], given: frozenset[str]) -> dict[str, object]:
    """The values of the columns the rows do not name: their fields' defaults (auto_now: now)."""
    fixed, computed = _default_plan(model, given)
    if not computed:
        return fixed
    now = timezone.now()
    return {**fixed, **{column: now if field is None else field.get_default() for column, field in computed}}


def rows_insert(
    model: type[models.Model],
    rows: Sequence[Row],
    *,
    conflict: Sequence[str] | None = None,
    update: Sequence[str] = (),
    returning: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """INSERT these rows (dicts keyed by column, all with the same keys) in one statement.

    `conflict` (columns of a unique constraint) with `update` makes it an upsert that sets those columns from the
    new row; with no `update`, conflicting rows are skipped; an empty `conflict` skips rows that any unique
    constraint refuses. Returns the `returning` columns of the rows written,
    in no particular order. Runs on the current connection, inside the caller's transaction.
    """
    if not rows:
        return []
    vendor = connection.vendor
    given = frozenset(rows[0])
    defaults = _defaults(model, given)
    columns = tuple(sorted(given | set(defaults)))
    if defaults:
        rows = [{**defaults, **row} for row in rows]
    sql = _statement(vendor, model, columns, tuple(conflict) if conflict is not None else None, tuple(update),
                     tuple(returning))
    with _cursor() as cursor:
        cursor.execute(sql, [_encode(_encoder(vendor), rows)])
        return cursor.fetchall() if returning else []


def rows_update(
    model: type[models.Model], rows: Sequence[Row], *, lock_order: Sequence[str] = ()
) -> int:
    """UPDATE many rows in one statement: each row (a dict keyed by column, all with the same keys) names its
    primary key column and the columns to set; rows missing from the table are skipped. Returns the rows written.

    `lock_order` (PostgreSQL): lock the rows first, ordered by these columns as Python sorts them (text in code
    point order), so two writers that lock the same rows in the same order wait for each other instead of
    deadlocking. Runs on the current connection, inside the caller's transaction.
    """
    if not rows:
        return 0
    vendor = connection.vendor
    pk_column = _pk_column(model)
    columns = tuple(sorted(set(rows[0]) - {pk_column}))
    if pk_column not in rows[0] or not columns:
        raise ValueError(f"each row names {model.__name__}'s {pk_column} and at least one column to set")
    sql = _update_statement(vendor, model, columns, tuple(lock_order))
    with _cursor() as cursor:
        cursor.execute(sql, [_encode(_encoder(vendor), rows)])
        written: int = cursor.rowcount
        return written


def objects_update(objects: Sequence[models.Model], field_names: Sequence[str]) -> int:
    """rows_update for model instances (all of one model): write these fields' current values of each."""
    if not objects:
        return 0
    model = type(objects[0])
    pk_column = _pk_column(model)
    fields = [model._meta.get_field(name) for name in field_names]
    # cast: a field with no column (a many-to-many) fails in the database, as it always did
    attnames = [(cast(str, field.column), field.attname) for field in fields if isinstance(field, Field)]
    rows = [
        {pk_column: obj.pk, **{column: getattr(obj, attname) for column, attname in attnames}} for obj in objects
    ]
    return rows_update(model, rows)


def _pk_column(model: type[models.Model]) -> str:
    pk = model._meta.pk
    assert pk is not None and pk.column is not None
    return pk.column


@lru_cache(maxsize=64)
def _update_statement(
    vendor: str, model: type[models.Model], columns: tuple[str, ...], lock_order: tuple[str, ...]
) -> str:
    quote = connection.ops.quote_name
    fields = _column_fields(model)
    unknown = [column for column in (*columns, *lock_order) if column not in fields]
    if unknown:
        raise ValueError(f"{model.__name__} has no column {', '.join(unknown)}")
    pk_column = _pk_column(model)
    table, key = quote(model._meta.db_table), quote(pk_column)
    # Identifiers come from the model's metadata; every value is in the one parameter.
    if vendor != "postgresql":  # SQLite (3.33+: UPDATE ... FROM); it locks the whole database anyway
        assignments = ", ".join(f"{quote(column)} = json_extract(v.value, '$.{column}')" for column in columns)
        return (
            f"UPDATE {table} SET {assignments} FROM json_each(%s) AS v "  # noqa: S608
            f"WHERE {table}.{key} = json_extract(v.value, '$.{pk_column}')"
        )
    assignments = ", ".join(f"{quote(column)} = v.{quote(column)}" for column in columns)
    source = f"jsonb_populate_recordset(NULL::{table}, %s::jsonb)"
    if not lock_order:
        return f"UPDATE {table} AS t SET {assignments} FROM {source} AS v WHERE t.{key} = v.{key}"  # noqa: S608
    order = ", ".join(
        quote(column) + (' COLLATE "C"' if fields[column].get_internal_type() in _TEXT_TYPES else "")
        for column in lock_order
    )
    selected = ", ".join(quote(column) for column in (pk_column, *columns))
    return (
        f"WITH v AS MATERIALIZED (SELECT {selected} FROM {source}), "  # noqa: S608
        f"locked AS MATERIALIZED (SELECT {key} FROM {table} WHERE {key} IN (SELECT {key} FROM v) "
        f"ORDER BY {order} FOR UPDATE) "
        f"UPDATE {table} AS t SET {assignments} FROM v "
        f"WHERE t.{key} = v.{key} AND t.{key} IN (SELECT {key} FROM locked)"
    )


_TEXT_TYPES = frozenset({"CharField", "TextField", "SlugField", "EmailField", "URLField"})


def _cursor() -> CursorWrapper:
    """Django's cursor (its execute wrappers, query log and error types), on PostgreSQL with server-side binding:
    the batch, up to megabytes of JSON, travels as a parameter instead of being quoted into the statement."""
    if connection.vendor != "postgresql":
        return connection.cursor()
    import psycopg  # why: only the PostgreSQL path needs the driver; SQLite runs never load it

    connection.ensure_connection()
    return CursorWrapper(psycopg.Cursor(connection.connection), connection)


_values_of = methodcaller("values")


def _encode(encoder: json.JSONEncoder, rows: Sequence[Row]) -> str:
    """The rows as one JSON array; JsonText values are spliced in as they are."""
    # The check runs in C (map, chain, set): a Python loop over every value cost as much as encoding them.
    if JsonText not in set(map(type, chain.from_iterable(map(_values_of, rows)))):
        return encoder.encode(rows)
    parts = []
    for row in rows:
        documents = "".join(f',"{key}":{value}' for key, value in row.items() if isinstance(value, JsonText))
        plain = encoder.encode({key: value for key, value in row.items() if not isinstance(value, JsonText)})
        parts.append(plain[:-1] + documents + "}" if plain != "{}" else "{" + documents[1:] + "}")
    return "[" + ",".join(parts) + "]"


class AnyOf(Lookup):
    """`Order.objects.filter(AnyOf(F("order_id"), ids))`: the `__in` of a batch's thousand values as one parameter.

    `order_id__in=ids` puts one placeholder per value into the statement, and psycopg's client-side binding quotes
    each into the text: about 10 ms of Python for a thousand, more than the query itself. Here the values travel as
    one array (PostgreSQL: `= ANY(%s)`) or one JSON document (SQLite: `IN (SELECT value FROM json_each(%s))`).
    Values as the column holds them, of a plain type (str, int): what keys are.
    """

    lookup_name = "any_of"
    prepare_rhs = False

    def get_prep_lookup(self) -> list[Any]:
        return list(self.rhs)

    def as_sql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> tuple[str, tuple[Any, ...]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        values = list(self.rhs)
        if not values:
            return "1 = 0", tuple(lhs_params)  # an empty `__in` matches nothing, as Django's does
        if connection.vendor == "postgresql":
            # Ids are cast to the column's integer type: psycopg sends small ints as smallint[], and only an array
            # of the column's type gets PostgreSQL's hashed `= ANY` (PostgreSQL 14+). Without it, a sequential scan
            # (the plan whenever statistics lag behind a table an import is filling) compares every row with every
            # value: 39 ms instead of 4 ms for 500 orders' shipments among 20,000. Strings go as text[], hashed
            # already (never cast to varchar(n)[]: that would cut longer values down to a length that matches).
            db_type = self.lhs.output_field.db_type(connection)
            ids = db_type and all(type(value) is int for value in values)
            return f"{lhs} = ANY(%s{f'::{db_type}[]' if ids else ''})", (*lhs_params, values)
        # The column comes from the compiler; every value is in the one parameter.
        return f"{lhs} IN (SELECT value FROM json_each(%s))", (*lhs_params, json.dumps(values))  # noqa: S608
