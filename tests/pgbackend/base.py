"""The test runs' PostgreSQL backend: Django's, except that a transactional test's flush DELETEs instead of TRUNCATE.

pytest-django empties every table after each transactional test (Django's `flush`). A TRUNCATE of the project's ~55
tables costs PostgreSQL about 120 ms of CPU and, on the 2-vCPU machine, up to a second of wall time (each table gets
new files); DELETE of the few rows a test leaves costs about 4 ms. Every foreign key Django creates is DEFERRABLE
INITIALLY DEFERRED, so the order of the DELETEs does not matter within the flush's transaction. A flush that resets
sequences, or cascades to tables outside its list, stays Django's TRUNCATE.
"""

from __future__ import annotations

from typing import Any

from django.db.backends.postgresql import base, operations


class DatabaseOperations(operations.DatabaseOperations):
    def sql_flush(self, style: Any, tables: Any, *, reset_sequences: bool = False,
                  allow_cascade: bool = False) -> list[str]:
        if reset_sequences or allow_cascade or not tables:
            return super().sql_flush(style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade)
        return ["SET CONSTRAINTS ALL DEFERRED", *(f"DELETE FROM {self.quote_name(table)}" for table in tables)]


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations
