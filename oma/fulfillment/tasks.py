"""Thin Celery tasks for fulfillment pushes: ids in, one service call, a retry decision.

Both are safe to run twice: the push row's lock and its read-before-create make a duplicate a no-op.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from celery import shared_task
from celery.exceptions import MaxRetriesExceededError

from oma.fulfillment.services import (
    REQUEUE_AFTER,
    PushResult,
    orders_unified_status_backfill,
    pushes_pending,
    shipment_push,
    shipments_push_enqueue,
)
from oma.genstore.client import GenstoreClient
from oma.stores.models import Store

logger = logging.getLogger(__name__)

# A requests.Session per store and worker thread, so consecutive pushes reuse their connection to Genstore.
_clients = threading.local()


def _client_for(store: Store) -> GenstoreClient:
    from oma.stores.services import genstore_client_for, genstore_client_key

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
def push_shipment(self, shipment_id: int, force: bool = False) -> str:
    from tracking.models import Shipment

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
