"""Faster text dumping of the arrays Django's PostgreSQL bulk inserts send (INSERT ... SELECT * FROM UNNEST(...)).

Django 5.2 sends each column of a bulk insert as one array parameter. psycopg (3.3) dumps an array in text form by
quoting the elements that need it and escaping `"` and `\\` inside them with `re.sub` and a template, which Python
3.11 expands in Python once per match. The order mirror stores each order's raw JSON: about 200 quotes an order,
so that escaping was a third of a sweep's CPU time. This dumper writes the same array literal but quotes every
element and escapes with `bytes.replace` (C): PostgreSQL reads a quoted element of any type exactly as an unquoted
one, so what is stored does not change.
"""

from __future__ import annotations

from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from psycopg.adapt import PyFormat
from psycopg.types.array import ListDumper


class QuotedArrayDumper(ListDumper):
    """psycopg's text ListDumper, every element quoted; nested lists and untyped lists are left to psycopg."""

    def dump(self, obj: list[Any]) -> bytes | None:
        element = self.sub_dumper
        if element is None or list in map(type, obj):
            return super().dump(obj)  # type: ignore[return-value]
        parts = []
        for item in obj:
            data = None if item is None else element.dump(item)
            if data is None:
                parts.append(b"NULL")
            else:
                parts.append(b'"' + bytes(data).replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"')
        return b"{" + self.delimiter.join(parts) + b"}"


def quoted_arrays_use(connection: BaseDatabaseWrapper) -> None:
    """Dump arrays with QuotedArrayDumper on this Django connection from now on (PostgreSQL only; idempotent)."""
    if connection.vendor != "postgresql":
        return
    connection.ensure_connection()
    adapters = connection.connection.adapters
    if adapters.get_dumper(list, PyFormat.TEXT) is not QuotedArrayDumper:
        adapters.register_dumper(list, QuotedArrayDumper)
