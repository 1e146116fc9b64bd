"""What sets pushes and unified statuses moving when orders or shipments change: the receivers of the signals the
lower apps send (connected in FulfillmentConfig.ready; orders and tracking never import this app).

* `oma.orders.signals.orders_changed`: after every order upsert commits (once per page).
* `tracking.signals.shipments_changed`: after commit when shipments are added, linked to an order, or change
  status (once per batch: a poll, a CSV import batch).
* `post_save` of a succeeded `SyncRun` (a sweep's end): queues the catch-up of Genstore's own fulfillments the
  changed orders did not bring (tasks.catch_up_genstore_fulfillments). Connected here, by the decorator, when
  `ready` imports this module.
Whatever a lost signal misses, the beat's `fulfillment.push_pending` finds within a minute.
"""

from __future__ import annotations

import logging

from django.db.models import F
from django.db.models.signals import post_save
from django.dispatch import receiver

from oma.core.bulk import AnyOf
from oma.core.outbox import enqueue_on_commit
from oma.fulfillment.models import FulfillmentPush
from oma.fulfillment.services.genstore_shipments import genstore_fulfillments_track
from oma.fulfillment.services.unified_status import orders_unified_status_refresh
from oma.fulfillment.tasks import catch_up_genstore_fulfillments, shipments_push_enqueue
from oma.orders.models import SyncRun
from oma.stores.models import Store
from tracking.models import Shipment

logger = logging.getLogger(__name__)


def on_orders_changed(sender: object, *, store: Store, order_ids: list[int], **kwargs: object) -> None:
    """Orders changed in the mirror: track the fulfillments the merchant made in Genstore, recompute the orders'
    unified status; queue pushes that the change may unblock (shipments never pushed for that order, or skipped or
    failed ones whose order may now allow it)."""
    if store.is_active:
        try:
            genstore_fulfillments_track(store=store, order_ids=order_ids)
        except Exception:  # never breaks the upsert that sent it; the sweep's catch-up tries again
            logger.exception("tracking Genstore fulfillments failed for %d orders of %s", len(order_ids), store.domain)
    try:
        orders_unified_status_refresh(order_ids=order_ids)
    except Exception:  # a receiver never breaks the upsert that sent it; the next change or reconcile recomputes
        logger.exception("unified status refresh failed for %d orders of %s", len(order_ids), store.domain)
    if not store.is_active:
        return
    shipments = Shipment.objects.filter(order_id__in=order_ids)
    waiting = set(
        shipments.exclude(fulfillment_pushes__order_id__in=order_ids).values_list("pk", flat=True)
    ) | set(
        FulfillmentPush.objects.filter(
            order_id__in=order_ids,
            shipment__order_id__in=order_ids,
            state__in=[FulfillmentPush.State.SKIPPED, FulfillmentPush.State.FAILED],
            fulfill_id="",
        ).values_list("shipment_id", flat=True)
    )
    if waiting:
        FulfillmentPush.objects.filter(
            shipment_id__in=waiting,
            order_id__in=order_ids,
            fulfill_id="",
            state__in=[FulfillmentPush.State.SKIPPED, FulfillmentPush.State.FAILED],
        ).update(state=FulfillmentPush.State.PENDING, state_reason="the order changed: judging again")
        shipments_push_enqueue(shipment_ids=sorted(waiting))


def on_shipments_changed(sender: object, *, shipment_ids: list[int], **kwargs: object) -> None:
    """Shipments were added, linked to an order or changed status: recompute their orders' status, push them."""
    # A batch's thousand ids as one array parameter (oma.core.bulk.AnyOf), not a thousand quoted placeholders.
    rows = list(
        Shipment.objects.filter(AnyOf(F("pk"), list(shipment_ids)), order__isnull=False).values_list("pk", "order_id")
    )
    if not rows:
        return
    orders_unified_status_refresh(order_ids=sorted({order_id for _, order_id in rows}))
    shipments_push_enqueue(shipment_ids=[pk for pk, _ in rows])


@receiver(post_save, sender=SyncRun, dispatch_uid="fulfillment.on_sync_run_saved")
def on_sync_run_saved(sender: object, *, instance: SyncRun, **kwargs: object) -> None:
    """A sweep succeeded: after its commit, queue the tracking of the live fulfillments it did not change (all of
    them, for a store mirrored before OMA tracked Genstore's own fulfillments: an unchanged order sends no
    orders_changed). A broker that is down loses it until the next sweep queues it again."""
    if instance.state != SyncRun.State.SUCCEEDED or instance.finished_at is None:
        return
    enqueue_on_commit(catch_up_genstore_fulfillments, instance.store_id)
