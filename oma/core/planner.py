"""PostgreSQL's planner statistics, kept up with a bulk job that fills tables (a first sweep, a big import)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from django.db import connection, models


class PlannerStatistics:
    """Runs a narrow ANALYZE of `columns` each time a job has doubled the rows it wrote, from `first` rows on.

    Why: a job that fills a table the planner still takes for empty (autovacuum analyzes it a minute or more
    later) gets plans for an empty table: each batch's lookups scan every row written so far, a cost that grows
    with each batch (the last pages of a 100,000-order sweep took ten times the first). An ANALYZE of the lookup
    columns only costs a few hundred ms at most, about seven times in a job of 100,000 rows, never in a small one.
    PostgreSQL only (SQLite's planner has no such statistics to go stale).
    """

    def __init__(self, columns: Mapping[type[models.Model], Sequence[str]], *, first: int = 1000) -> None:
        self._columns = columns
        self._next_at = first

    def after_batch(self, *, written: int) -> None:
        """`written`: the rows the job has written so far."""
        if written < self._next_at or connection.vendor != "postgresql":
            return
        self._next_at = written * 2
        quote = connection.ops.quote_name
        with connection.cursor() as cursor:
            for model, names in self._columns.items():
                columns = ", ".join(quote(_column(model, name)) for name in names)
                cursor.execute(f"ANALYZE {quote(model._meta.db_table)} ({columns})")


def _column(model: type[models.Model], name: str) -> str:
    field = model._meta.get_field(name)
    if not isinstance(field, models.Field) or not field.column:
        raise ValueError(f"{model.__name__}.{name} is not a column")
    return field.column
