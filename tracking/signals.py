"""What the tracking engine tells the apps above it. Listeners connect in their own AppConfig.ready; tracking
never imports them.

`shipments_changed` is sent after commit with the ids of shipments that were added, linked to an order, or
changed status, once per batch (a poll applies hundreds at a time, a CSV import a thousand rows). A batch may
span stores, so it carries shipment ids only. A failing receiver is logged and never undoes or breaks the
tracking write.

An import may run the receivers of each batch in a thread of its own while it writes the next batch
(`shipments_changed_in_background`): they are mostly database work on another connection.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress

from django.db import connection, connections, transaction
from django.dispatch import Signal

logger = logging.getLogger(__name__)

# Sent with sender=None. Keyword arguments: shipment_ids (list[int]). This module imports no models, so AppConfig
# modules may import the signal at their top.
shipments_changed = Signal()

# The shipment ids a shipments_changed_batch() block has changed so far (per thread; None outside a block).
_batch = threading.local()
# The hooks of this thread's shipments_changed_in_background() block (per thread; None outside a block).
_background = threading.local()


@contextmanager
def shipments_changed_batch() -> Iterator[None]:
    """Within this block `shipments_changed` is sent once, after the commit, for every shipment the block
    changed, instead of once per shipment (an import of a thousand rows: one unified-status refresh and one push
    enqueue, not a thousand). Use it inside the transaction that makes the changes; nested blocks join the outer
    one. If the block raises, nothing is sent: its transaction is rolled back."""
    if getattr(_batch, "ids", None) is not None:
        yield
        return
    _batch.ids = []
    try:
        yield
        ids = _batch.ids
    finally:
        _batch.ids = None
    shipments_changed_notify(ids)


def shipments_changed_notify(shipment_ids: Sequence[int]) -> None:
    """Send `shipments_changed` for these shipments after the current transaction commits (or join the
    enclosing `shipments_changed_batch()` block)."""
    ids = list(dict.fromkeys(shipment_ids))
    if not ids:
        return
    collecting = getattr(_batch, "ids", None)
    if collecting is not None:
        collecting.extend(ids)
        return
    if shipments_changed.has_listeners():
        # A lambda, not a partial: a robust on_commit logs a failure with the function's __qualname__.
        transaction.on_commit(lambda: _send_or_hand_over(ids), robust=True)


def _send_or_hand_over(shipment_ids: list[int]) -> None:
    """After the commit: the receivers now, or in the background thread of the enclosing
    shipments_changed_in_background() block."""
    hooks = getattr(_background, "hooks", None)
    if hooks is not None and not transaction.get_connection().in_atomic_block:
        hooks.hand_over(shipment_ids)
    else:
        _send(shipment_ids)


def _send(shipment_ids: list[int]) -> None:
    for receiver, response in shipments_changed.send_robust(sender=None, shipment_ids=shipment_ids):
        if isinstance(response, Exception):
            logger.error("shipments-changed receiver %s failed for %d shipments", receiver, len(shipment_ids),
                         exc_info=response)


class ShipmentsChangedHooks:
    """The receivers of `shipments_changed` of one shipments_changed_in_background() block, run one batch after the
    other, in the order handed over, by one thread with its own database connection. One batch runs and one waits
    at most: a producer faster than its hooks waits for them instead of queuing a whole file's worth. Without a
    thread (`background=False`) there is nothing to wait for."""

    _POLL_SECONDS = 0.5  # how often a waiting producer checks that the thread is still alive

    def __init__(self, *, background: bool) -> None:
        self._jobs: queue.Queue[list[int] | None] = queue.Queue(maxsize=1)
        self._finished = threading.Condition()
        self._unfinished = 0  # batches handed over whose receivers have not all run yet
        self._thread: threading.Thread | None = None
        if background:
            # A copy of the caller's context: the receivers' log lines carry the import's ids too.
            self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._work,),
                                            name="shipments-changed-hooks", daemon=True)
            self._thread.start()

    @property
    def background(self) -> bool:
        return self._thread is not None

    def idle(self) -> bool:
        """Whether every batch handed over has run its receivers."""
        with self._finished:
            return self._unfinished == 0

    def wait(self) -> None:
        """Return once every batch handed over has run its receivers."""
        with self._finished:
            while self._unfinished and self._alive():
                self._finished.wait(timeout=self._POLL_SECONDS)
        self._run_leftovers()

    def hand_over(self, shipment_ids: list[int]) -> None:
        if self._thread is None:
            _send(shipment_ids)
            return
        with self._finished:
            self._unfinished += 1
        if not self._put(shipment_ids):  # the thread is gone (see _work): the ones before it, then this one, here
            self._run_leftovers()
            self._run(shipment_ids)

    def close(self) -> None:
        """Wait for every batch handed over, then end the thread (its connection closed)."""
        if self._thread is None:
            return
        self._put(None)
        self._thread.join()
        self._run_leftovers()

    def _alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _put(self, job: list[int] | None) -> bool:
        """Queue `job` behind the one waiting, if any; False when the thread ended and will not take it."""
        while self._alive():
            try:
                self._jobs.put(job, timeout=self._POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        try:
            while (shipment_ids := self._jobs.get()) is not None:
                self._run(shipment_ids)
        finally:
            connections.close_all()  # this thread's connections only

    def _run(self, shipment_ids: list[int]) -> None:
        try:
            _send(shipment_ids)  # the module's _send, looked up now (bench.imports times it)
        except Exception:  # send_robust catches the receivers': this is the connection's trouble, or ours
            logger.exception("shipments-changed hooks failed for %d shipments; going on with the next batch",
                             len(shipment_ids))
            if threading.current_thread() is self._thread:
                with suppress(Exception):  # a broken connection may fail to close; it is dropped either way
                    connection.close()  # the next batch starts on a fresh one
        finally:
            with self._finished:
                self._unfinished -= 1
                self._finished.notify_all()

    def _run_leftovers(self) -> None:
        """The batches a dead thread left queued (only a BaseException ends it early), run here, in order."""
        if self._alive():
            return
        while True:
            try:
                shipment_ids = self._jobs.get_nowait()
            except queue.Empty:
                return
            if shipment_ids is not None:
                self._run(shipment_ids)


@contextmanager
def shipments_changed_in_background() -> Iterator[ShipmentsChangedHooks]:
    """Within this block, the receivers of `shipments_changed` that this thread would run after a commit run in a
    thread of their own instead (ShipmentsChangedHooks), so that an import writes its next batch meanwhile. On the
    way out it waits for them all: the caller returns once every receiver ran, as without the block.

    Inline, as without the block, inside a transaction (the thread would not see its writes: a test, a dry run) and
    off PostgreSQL (SQLite takes one writer at a time); nested blocks join the outer one. What the receivers write
    must not be what the caller reads next, and the caller must not lock in a conflicting order the rows they lock:
    see oma.channels.csv_import."""
    outer = getattr(_background, "hooks", None)
    if outer is not None:
        yield outer
        return
    hooks = ShipmentsChangedHooks(background=connection.vendor == "postgresql" and not connection.in_atomic_block)
    _background.hooks = hooks
    try:
        yield hooks
    finally:
        _background.hooks = None
        hooks.close()
