"""Thin Celery tasks for fulfillment pushes: ids in, one service call, a retry decision; and the one way pushes
are queued (`shipments_push_enqueue`: the intent row first, the task after commit, through oma.core.outbox).

Pushes are queued per store, not per shipment: an import or a sweep that owes N pushes queues one
`fulfillment.push_due` for the store, which drains what the store owes at its bucket's pace
(`store_pushes_drain`) and queues itself again while work remains. A store whose drain is queued and has not
finished gets no second one (`Store.push_drain_queued_at`): the queue holds at most a message or two per store,
however many pushes are owed, and webhook processing never waits behind a flood of them. Forced pushes (admin,
reconciliation) keep a task per shipment (`fulfillment.push_shipment`).

The nightly reconciliation (`fulfillment.reconcile_all_stores`, beat) queues one `fulfillment.reconcile_store` per
active store, which reconciles it and keeps the result (ReconcileRun); it reports only, fixing stays the merchant's.

Every task is safe to run twice: the push row's lock and its read-before-create make a duplicate push a no-op, and
a second drain of a store finds the first one's lease and returns.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta

from celery import Task, shared_task
from celery.exceptions import MaxRetriesExceededError
from django.db.models import F, Q
from django.utils import timezone

from oma.core.bulk import AnyOf, rows_insert
from oma.core.leases import lease_take
from oma.core.outbox import after_commit, enqueue_each_on_commit, publish_each
from oma.fulfillment.models import FulfillmentPush, ReconcileRun
from oma.fulfillment.reconciliation import Disagreement, reconcile_run
from oma.fulfillment.services.genstore_shipments import genstore_fulfillments_catch_up
from oma.fulfillment.services.push import (
    REQUEUE_AFTER,
    PushResult,
    State,
    pushes_pending,
    pushes_untried,
    shipment_push,
    store_pushes_drain,
)
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


@shared_task(name="fulfillment.push_due", ignore_result=True)
def push_due(store_id: int) -> int:
    """Drain one store's owed pushes for a while (store_pushes_drain); queue the drain again while work remains."""
    store = Store.objects.filter(pk=store_id).first()
    if store is None:
        return 0
    try:
        outcome = store_pushes_drain(store=store, client=_client_for(store) if store.is_active else None)
    except Exception:
        Store.objects.filter(pk=store_id).update(push_drain_queued_at=None)  # the next push queues a drain again
        raise
    if outcome.busy:  # the running drain sees whatever this one was queued for (it looks again when it ends)
        return 0
    # From here a new push queues a new drain; what came in before this line is seen by the look below.
    Store.objects.filter(pk=store_id).update(push_drain_queued_at=None)
    if store.is_active and (outcome.more or pushes_untried(store=store, tried=outcome.tried)):
        drains_enqueue(store_ids=[store_id])
    if outcome.pushed:
        logger.info("push drain of %s: %d pushes (%s)%s", store.domain, outcome.pushed, dict(outcome.results),
                    "; more to come" if outcome.more else "")
    return outcome.pushed


@shared_task(name="fulfillment.push_pending", ignore_result=True, acks_late=False)
def push_pending(limit: int = 2000, requeue_after_seconds: float | None = None) -> int:
    """Beat, every minute: queue a drain for every store that still owes pushes (lost triggers, retries due,
    workers that died); the number of shipments owed. `requeue_after_seconds` (default 120): how long a queued push
    is left to its drain before queued again."""
    requeue_after = REQUEUE_AFTER if requeue_after_seconds is None else timedelta(seconds=requeue_after_seconds)
    # Orders mirrored before this app existed (or while a hook failed) have no unified status yet.
    orders_unified_status_backfill(limit=5000)
    # A drain queued before (and lost with a broker, or killed with its worker) does not hold this one back.
    return _pushes_enqueue(pushes_pending(limit=limit, requeue_after=requeue_after), even_if_queued=True)


@shared_task(name="fulfillment.reconcile_all_stores", ignore_result=True, acks_late=False)
def reconcile_all_stores() -> int:
    """Beat, nightly: one `reconcile_store` per active store."""
    store_ids = list(Store.objects.filter(is_active=True).order_by("pk").values_list("pk", flat=True))
    enqueue_each_on_commit(reconcile_store, [(pk,) for pk in store_ids])
    return len(store_ids)


# A reconciliation re-reads Genstore first (an incremental sweep): long for a large store, so its limits sit below
# the broker's visibility timeout (3600 s) and below RECONCILE_RUN_LIMIT.
@shared_task(name="fulfillment.reconcile_store", ignore_result=True, soft_time_limit=3000, time_limit=3100)
def reconcile_store(store_id: int) -> int:
    """Reconcile one store and keep the result (report only). Run twice, it keeps two results: harmless."""
    store = Store.objects.filter(pk=store_id, is_active=True).first()
    if store is None:
        return 0
    run, _ = reconcile_run(store=store, trigger=ReconcileRun.Trigger.NIGHTLY, refresh=True)
    return run.findings


@shared_task(name="fulfillment.catch_up_genstore_fulfillments", ignore_result=True, soft_time_limit=3000,
             time_limit=3100)
