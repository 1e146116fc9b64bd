"""What the order mirror tells the apps above it. Listeners connect in their own AppConfig.ready; this app
never imports them.

`orders_changed` is sent after the transaction that created or changed orders commits, once per upsert page
(a sweep page of 250 orders is one send), with `store_id`, `order_ids` and the loaded `store`. A failing
receiver is logged and the others still run: each listener's safety net (periodic reconciles) catches up.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING

from django.dispatch import Signal

if TYPE_CHECKING:  # this module imports no models, so AppConfig modules may import the signal at their top
    from oma.stores.models import Store

logger = logging.getLogger(__name__)

# Sent with sender=None. Keyword arguments: store_id (int), order_ids (list[int]), store (Store).
orders_changed = Signal()


class OrdersChangedBatch:
    """Order ids collected per store while `orders_changed_collected` is active, sent by `flush`."""

    def __init__(self) -> None:
        self._pending: dict[int, tuple[Store, list[int]]] = {}

    def add(self, *, store: Store, order_ids: list[int]) -> None:
        _, ids = self._pending.setdefault(store.pk, (store, []))
        ids.extend(order_id for order_id in order_ids if order_id not in ids)

    def flush(self) -> None:
        pending, self._pending = self._pending, {}
        for store, ids in pending.values():
            _send(store=store, order_ids=ids)


_collecting: ContextVar[OrdersChangedBatch | None] = ContextVar("orders_changed_collecting", default=None)


@contextlib.contextmanager
def orders_changed_collected() -> Iterator[OrdersChangedBatch]:
    """Within this block `orders_changed_send` only collects; the block's end (or `flush()`) sends once per store.

    For loops that upsert one order at a time (creating external orders): each receiver then runs once per chunk
    instead of once per order, which is most of such a loop's CPU. The orders were committed when collected, so the
    block's end sends them even when it ends in an exception."""
    batch = OrdersChangedBatch()
    token = _collecting.set(batch)
    try:
        yield batch
    finally:
        _collecting.reset(token)
        batch.flush()


def orders_changed_send(*, store: Store, order_ids: list[int]) -> None:
    """Tell every receiver that these orders were created or changed (call it after commit)."""
    batch = _collecting.get()
    if batch is not None:
        batch.add(store=store, order_ids=order_ids)
        return
    _send(store=store, order_ids=order_ids)


def _send(*, store: Store, order_ids: list[int]) -> None:
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
