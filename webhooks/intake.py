"""The intake INSERT of every webhook delivery, with group commit across a web process's request threads.

Each delivery must be committed before it is answered, and one INSERT plus one commit per delivery costs the
database more than everything else a delivery does. So the request threads of one process share their writes:
a thread queues its row and, unless another thread is writing, becomes the writer: it writes every row queued so
far in one multi-row `INSERT ... ON CONFLICT (store, dedupe_key) DO NOTHING RETURNING` and commits, and the
threads whose rows it wrote are woken with their answers. Nobody waits for a timer: when deliveries come one at a
time each is written at once, alone; when they come together, those that arrive during a write are written
together by the next. A row is never answered before the statement that wrote it has committed. When a statement
fails, its rows are written again one by one, so an error reaches only the thread whose row the database refuses
(a store erased meanwhile, say), or every thread when the database itself is failing.

A caller inside a transaction of its own writes alone, in that transaction (its row commits with the rest of it).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.db.models import Field

from webhooks.models import WebhookDelivery

# The fields a received delivery sets; every other column gets its field's default.
RECEIVED_FIELDS = frozenset({
    "store", "shop_domain", "topic", "webhook_id", "dedupe_key", "resource_id", "body", "headers", "received_at",
    "state", "next_dispatch_at", "outcome",
})
# Rows per statement (a process has far fewer request threads than this; it bounds the statement's size).
MAX_BATCH = 100

# One received delivery: RECEIVED_FIELDS -> value ("store" is the store's id, "headers" a dict, times datetimes).
ReceivedRow = Mapping[str, Any]


def _sql_literal(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, str) and not value:
        return "''"
    if type(value) is int:
        return str(value)
    raise ImproperlyConfigured(f"webhook intake: no SQL literal for the default {value!r}")


@lru_cache(maxsize=1)
def _columns() -> tuple[Field, ...]:
    fields = tuple(field for field in WebhookDelivery._meta.concrete_fields if not field.primary_key)
    if {field.name for field in fields} & RECEIVED_FIELDS != RECEIVED_FIELDS:
        raise ImproperlyConfigured("webhook intake: RECEIVED_FIELDS names a field the model does not have")
    return fields


@lru_cache(maxsize=1)
def _column_of() -> dict[str, str]:
    return {field.name: field.column for field in _columns() if field.name in RECEIVED_FIELDS}


def _value_sql(field: Field, received: Callable[[Field], str]) -> str:
    """A column's value in the statement: the received value, or the field's default as a literal (a new field
    whose default cannot be one fails here, loudly, rather than being left unset)."""
    return received(field) if field.name in RECEIVED_FIELDS else _sql_literal(field.get_default())


def _conflict_and_returning() -> str:
    meta = WebhookDelivery._meta
    quote = connection.ops.quote_name
    conflict = ", ".join(quote(meta.get_field(name).column) for name in ("store", "dedupe_key"))
    returning = ", ".join(quote(meta.get_field(name).column) for name in ("id", "store", "dedupe_key"))
    return f" ON CONFLICT ({conflict}) DO NOTHING RETURNING {returning}"


@lru_cache(maxsize=1)
def _recordset_sql() -> str:
    """PostgreSQL: every row of the batch in one JSON parameter, read with json_populate_recordset.

    One statement text and one parameter whatever the number of rows: nothing to parse or adapt per row in
    Python (json.dumps does it in C), and the body travels as a JSON string, not quoted into the statement.
    """
    quote = connection.ops.quote_name
    table = quote(WebhookDelivery._meta.db_table)
    fields = _columns()
    columns = ", ".join(quote(field.column) for field in fields)
    values = ", ".join(_value_sql(field, lambda f: f"r.{quote(f.column)}") for field in fields)
    # Identifiers and literals come from the model's metadata; every received value is in the parameter.
    return (
        f"INSERT INTO {table} ({columns}) SELECT {values} "  # noqa: S608
        f"FROM json_populate_recordset(NULL::{table}, %s) AS r" + _conflict_and_returning()
    )


@lru_cache(maxsize=MAX_BATCH + 1)
def _values_sql(vendor: str, rows: int) -> str:
    """Other databases (SQLite): INSERT ... VALUES with one placeholder per received value."""
    quote = connection.ops.quote_name
    fields = _columns()
    columns = ", ".join(quote(field.column) for field in fields)
    row = "(" + ", ".join(_value_sql(field, lambda f: "%s") for field in fields) + ")"
    return (
        f"INSERT INTO {quote(WebhookDelivery._meta.db_table)} ({columns}) VALUES "  # noqa: S608
        + ", ".join([row] * rows)
        + _conflict_and_returning()
    )


def _json_value(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"webhook intake: cannot send {type(value).__name__} as JSON")


def _values_params(rows: Sequence[ReceivedRow]) -> list[object]:
    adapt_time = connection.ops.adapt_datetimefield_value
    params: list[object] = []
    for row in rows:
        for field in _columns():
            if field.name in RECEIVED_FIELDS:
                value = row[field.name]
                if field.name == "headers":
                    value = json.dumps(value, separators=(",", ":"))
                elif isinstance(value, datetime):
                    value = adapt_time(value)
                params.append(value)
    return params


def _insert(rows: Sequence[ReceivedRow]) -> list[int | None]:
    """One INSERT of these rows: each row's new id, or None for a row whose dedupe key exists already (in the
    table, or earlier in `rows`: the first of two copies is the one inserted)."""
    connection.ensure_connection()
    with connection.wrap_database_errors:
        if connection.vendor == "postgresql":
            import psycopg

            column_of = _column_of()
            records = [{column_of[name]: value for name, value in row.items()} for row in rows]
            with psycopg.Cursor(connection.connection) as cursor:
                cursor.execute(_recordset_sql(), [json.dumps(records, default=_json_value, separators=(",", ":"))])
                returned = cursor.fetchall()
        else:
            with connection.cursor() as cursor:
                cursor.execute(_values_sql(connection.vendor, len(rows)), _values_params(rows))
                returned = cursor.fetchall()
    ids = {(store_id, dedupe_key): delivery_id for delivery_id, store_id, dedupe_key in returned}
    return [ids.pop((row["store"], row["dedupe_key"]), None) for row in rows]


@dataclass(eq=False, slots=True)
class _Queued:
    row: ReceivedRow
    done: bool = False
    delivery_id: int | None = None
    error: BaseException | None = None


class GroupInserter:
    """Writes the rows that request threads queue, many to a statement (see the module's docstring)."""

    def __init__(self) -> None:
        self._queue: list[_Queued] = []
        self._changed = threading.Condition()
        self._writing = False  # a thread is writing a statement (guarded by _changed)

    def insert(self, row: ReceivedRow) -> int | None:
        if connection.in_atomic_block:
            return _insert([row])[0]
        queued = _Queued(row)
        with self._changed:
            self._queue.append(queued)
            # Wait while another thread writes; it may be writing our row, or the next writer will take it.
            while self._writing and not queued.done:
                self._changed.wait()
            if not queued.done:
                self._writing = True
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        if not queued.done:
            try:
                self._write(batch)
            finally:
                with self._changed:
                    self._writing = False
                    self._changed.notify_all()  # the written return; of the others, one writes next
        if queued.error is not None:
            raise queued.error
        return queued.delivery_id

    @staticmethod
    def _write(batch: list[_Queued]) -> None:
        outcomes: list[int | BaseException | None]
        try:
            outcomes = list(_insert([queued.row for queued in batch]))
        except Exception as error:
            if len(batch) == 1:
                outcomes = [error]
            else:  # one row the database refuses (a store erased meanwhile, say) must not fail the others
                outcomes = []
                for queued in batch:
                    try:
                        outcomes.append(_insert([queued.row])[0])
                    except Exception as row_error:
                        outcomes.append(row_error)
        for queued, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                queued.error = outcome
            else:
                queued.delivery_id = outcome
            queued.done = True


group_inserter = GroupInserter()


def delivery_insert_unless_duplicate(row: ReceivedRow) -> int | None:
    """Insert one received delivery and commit it: its new id, or None when its
    dedupe key exists already. Concurrent calls in one process share statements and commits."""
    return group_inserter.insert(row)