def catch_up_genstore_fulfillments(store_id: int) -> int:
    """Queued when a sweep succeeds: the store's live Genstore fulfillments that no changed order brought
    (services/genstore_shipments.py, the catch-up); the shipments it added or linked. A task of its own, not a part
    of the sweep: on a store's first sweep it adopts every fulfillment the merchant ever made, which would more than
    double the sweep's time, and the sweep's changed-order hooks are a task of their own too. Run twice, the second
    finds nothing to do."""
    store = Store.objects.filter(pk=store_id, is_active=True).first()
    if store is None:
        return 0
    return len(genstore_fulfillments_catch_up(store=store).shipment_ids)


# --- queueing -----------------------------------------------------------------------------------------------


def shipments_push_enqueue(*, shipment_ids: Sequence[int], force: bool = False) -> int:
    """Record the intent for these shipments and queue their stores' drains, after the transaction commits.
    `force`: one task per shipment instead, re-checking Genstore even where nothing changed (admin and
    reconciliation fixes)."""
    return _pushes_enqueue(shipment_ids, force=force)


def _pushes_enqueue(shipment_ids: Sequence[int], *, force: bool = False, even_if_queued: bool = False) -> int:
    if not shipment_ids:
        return 0
    # An import's batch of a thousand ids travels as one array parameter (oma.core.bulk.AnyOf).
    rows = list(
        Shipment.objects.filter(AnyOf(F("pk"), list(shipment_ids)), order__isnull=False).values_list(
            "pk", "store_id", "order_id", "order__order_id"
        )
    )
    ids = [pk for pk, *_ in rows]
    # `queued_at` is the outbox's stamp: the beat (pushes_pending) leaves a push queued this recently to its task.
    now = timezone.now()
    # The new intents in one statement of plain rows (oma.core.bulk: no model instance, no per-field preparation
    # per row), born stamped; a push recorded before keeps its row (its key conflicts) and is stamped below, if
    # pending (an import's new shipments have none: no second statement).
    inserted = {
        shipment_id for (shipment_id,) in rows_insert(
            FulfillmentPush,
            [
                {"key": FulfillmentPush.key_for(store_id=store_id, order_id=order_code, shipment_id=pk),
                 "store_id": store_id, "order_id": order_pk, "shipment_id": pk, "state": State.PENDING,
                 "queued_at": now}
                for pk, store_id, order_pk, order_code in rows
            ],
            conflict=("key",),
            returning=("shipment_id",),
        )
    }
    recorded = [pk for pk in ids if pk not in inserted]
    if recorded:
        FulfillmentPush.objects.filter(AnyOf(F("shipment_id"), recorded), state=State.PENDING).update(queued_at=now)
    if force:
        def not_queued(calls: list[tuple[object, ...]]) -> None:  # the broker is down: due again for the next beat
            FulfillmentPush.objects.filter(shipment_id__in=[call[0] for call in calls], state=State.PENDING).update(
                queued_at=None
            )

        enqueue_each_on_commit(push_shipment, [(pk,) for pk in ids], kwargs={"force": True}, on_broker_down=not_queued)
        return len(ids)

    def drains_not_queued(store_ids: list[int]) -> None:  # the broker is down: due again for the next beat
        FulfillmentPush.objects.filter(
            AnyOf(F("shipment_id"), ids), store_id__in=store_ids, state=State.PENDING
        ).update(queued_at=None)

    drains_enqueue(store_ids=[store_id for _, store_id, *_ in rows], even_if_queued=even_if_queued,
                   on_broker_down=drains_not_queued)
    return len(ids)


def drains_enqueue(
    *,
    store_ids: Sequence[int],
    even_if_queued: bool = False,
    on_broker_down: Callable[[list[int]], object] | None = None,
) -> None:
    """Queue one `push_due` per store once the current transaction commits, except for a store whose drain is
    queued already and has not finished (it will see these pushes: it looks again when it ends, after clearing its
    stamp), unless `even_if_queued` (the beat). A stamp older than REQUEUE_AFTER is taken for a lost message."""
    wanted = sorted(set(store_ids))
    if not wanted:
        return

    def send() -> None:
        taken = sorted(int(pk) for pk in lease_take(
            Store.objects.filter(pk__in=wanted, is_active=True), ttl=REQUEUE_AFTER, holder_field=None,
            until_field=None, taken_field="push_drain_queued_at", also_free=Q(pk__isnull=False) if even_if_queued
            else None,
        ))
        unsent = publish_each(push_due, [(pk,) for pk in taken])  # the tail the broker did not take
        rest = taken[len(taken) - len(unsent):]
        if rest:
            Store.objects.filter(pk__in=rest).update(push_drain_queued_at=None)
            if on_broker_down is not None:
                on_broker_down(rest)

    after_commit(send)


def push_retry(*, push_ids: Sequence[int]) -> int:
    """Someone asked (admin action): failed or skipped pushes go back to pending and are queued."""
    pushes = FulfillmentPush.objects.filter(pk__in=push_ids, shipment__isnull=False)
    pushes.exclude(state=State.IN_PROGRESS).update(
        state=State.PENDING, next_attempt_at=None, state_reason="retry requested", updated_at=timezone.now()
    )
    return shipments_push_enqueue(shipment_ids=list(pushes.values_list("shipment_id", flat=True)))


def reconcile_fix_enqueue(*, disagreements: Sequence[Disagreement]) -> int:
    """The admin's fix of a reconciliation: queue the pushes (forced) instead of running them inside the request."""
    ids = [d.shipment_id for d in disagreements if d.fixable and d.shipment_id is not None]
    return shipments_push_enqueue(shipment_ids=ids, force=True)
