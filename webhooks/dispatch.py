"""Handing deliveries to the broker: the fast path after commit, and the outbox dispatcher that catches the rest.

The broker is never trusted with the only copy of anything: a delivery row exists before its task is published,
and a publish that fails (Redis down, a message lost) leaves the row due for the dispatcher, which beat runs
every minute. Publishing twice is harmless: processing claims the row first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone

from webhooks.conf import webhook_setting
from webhooks.models import WebhookDelivery

logger = logging.getLogger(__name__)

# One quick retry covers a pooled connection that went stale; more would hold the web worker while Redis is down.
_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.1, "interval_max": 0.1}


def delivery_enqueue(delivery_id: int, *, countdown: float | None = None) -> bool:
    """Publish the processing task; False (never an exception) when the broker cannot take it."""
    from webhooks.tasks import process_delivery

    try:
        process_delivery.apply_async(
            (delivery_id,), countdown=countdown, retry=True, retry_policy=_PUBLISH_RETRY_POLICY
        )
    except Exception as exc:  # any broker failure: the outbox is the guarantee, not this call
        logger.warning("broker did not take delivery %s (%s); the outbox will dispatch it", delivery_id, exc)
        return False
    return True


def delivery_enqueue_after_receipt(delivery_id: int) -> None:
    """on_commit callback of the receiving view: publish, or make the row due for the next dispatcher run."""
    if delivery_enqueue(delivery_id):
        return
    try:
        WebhookDelivery.objects.filter(pk=delivery_id, state=WebhookDelivery.State.RECEIVED).update(
            next_dispatch_at=timezone.now()
        )
    except DatabaseError as exc:  # the row still carries its later deadline: the dispatcher gets it then
        logger.warning("could not mark delivery %s due for the outbox: %s", delivery_id, exc)


@dataclass(frozen=True)
class DispatchResult:
    dispatched: int
    broker_down: bool


def deliveries_dispatch_due(*, now: datetime | None = None, max_batches: int = 20) -> DispatchResult:
    """Re-enqueue unfinished deliveries whose dispatch deadline has passed, a batch at a time.

    Rows are claimed with SELECT ... FOR UPDATE SKIP LOCKED (PostgreSQL) and their deadline pushed forward in the
    same transaction, so two dispatchers running at once never publish the same row twice in one round.
    """
    now = now or timezone.now()
    batch_size = webhook_setting("OMA_WEBHOOK_DISPATCH_BATCH")
    redispatch_after = timedelta(seconds=webhook_setting("OMA_WEBHOOK_REDISPATCH_SECONDS"))
    dispatched = 0
    for _ in range(max_batches):
        with transaction.atomic():
            ids = list(
                WebhookDelivery.objects.select_for_update(skip_locked=True)
                .filter(next_dispatch_at__lte=now, state__in=WebhookDelivery.UNFINISHED_STATES)
                .order_by("next_dispatch_at")
                .values_list("pk", flat=True)[:batch_size]
            )
            if ids:
                WebhookDelivery.objects.filter(pk__in=ids).update(
                    next_dispatch_at=now + redispatch_after, dispatch_count=F("dispatch_count") + 1
                )
        for position, delivery_id in enumerate(ids):
            if not delivery_enqueue(delivery_id):
                # Broker down: what was not published is due again at the next run.
                WebhookDelivery.objects.filter(pk__in=ids[position:]).update(next_dispatch_at=now)
                logger.warning("outbox: broker down after %d dispatches; %d left due", dispatched, len(ids[position:]))
                return DispatchResult(dispatched=dispatched, broker_down=True)
            dispatched += 1
        if len(ids) < batch_size:
            break
    if dispatched:
        logger.info("outbox: re-enqueued %d webhook deliveries", dispatched)
    return DispatchResult(dispatched=dispatched, broker_down=False)
