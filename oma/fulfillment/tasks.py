"""Thin Celery tasks for fulfillment pushes: ids in, one service call, a retry decision; and the one way pushes
are queued (`shipments_push_enqueue`: the intent row first, the task after commit, through oma.core.outbox).

Both tasks are safe to run twice: the push row's lock and its read-before-create make a duplicate a no-op.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import timedelta

from celery import Task, shared_task
from celery.exceptions import MaxRetriesExceededError
from django.utils import timezone

from oma.core.outbox import enqueue_each_on_commit
from oma.fulfillment.models import FulfillmentPush
from oma.fulfillment.services.push import REQUEUE_AFTER, PushResult, State, pushes_pending, shipment_push
from oma.fulfillment.services.unified_status import orders_unified_status_backfill
from oma.genstore.client import GenstoreClient
from oma.stores.models import Store
from oma.stores.services import genstore_client_for, genstore_client_key
from tracking.models import Shipment

logger = logging.getLogger(__name__)

# A requests.Session per store and worker thread, so consecutive pushes reuse their connection to Genstore.
_clients = threading.local()


def _client_for(store: Store) -> GenstoreClient:
    cache: dict[tuple[int, str, str], GenstoreClient] = getattr(_clients, "by_store", None) or {}
    _clients.by_store = cache
    # A changed store gets a new client.
    key = genstore_client_key(store)
    client = cache.get(key)
    if client is None:
        for old_key in [k for k in cache if k[0] == store.pk]:
            cache.pop(old_key).close()
        client = cache[key] = genstore_client_for(store)
    return client


@shared_task(bind=True, name="fulfillment.push_shipment", ignore_result=True, max_retries=12)
def push_shipment(self: Task[..., str], shipment_id: int, force: bool = False) -> str:
    shipment = Shipment.objects.select_related("store").filter(pk=shipment_id).first()
    if shipment is None:
        return PushResult.NOT_PUSHABLE
    outcome = shipment_push(shipment_id=shipment_id, client=_client_for(shipment.store), force=force)
    if outcome.result == PushResult.RETRY:
        countdown = min(max(outcome.retry_after or 30.0, 1.0), 1800.0)
        try:
            raise self.retry(countdown=countdown)
        except MaxRetriesExceededError:
            # The row stays pending with its next attempt time: the beat takes it from here.
            logger.warning("push of shipment %s: retries exhausted, left to the beat", shipment_id)
    return outcome.result


@shared_task(name="fulfillment.push_pending", ignore_result=True, acks_late=False)
def push_pending(limit: int = 2000, requeue_after_seconds: float | None = None) -> int:
    """Beat, every minute: queue every push still owed (lost triggers, retries due, workers that died).
    `requeue_after_seconds` (default 120): how long a queued push is left to its own task before queued again."""
    requeue_after = REQUEUE_AFTER if requeue_after_seconds is None else timedelta(seconds=requeue_after_seconds)
    # Orders mirrored before this app existed (or while a hook failed) have no unified status yet.
    orders_unified_status_backfill(limit=5000)
    return shipments_push_enqueue(shipment_ids=pushes_pending(limit=limit, requeue_after=requeue_after))


# --- queueing -----------------------------------------------------------------------------------------------


def shipments_push_enqueue(*, shipment_ids: Sequence[int], force: bool = False) -> int:
    """Record the intent for these shipments and queue one push task each, after the transaction commits.
    `force`: the tasks re-check Genstore even where nothing changed (admin and reconciliation fixes)."""
    if not shipment_ids:
        return 0
    rows = list(
        Shipment.objects.filter(pk__in=shipment_ids, order__isnull=False).values_list(
            "pk", "store_id", "order_id", "order__order_id"
        )
    )
    FulfillmentPush.objects.bulk_create(
        [
            FulfillmentPush(
                key=FulfillmentPush.key_for(store_id=store_id, order_id=order_code, shipment_id=pk),
                store_id=store_id,
                order_id=order_pk,
                shipment_id=pk,
                state=State.PENDING,
            )
            for pk, store_id, order_pk, order_code in rows
        ],
        ignore_conflicts=True,
    )
    ids = [pk for pk, *_ in rows]
    # `queued_at` is the outbox's stamp: the beat (pushes_pending) leaves a push queued this recently to its task.
    FulfillmentPush.objects.filter(shipment_id__in=ids, state=State.PENDING).update(queued_at=timezone.now())
    def not_queued(calls: list[tuple[object, ...]]) -> None:  # the broker is down: due again for the next beat
        FulfillmentPush.objects.filter(shipment_id__in=[call[0] for call in calls], state=State.PENDING).update(
            queued_at=None
        )

    enqueue_each_on_commit(
        push_shipment, [(pk,) for pk in ids], kwargs={"force": True} if force else None, on_broker_down=not_queued
    )
    return len(ids)


def push_retry(*, push_ids: Sequence[int]) -> int:
    """Someone asked (admin action): failed or skipped pushes go back to pending and are queued."""
    pushes = FulfillmentPush.objects.filter(pk__in=push_ids, shipment__isnull=False)
    pushes.exclude(state=State.IN_PROGRESS).update(
        state=State.PENDING, next_attempt_at=None, state_reason="retry requested", updated_at=timezone.now()
    )
    return shipments_push_enqueue(shipment_ids=list(pushes.values_list("shipment_id", flat=True)))
