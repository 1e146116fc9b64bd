"""Thin Celery tasks: ids in, one service call, the retry decided from what the service reports."""

from __future__ import annotations

import time

from celery import shared_task

from webhooks.dispatch import deliveries_dispatch_due, deliveries_enqueue, delivery_enqueue
from webhooks.services import deliveries_prune, delivery_process

# A batch stops taking new deliveries after this long and hands the rest back, well inside its time limits.
_BATCH_BUDGET_SECONDS = 60


# Safe to run twice: processing claims each row first, and a copy that finds it claimed or done does nothing.
@shared_task(name="webhooks.process_deliveries", ignore_result=True, soft_time_limit=120, time_limit=150)
def process_deliveries(delivery_ids: list[int]) -> dict[str, int]:
    started = time.monotonic()
    states: dict[str, int] = {}
    for position, delivery_id in enumerate(delivery_ids):
        if time.monotonic() - started > _BATCH_BUDGET_SECONDS:
            deliveries_enqueue(delivery_ids[position:])  # refused: the rows' outbox deadline still stands
            break
        result = delivery_process(delivery_id=delivery_id)
        states[result.state] = states.get(result.state, 0) + 1
        if result.retry_in is not None:
            # If the broker refuses the retry, the row is already due for the outbox shortly after the backoff.
            delivery_enqueue(delivery_id, countdown=result.retry_in)
    return states


@shared_task(name="webhooks.process_delivery", ignore_result=True, soft_time_limit=120, time_limit=150)
def process_delivery(delivery_id: int) -> dict[str, int]:
    """One delivery (kept for messages already queued by name; new ones go through process_deliveries)."""
    return process_deliveries([delivery_id])


# Beat, every minute. Two overlapping runs are harmless: rows are claimed with SKIP LOCKED.
@shared_task(name="webhooks.dispatch_outbox", ignore_result=True, acks_late=False, soft_time_limit=50, time_limit=55)
def dispatch_outbox() -> int:
    dispatched = deliveries_dispatch_due().dispatched
    deliveries_prune()
    return dispatched
