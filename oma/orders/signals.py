"""What the order mirror tells the apps above it. Listeners connect in their own AppConfig.ready; this app
never imports them.

`orders_changed` is sent after the transaction that created or changed orders commits, once per upsert page
(a sweep page of 250 orders is one send), with `store_id`, `order_ids` and the loaded `store`. A failing
receiver is logged and the others still run: each listener's safety net (periodic reconciles) catches up.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from django.dispatch import Signal

if TYPE_CHECKING:  # this module imports no models, so AppConfig modules may import the signal at their top
    from oma.stores.models import Store

logger = logging.getLogger(__name__)

# Sent with sender=None. Keyword arguments: store_id (int), order_ids (list[int]), store (Store).
orders_changed = Signal()


def orders_changed_send(*, store: Store, order_ids: list[int]) -> None:
    """Tell every receiver that these orders were created or changed (call it after commit)."""
    for receiver, response in orders_changed.send_robust(
        sender=None, store_id=store.pk, order_ids=order_ids, store=store
    ):
        if isinstance(response, Exception):
            logger.error(
                "orders-changed receiver %s failed for %d orders of %s", receiver, len(order_ids), store.domain,
                exc_info=response,
            )


def orders_changed_has_receivers() -> bool:
    return orders_changed.has_listeners()
