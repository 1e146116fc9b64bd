"""Thin Celery tasks for customer emails, on the `pushes` queue.

`notifications.send_due` drains the due notifications (a batch, then queues itself again while more are due);
it is queued after commit whenever detection inserted rows. `notifications.enqueue_due` is beat's safety net: a
message the broker lost, or a retry whose time has come, is queued again. Both are safe to run twice or at once:
each row is taken under SKIP LOCKED and committed as `sending` before its email leaves.
"""

from __future__ import annotations

from celery import shared_task

from oma.core.outbox import enqueue_each_on_commit, publish
from oma.notifications.services import notifications_due_exist, notifications_send_due

SEND_BATCH = 200
# Rows per drain queued at once, and at most this many drains: a poll that moved a thousand parcels keeps several
# worker processes sending (they share the rows through SKIP LOCKED) without flooding the queue.
ROWS_PER_DRAIN = 25
MAX_DRAINS_QUEUED = 4


@shared_task(name="notifications.send_due", ignore_result=True)
def send_due() -> int:
    run = notifications_send_due(limit=SEND_BATCH)
    if run.more_due:
        publish(send_due)
    return run.total


@shared_task(name="notifications.enqueue_due", ignore_result=True)
def enqueue_due() -> bool:
    if notifications_due_exist():
        return publish(send_due)
    return False


def send_due_enqueue(*, rows: int = 1) -> None:
    """Queue drains for `rows` new due rows once the current transaction commits (at once outside one). A broker
    that is down is logged: the rows stay due and beat's `enqueue_due` queues them within a minute."""
    drains = min(MAX_DRAINS_QUEUED, max(1, -(-rows // ROWS_PER_DRAIN)))
    enqueue_each_on_commit(send_due, [()] * drains)
