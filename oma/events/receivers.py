"""The fast path: the lower apps' signals hand their ids to the detectors of oma.events.watch at once, so an event
leaves within seconds instead of at beat's next minute (which still finds whatever these miss).

* `tracking.signals.shipments_changed` (after commit): those shipments, and their orders' unified status (which
  oma.fulfillment's receiver, connected before this one, has just recomputed).
* `oma.orders.signals.orders_changed` (after commit): those orders' unified status.
* `post_save` of FulfillmentPush, ExternalOrder and CarrierAccount: a row saved in a failing state raises its alert
  inside the transaction that failed it (rolled back with it). A cheap look at the instance first: nothing is
  queried for the saves that are not failures. Channels are written with UPDATE (no post_save): beat raises theirs.

A receiver never breaks the write that triggered it: a failure is logged and left to beat.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from oma.channels.models import ExternalOrder
from oma.events.watch import (
    ALERT_KIND_BY_MODEL,
    alerts_raise,
    orders_detect,
    shipment_orders_detect,
    shipments_detect,
)
from oma.fulfillment.models import FulfillmentPush
from oma.merchant.alerts import CARRIER_ACCOUNT_FAILURES_TO_REPORT
from oma.stores.models import Store
from tracking.models import CarrierAccount

logger = logging.getLogger(__name__)


def on_shipments_changed(sender: object, *, shipment_ids: list[int], **kwargs: object) -> None:
    try:
        shipments_detect(shipment_ids=shipment_ids)
        shipment_orders_detect(shipment_ids=shipment_ids)
    except Exception:  # beat's sweep sends what this missed
        logger.exception("events for %d changed shipments not recorded now; beat will", len(shipment_ids))


def on_orders_changed(sender: object, *, store: Store, order_ids: list[int], **kwargs: object) -> None:
    try:
        orders_detect(order_ids=order_ids, store_ids=[store.pk])
    except Exception:  # beat's sweep sends what this missed
        logger.exception("events for %d changed orders of %s not recorded now; beat will", len(order_ids),
                         store.domain)


def _looks_failing(instance: Any) -> bool:
    if isinstance(instance, FulfillmentPush):
        return instance.state == FulfillmentPush.State.FAILED
    if isinstance(instance, ExternalOrder):
        return instance.state == ExternalOrder.State.FAILED
    if isinstance(instance, CarrierAccount):
        return bool(instance.last_error) and instance.consecutive_failures >= CARRIER_ACCOUNT_FAILURES_TO_REPORT
    return False


def on_failure_saved(sender: type, instance: Any, raw: bool = False, **kwargs: object) -> None:
    """post_save of the models whose failures are alerts (see ALERT_KIND_BY_MODEL)."""
    if raw or not _looks_failing(instance):
        return
    try:
        with transaction.atomic():  # a savepoint: a failure here leaves the caller's transaction usable
            alerts_raise(kind=ALERT_KIND_BY_MODEL[sender], object_ids=[instance.pk])
    except Exception:  # beat raises it within a minute
        logger.exception("alert for %s %s not raised now; beat will", sender.__name__, instance.pk)
