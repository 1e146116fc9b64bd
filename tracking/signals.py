"""What the tracking engine tells the apps above it. Listeners connect in their own AppConfig.ready; tracking
never imports them.

`shipments_changed` is sent after commit with the ids of shipments that were added, linked to an order, or
changed status, once per batch (a poll applies hundreds at a time, a CSV import a thousand rows). A batch may
span stores, so it carries shipment ids only. A failing receiver is logged and never undoes or breaks the
tracking write.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from django.db import transaction
from django.dispatch import Signal

logger = logging.getLogger(__name__)

# Sent with sender=None. Keyword arguments: shipment_ids (list[int]). This module imports no models, so AppConfig
# modules may import the signal at their top.
shipments_changed = Signal()

# The shipment ids a shipments_changed_batch() block has changed so far (per thread; None outside a block).
_batch = threading.local()


@contextmanager
def shipments_changed_batch() -> Iterator[None]:
    """Within this block `shipments_changed` is sent once, after the commit, for every shipment the block
    changed, instead of once per shipment (an import of a thousand rows: one unified-status refresh and one push
    enqueue, not a thousand). Use it inside the transaction that makes the changes; nested blocks join the outer
    one. If the block raises, nothing is sent: its transaction is rolled back."""
    if getattr(_batch, "ids", None) is not None:
        yield
        return
    _batch.ids = []
    try:
        yield
        ids = _batch.ids
    finally:
        _batch.ids = None
    shipments_changed_notify(ids)


def shipments_changed_notify(shipment_ids: Sequence[int]) -> None:
    """Send `shipments_changed` for these shipments after the current transaction commits (or join the
    enclosing `shipments_changed_batch()` block)."""
    ids = list(dict.fromkeys(shipment_ids))
    if not ids:
        return
    collecting = getattr(_batch, "ids", None)
    if collecting is not None:
        collecting.extend(ids)
        return
    if shipments_changed.has_listeners():
        transaction.on_commit(lambda: _send(ids), robust=True)


def _send(shipment_ids: list[int]) -> None:
    for receiver, response in shipments_changed.send_robust(sender=None, shipment_ids=shipment_ids):
        if isinstance(response, Exception):
            logger.error("shipments-changed receiver %s failed for %d shipments", receiver, len(shipment_ids),
                         exc_info=response)
