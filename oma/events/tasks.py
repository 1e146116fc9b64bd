"""Thin Celery tasks of outbound events (both on the `pushes` queue). Each is safe to run twice: a delivery is
claimed before it is sent, and every detector compares before it records."""

from __future__ import annotations

from celery import shared_task

from oma.events.services import deliveries_send_due
from oma.events.watch import events_enqueue_due


@shared_task(name="events.deliver_due", ignore_result=True, soft_time_limit=240, time_limit=270)
def deliver_due(delivery_ids: list[int] | None = None) -> dict[str, int]:
    """Send these deliveries (or any that are due) once each; retries are scheduled on the rows, not here."""
    summary = deliveries_send_due(delivery_ids=delivery_ids)
    return {"delivered": summary.delivered, "retrying": summary.retrying, "failed": summary.failed}


@shared_task(name="events.enqueue_due", ignore_result=True, acks_late=False, soft_time_limit=240, time_limit=270)
def enqueue_due() -> dict[str, int]:
    """Beat, every minute: publish due deliveries, find the events no signal announced, prune old events."""
    return events_enqueue_due()
