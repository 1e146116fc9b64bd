"""The intake INSERT of every webhook delivery, with group commit across a web process's request threads.

Each delivery must be committed before it is answered, and one INSERT plus one commit per delivery costs the
database more than everything else a delivery does. So the request threads of one process share their writes:
a thread queues its row and, unless another thread is writing, becomes the writer: it writes every row queued so
far in one multi-row `INSERT ... ON CONFLICT DO NOTHING RETURNING` (a row is skipped when its store has its
dedupe key or its content hash already) and commits, and the threads whose rows it wrote are woken with their
answers. Nobody waits for a timer: when deliveries come one at a
time each is written at once, alone; when they come together, those that arrive during a write are written
together by the next. A row is never answered before the statement that wrote it has committed. When a statement
fails, its rows are written again one by one, so an error reaches only the thread whose row the database refuses
(a store erased meanwhile, say), or every thread when the database itself is failing.

A caller inside a transaction of its own writes alone, in that transaction (its row commits with the rest of it).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection

from oma.core.bulk import rows_insert
from webhooks.models import WebhookDelivery

# Rows per statement: at least a web process's request threads (oma/gunicorn_conf.py: OMA_GUNICORN_THREADS, 32 by
# default), so every thread waiting for a commit joins the next one; beyond that it only bounds the statement's size.
MAX_BATCH = 100

# One received delivery, keyed by column (rows_insert gives the other columns their fields' defaults).
ReceivedRow = Mapping[str, Any]


# The columns that tell the rows of one statement apart (each of its unique keys is among them).
_IDENTITY = ("store_id", "dedupe_key", "content_sha256")


def _insert(rows: Sequence[ReceivedRow]) -> list[int | None]:
    """One INSERT of these rows: each row's new id, or None for a row that either unique key refuses, (store,
    dedupe_key) or (store, content_sha256), against the table or a row earlier in `rows` (the first of two copies
    is the one inserted)."""
    # No conflict target: a row is skipped whichever of the two keys it repeats, in the same single statement.
    returned = rows_insert(WebhookDelivery, rows, conflict=(), returning=("id", *_IDENTITY))
    ids = {tuple(identity): delivery_id for delivery_id, *identity in returned}
    return [ids.pop(tuple(row[column] for column in _IDENTITY), None) for row in rows]


@dataclass(eq=False, slots=True)
class _Queued:
    row: ReceivedRow
    # Held from the moment the row queues; released once, when its row is written or when it is to write next.
    wakeup: threading.Lock | None = None
    done: bool = False
    delivery_id: int | None = None
    error: BaseException | None = None


class GroupInserter:
    """Writes the rows that request threads queue, many to a statement (see the module's docstring).

    Every waiting thread has a lock of its own, so a finished statement wakes exactly the threads whose rows it
    wrote, and the one thread that writes next: a thread is never woken just to find it has to wait again.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards _queue and _writing
        self._queue: list[_Queued] = []  # rows waiting for the next statement, oldest first
        self._writing = False  # a thread is writing a statement, or is about to

    def insert(self, row: ReceivedRow, *, in_transaction: bool) -> int | None:
        """`in_transaction`: the caller is inside a transaction (connection.in_atomic_block), so the row is
        written alone, in it."""
        if in_transaction:
            return _insert([row])[0]
        queued = _Queued(row)
        with self._lock:
            if self._writing:
                queued.wakeup = threading.Lock()
                queued.wakeup.acquire()
                self._queue.append(queued)
            else:
                self._writing = True
        if queued.wakeup is not None:
            queued.wakeup.acquire()  # until the writer wrote our row, or handed the next statement to us
        if not queued.done:
            self._write_as_writer(queued)
        if queued.error is not None:
            raise queued.error
        return queued.delivery_id

    def _write_as_writer(self, first: _Queued) -> None:
        """Write `first` and the rows queued behind it, then wake their threads and hand over to the next row."""
        with self._lock:
            batch = [first, *self._queue[: MAX_BATCH - 1]]
            del self._queue[: MAX_BATCH - 1]
        try:
            self._write(batch)
        finally:
            for queued in batch:
                if not queued.done:  # only an interruption (KeyboardInterrupt, SystemExit) ends _write early
                    queued.error = RuntimeError("the statement writing this delivery was interrupted")
                    queued.done = True
            with self._lock:
                successor = self._queue.pop(0) if self._queue else None
                self._writing = successor is not None
            for queued in batch[1:]:
                queued.wakeup.release()  # type: ignore[union-attr]
            if successor is not None:
                successor.wakeup.release()  # type: ignore[union-attr]

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


def delivery_insert_unless_duplicate(row: ReceivedRow, *, in_transaction: bool | None = None) -> int | None:
    """Insert one received delivery and commit it (inside a transaction: in it): its new id, or None when its
    dedupe key exists already. Concurrent calls in one process share statements and commits."""
    if in_transaction is None:
        in_transaction = connection.in_atomic_block
    return group_inserter.insert(row, in_transaction=in_transaction)
