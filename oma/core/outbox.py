"""The outbox: work handed to the broker after commit, and re-sent when the broker lost it.

The broker never holds the only copy of anything. What is owed (a webhook delivery, a fulfillment push, a queued
CSV import, a shipment due for a poll) is a row before its task is published, and the row says when it is due.
Every producer has the same three steps:

1. write the row, due (or stamped as sent) in the same transaction;
2. `enqueue_on_commit` / `enqueue_each_on_commit`: publish once that transaction commits (outside any transaction:
   at once). A broker that is down is logged and never raised into the caller's request; `on_broker_down` gets
   what was not published, to make it due again at once;
3. beat re-sends the rows still due (`dispatch_due`, or the owner's own query of what is owed), so a message the
   broker lost costs a delay, never the work.

Publishing twice is harmless: every task claims its row before it works.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypedDict, TypeVar

from celery import Task
from django.db import transaction
from django.db.models import F, Model, QuerySet
from django.utils import timezone

logger = logging.getLogger(__name__)

# One quick retry covers a pooled connection that went stale; more would only hold the caller while Redis is down.
PUBLISH_RETRY_POLICY: dict[str, float] = {
    "max_retries": 1, "interval_start": 0, "interval_step": 0.1, "interval_max": 0.1
}

AnyTask = Task[..., Any]  # any task: its arguments and result are the caller's business
Call = tuple[object, ...]
Item = TypeVar("Item")


class _Delay(TypedDict, total=False):
    countdown: float


def publish(
    task: AnyTask, *args: object, kwargs: Mapping[str, object] | None = None, countdown: float | None = None
) -> bool:
    """Publish one call of `task` now; False, never an exception, if the broker did not take it."""
    delay: _Delay = {} if countdown is None else {"countdown": countdown}  # no countdown: no ETA at all
    try:
        task.apply_async(args, dict(kwargs) if kwargs else None, retry=True, retry_policy=PUBLISH_RETRY_POLICY, **delay)
    except Exception as exc:  # any broker failure: the row is the guarantee, not this call
        logger.warning("broker did not take %s (%s); the outbox will send it again", task.name, exc)
        return False
    return True


def publish_until_down(items: Sequence[Item], send: Callable[[Sequence[Item]], bool], *, size: int = 1) -> list[Item]:
    """`send` the items `size` at a time, in order, stopping at the first that the broker refuses (the next would
    fail too, each after its retry). Returns the items not published."""
    for start in range(0, len(items), size):
        if not send(items[start : start + size]):
            return list(items[start:])
    return []


def publish_each(task: AnyTask, calls: Sequence[Call], *, kwargs: Mapping[str, object] | None = None) -> list[Call]:
    """Publish one call of `task` per argument tuple now, stopping at the first the broker refuses; returns the
    calls not published (the beat's re-dispatch of rows that are still due)."""
    return publish_until_down(calls, lambda batch: publish(task, *batch[0], kwargs=kwargs))


def after_commit(callback: Callable[[], object]) -> None:
    """Run `callback` once the current transaction commits; outside any transaction, at once. Either way an
    exception is logged, never raised (as on_commit(robust=True)): the row is stored, the outbox has it."""
    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(callback, robust=True)
        return
    try:
        callback()
    except Exception:
        logger.exception("%s failed after commit; the outbox will send it again", callback)


def enqueue_on_commit(
    task: AnyTask,
    *args: object,
    kwargs: Mapping[str, object] | None = None,
    on_broker_down: Callable[[], object] | None = None,
) -> None:
    """Publish `task(*args, **kwargs)` once the current transaction commits (outside one: at once). A broker that is
    down is logged; `on_broker_down` then makes the row due again for the beat's next run."""

    def send() -> None:
        if not publish(task, *args, kwargs=kwargs) and on_broker_down is not None:
            on_broker_down()

    after_commit(send)


def enqueue_each_on_commit(
    task: AnyTask,
    calls: Sequence[Call],
    *,
    kwargs: Mapping[str, object] | None = None,
    on_broker_down: Callable[[list[Call]], object] | None = None,
) -> None:
    """Publish one call of `task` per argument tuple once the current transaction commits, stopping at the first
    the broker refuses; `on_broker_down` gets the calls that were not published."""
    if not calls:
        return

    def send() -> None:
        rest = publish_each(task, calls, kwargs=kwargs)
        if rest and on_broker_down is not None:
            on_broker_down(rest)

    after_commit(send)


@dataclass(frozen=True)
class DispatchResult:
    dispatched: int
    broker_down: bool


def dispatch_due(
    rows: QuerySet[Model],
    *,
    due_field: str,
    send: Callable[[Sequence[int]], bool],
    redispatch_after: timedelta,
    now: datetime | None = None,
    batch_size: int = 500,
    send_size: int = 1,
    max_batches: int = 20,
    count_field: str | None = None,
) -> DispatchResult:
    """The beat's re-dispatch: `send` the ids of `rows` whose `due_field` has passed, `send_size` ids a call.

    Rows are claimed a batch at a time with SELECT ... FOR UPDATE SKIP LOCKED (PostgreSQL) and their due time
    pushed `redispatch_after` forward (and `count_field` incremented) in the same transaction, so two dispatchers
    running at once never send the same row twice in one round. Broker down: what was not sent is due again at
    once, and the round stops."""
    now = now or timezone.now()
    model = rows.model
    stamp: dict[str, object] = {due_field: now + redispatch_after}
    if count_field:
        stamp[count_field] = F(count_field) + 1
    dispatched = 0
    for _ in range(max_batches):
        with transaction.atomic():
            ids = list(
                rows.select_for_update(skip_locked=True)
                .filter(**{f"{due_field}__lte": now})
                .order_by(due_field)
                .values_list("pk", flat=True)[:batch_size]
            )
            if ids:
                model._default_manager.filter(pk__in=ids).update(**stamp)
        rest = publish_until_down(ids, send, size=send_size)
        dispatched += len(ids) - len(rest)
        if rest:
            model._default_manager.filter(pk__in=rest).update(**{due_field: now})
            logger.warning("outbox: broker down after %d dispatches of %s; %d left due", dispatched,
                           model._meta.label, len(rest))
            return DispatchResult(dispatched=dispatched, broker_down=True)
        if len(ids) < batch_size:
            break
    if dispatched:
        logger.info("outbox: re-enqueued %d %s", dispatched, model._meta.label)
    return DispatchResult(dispatched=dispatched, broker_down=False)
