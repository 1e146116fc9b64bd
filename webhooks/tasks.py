"""Thin Celery tasks: ids in, one service call, the retry decided from what the service reports."""

from __future__ import annotations

from collections import Counter

from celery import shared_task

from webhooks.dispatch import deliveries_dispatch_due, delivery_enqueue
from webhooks.processing import deliveries_process
from webhooks.retention import deliveries_prune


# Safe to run twice: processing claims each row first, and a copy that finds it claimed or done does nothing.
@shared_task(name="webhooks.process_deliveries", ignore_result=True, soft_time_limit=120, time_limit=150)
def process_deliveries(delivery_ids: list[int]) -> dict[str, int]:
    results = deliveries_process(delivery_ids=delivery_ids)
    for delivery_id, result in results.items():
        if result.retry_in is not None:
            # If the broker refuses the retry, the row is already due for the outbox shortly after the backoff.
            delivery_enqueue(delivery_id, countdown=result.retry_in)
    return dict(Counter(result.state for result in results.values()))


# Beat, every minute. Two overlapping runs are harmless: rows are claimed with SKIP LOCKED.
@shared_task(name="webhooks.dispatch_outbox", ignore_result=True, acks_late=False, soft_time_limit=50, time_limit=55)
def dispatch_outbox() -> int:
    dispatched = deliveries_dispatch_due().dispatched
    deliveries_prune()
    return dispatched
