"""Thin Celery tasks for tracking: load, call one service, done. Safe to run twice (claims and unique events)."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from oma.stores.models import Store
from tracking.polling import poll_due_shipments


# Beat runs this every minute. Long waits are each shipment's next_poll_at in the database, never countdowns;
# a run stops claiming work after TRACKING_POLL_TIME_BUDGET_SECONDS, below the task's soft time limit, and an
# overlapping run (a slow minute) only takes shipments the first one has not claimed.
@shared_task(
    name="tracking.poll_due",
    ignore_result=True,
    soft_time_limit=max(60, int(settings.TRACKING_POLL_TIME_BUDGET_SECONDS) + 45),
    time_limit=max(90, int(settings.TRACKING_POLL_TIME_BUDGET_SECONDS) + 90),
)
def poll_due(store_id: int | None = None, limit: int | None = None) -> dict:
    store = None
    if store_id is not None:
        store = Store.objects.filter(pk=store_id, is_active=True).first()
        if store is None:
            return {}
    return poll_due_shipments(store=store, limit=limit).as_dict()
