"""Handing deliveries to the broker: the fast path after commit, and the outbox dispatcher that catches the rest.

The broker is never trusted with the only copy of anything (oma.core.outbox): a delivery row exists before its
task is published, and a publish that fails (Redis down, a message lost) leaves the row due (`next_dispatch_at`)
for the outbox's re-dispatch, which beat runs every minute. Publishing twice is harmless: processing claims the
row first.

Fast path: the web process hands committed ids to a publisher thread, which publishes them BATCH_SIZE to a
message (a request never waits for the broker, and one message's processing upserts its orders together).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta

from celery import current_app
from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from oma.core.outbox import DispatchResult, dispatch_due, publish, publish_until_down
from webhooks.models import WebhookDelivery

logger = logging.getLogger(__name__)

# Ids per processing message: enough to spread a publish's cost (about a millisecond of the web process's CPU),
# few enough to keep the workers busy in parallel and a batch of thin payloads (each re-read from the API at the
# store's rate limit) well inside the task's time limit.
BATCH_SIZE = 50
# How long the publisher waits for more ids once one arrived: a short delay to processing buys fewer publishes
# and bigger batches (one upsert per batch) when deliveries come fast.
_LINGER_SECONDS = 0.5


def deliveries_enqueue(delivery_ids: Sequence[int], *, countdown: float | None = None) -> bool:
    """Publish the processing of these deliveries (one message); False, never an exception, if the broker is down."""
    from webhooks.tasks import process_deliveries  # why: webhooks.tasks imports this module

    return publish(process_deliveries, list(delivery_ids), countdown=countdown)


def delivery_enqueue(delivery_id: int, *, countdown: float | None = None) -> bool:
    return deliveries_enqueue([delivery_id], countdown=countdown)


def _mark_due(delivery_ids: Sequence[int]) -> None:
    """Make freshly received deliveries due for the very next outbox run (their publish failed)."""
    try:
        WebhookDelivery.objects.filter(pk__in=list(delivery_ids), state=WebhookDelivery.State.RECEIVED).update(
            next_dispatch_at=timezone.now()
        )
    except DatabaseError as exc:  # the rows still carry their later deadline: the dispatcher gets them then
        logger.warning("could not mark %d deliveries due for the outbox: %s", len(delivery_ids), exc)


def deliveries_publish(delivery_ids: Sequence[int]) -> bool:
    """Publish received (or replayed) deliveries now, BATCH_SIZE per message. On a broker failure the rest are made
    due for the next outbox run, and False says so."""
    if rest := publish_until_down(delivery_ids, deliveries_enqueue, size=BATCH_SIZE):
        _mark_due(rest)
        return False
    return True


class BackgroundPublisher:
    """Publishes received deliveries from a thread of the web process, so a request never waits for the broker.

    Requests hand over ids after their row is committed; the thread publishes whatever has gathered meanwhile in
    messages of BATCH_SIZE ids, so the cost of a publish is shared when deliveries arrive fast. A request wakes the
    thread only when it hands over the first id of a batch or fills one: a wakeup per id would cost the web process
    more than the publishing. If the process dies with ids still pending, their rows are already stored with a
    dispatch deadline: the outbox enqueues them.
    """

    def __init__(self) -> None:
        self._pending: list[int] = []
        self._lock = threading.Lock()  # guards _pending, and starting the thread
        self._arrived = threading.Event()  # the first id of a batch arrived, or a batch filled
        self._thread: threading.Thread | None = None
        self._running = False  # this process's thread is started and has not ended
        os.register_at_fork(after_in_child=self._forget_parent)

    def _forget_parent(self) -> None:
        """In a forked child (a gunicorn worker): the parent's thread is not here, nor are its pending ids."""
        self._pending = []
        self._lock = threading.Lock()
        self._arrived = threading.Event()
        self._thread = None
        self._running = False

    def submit(self, delivery_id: int) -> None:
        if not self._running:
            self._start()
        with self._lock:
            self._pending.append(delivery_id)
            pending = len(self._pending)
        if pending == 1 or pending == BATCH_SIZE:
            self._arrived.set()

    def _start(self) -> None:
        with self._lock:
            if self._running:
                return
            if self._thread is None:  # the first start in this process
                atexit.register(self.flush)
            self._thread = threading.Thread(target=self._run, name="webhook-publisher", daemon=True)
            self._running = True
            self._thread.start()

    def _take_all(self) -> list[int]:
        with self._lock:
            taken, self._pending = self._pending, []
        return taken

    def _next_batch(self) -> list[int]:
        """Waits for an id, then up to _LINGER_SECONDS for a full batch; returns everything pending."""
        self._arrived.wait()
        self._arrived.clear()
        deadline = time.monotonic() + _LINGER_SECONDS
        while len(self._pending) < BATCH_SIZE and (remaining := deadline - time.monotonic()) > 0:
            self._arrived.wait(remaining)
            self._arrived.clear()
        return self._take_all()

    def _run(self) -> None:
        try:
            self._publish_forever()
        finally:  # whatever ended it (it catches every Exception), the next submit starts another
            self._running = False

    def _publish_forever(self) -> None:
        while True:
            batch = self._next_batch()
            if not batch:
                continue
            try:
                # When the broker is down, what gathered meanwhile goes straight to the outbox, so a long outage
                # costs one failed publish per batch rather than a list growing in memory.
                if not deliveries_publish(batch) and (waiting := self._take_all()):
                    _mark_due(waiting)
            except Exception:  # never let the thread die: the rows are stored and the outbox has them anyway
                logger.exception("webhook publisher: %d deliveries left to the outbox", len(batch))
            finally:
                connection.close()  # only used when marking rows due; do not hold a connection per thread

    def flush(self) -> None:
        """Publish what is still pending (at process exit)."""
        if batch := self._take_all():
            deliveries_publish(batch)


_publisher = BackgroundPublisher()


def delivery_enqueue_after_receipt(delivery_id: int) -> None:
    """Once a received delivery is committed: hand the delivery to the publisher thread (or publish inline when
    tasks run eagerly or OMA_WEBHOOK_BACKGROUND_PUBLISH=0); a failed publish makes the row due for the outbox."""
    if not settings.OMA_WEBHOOK_BACKGROUND_PUBLISH or current_app.conf.task_always_eager:
        deliveries_publish([delivery_id])
    else:
        _publisher.submit(delivery_id)


def deliveries_dispatch_due(*, now: datetime | None = None, max_batches: int = 20) -> DispatchResult:
    """Re-enqueue unfinished deliveries whose dispatch deadline has passed (the outbox's re-dispatch), a batch at a
    time and BATCH_SIZE ids per message; each dispatch counts in `dispatch_count`."""
    return dispatch_due(
        WebhookDelivery.objects.filter(state__in=WebhookDelivery.UNFINISHED_STATES),
        due_field="next_dispatch_at",
        count_field="dispatch_count",
        send=deliveries_enqueue,
        send_size=BATCH_SIZE,
        redispatch_after=timedelta(seconds=settings.OMA_WEBHOOK_REDISPATCH_SECONDS),
        batch_size=settings.OMA_WEBHOOK_DISPATCH_BATCH,
        now=now,
        max_batches=max_batches,
    )
