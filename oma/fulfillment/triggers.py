"""What sets pushes and unified statuses moving when orders or shipments change.

* Orders: `orders_changed_hooks` (oma.orders.services) calls `on_orders_changed` after every upsert commits.
* Shipments: the tracking engine calls `on_shipments_changed(shipment_ids)` after commit when a shipment is added,
  linked to an order, or changes status (tracking.services.on_shipment_status_changed). Until every path does,
  the beat's `fulfillment.push_pending` finds what was missed within a minute.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from oma.stores.models import Store

logger = logging.getLogger(__name__)


def on_orders_changed(store: Store, order_ids: list[int]) -> None:
    """Orders changed in the mirror: recompute their unified status; queue pushes that the change may unblock
    (shipments never pushed for that order, or skipped or failed ones whose order may now allow it)."""
    from oma.fulfillment.models import FulfillmentPush
    from oma.fulfillment.services import orders_unified_status_refresh, shipments_push_enqueue
    from tracking.models import Shipment

    try:
        orders_unified_status_refresh(order_ids=order_ids)
    except Exception:  # a hook never breaks the upsert that called it; the next change or reconcile recomputes
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


def on_shipments_changed(shipment_ids: Sequence[int]) -> None:
    """Shipments were added, linked to an order or changed status: recompute their orders' status, push them."""
    from oma.fulfillment.services import orders_unified_status_refresh, shipments_push_enqueue
    from tracking.models import Shipment

    rows = list(Shipment.objects.filter(pk__in=shipment_ids, order__isnull=False).values_list("pk", "order_id"))
    if not rows:
        return
    orders_unified_status_refresh(order_ids=sorted({order_id for _, order_id in rows}))
    shipments_push_enqueue(shipment_ids=[pk for pk, _ in rows])


def on_shipment_status_changed(shipment: object) -> None:
    """The one-shipment form, matching tracking.services.on_shipment_status_changed(shipment)."""
    on_shipments_changed([shipment.pk])  # type: ignore[attr-defined]


_registered = False


def register_triggers() -> None:
    global _registered
    if _registered:
        return
    from oma.orders.services import orders_changed_hooks

    orders_changed_hooks.append(on_orders_changed)
    try:  # the tracking engine may expose a hooks list like orders_changed_hooks
        from tracking import services as tracking_services

        hooks = getattr(tracking_services, "shipments_changed_hooks", None)
        if isinstance(hooks, list):
            hooks.append(on_shipments_changed)
    except ImportError:
        pass
    _registered = True
