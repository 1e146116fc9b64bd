"""The faster array dumper sends what PostgreSQL reads back as exactly psycopg's own dumper does."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection
from psycopg.adapt import PyFormat
from psycopg.types.array import ListDumper
from psycopg.types.json import Jsonb

from oma.orders.pgarrays import QuotedArrayDumper, quoted_arrays_use

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

AWKWARD_TEXT = [
    "plain", "", " ", "two words", 'a "quoted" word', "back\\slash", '\\"', "{braces}", "a,comma", "NULL", "null",
    "new\nline", "tab\there", "\u3000ideographic space", "\u00e9t\u00e9", "'single'", None, "ends with \\",
]
CASES = [
    ("text[]", AWKWARD_TEXT),
    ("jsonb[]", [Jsonb({"k": 'v "q" \\ {x}', "n": [1, None, "NULL"]}), Jsonb([]), None, Jsonb("s,t")]),
    ("bigint[]", [1, -2, None, 10**15]),
    ("numeric[]", [Decimal("12.50"), None, Decimal("-0.01")]),
    ("timestamptz[]", [datetime(2026, 11, 1, 12, 0, tzinfo=UTC), None]),
    ("boolean[]", [True, False, None]),
]


def read_back(sql_type: str, values: list) -> list:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT %s::{sql_type}", [values])
        return cursor.fetchone()[0]


@pytest.mark.parametrize(("sql_type", "values"), CASES, ids=[case[0] for case in CASES])
def test_postgres_reads_the_same_arrays_as_with_psycopgs_dumper(sql_type, values):
    connection.ensure_connection()
    adapters = connection.connection.adapters
    adapters.register_dumper(list, ListDumper)
    expected = read_back(sql_type, values)
    quoted_arrays_use(connection)
    assert adapters.get_dumper(list, PyFormat.TEXT) is QuotedArrayDumper
    assert read_back(sql_type, values) == expected


def test_nested_lists_are_left_to_psycopg():
    quoted_arrays_use(connection)
    assert read_back("text[]", [["a", 'b"'], ["c", None]]) == [["a", 'b"'], ["c", None]]
