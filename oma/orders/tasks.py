"""Thin Celery tasks for the order mirror: ids in, load, call a service."""

from __future__ import annotations

from celery import shared_task

from oma.orders.models import SyncRun
from oma.orders.services import orders_sweep
from oma.orders.signals import orders_changed_send
from oma.stores.models import Store


@shared_task(name="orders.sweep_all_stores", ignore_result=True, acks_late=False)
def sweep_all_stores(kind: str = SyncRun.Kind.INCREMENTAL) -> int:
    """Beat entry point: fan out one sweep task per active store (each store's sweep holds its own lease)."""
    store_ids = list(Store.objects.filter(is_active=True).values_list("pk", flat=True))
    for store_id in store_ids:
        sweep_store.delay(store_id, kind)
    return len(store_ids)


# A full sweep of a large store is long: its limits sit below the broker's visibility timeout (3600 s), and
# the store lease makes a redelivered copy skip rather than run twice at once.
@shared_task(name="orders.sweep_store", ignore_result=True, soft_time_limit=3300, time_limit=3400)
def sweep_store(store_id: int, kind: str = SyncRun.Kind.INCREMENTAL) -> None:
    store = Store.objects.filter(pk=store_id, is_active=True).first()
    if store is None:
        return
    orders_sweep(store=store, kind=kind, defer_hooks=True)


@shared_task(name="orders.changed_run_hooks", ignore_result=True)
def orders_changed_run_hooks(store_id: int, order_ids: list[int]) -> None:
    """orders_changed for one page of a sweep (idempotent: the receivers recompute from what is stored)."""
    store = Store.objects.filter(pk=store_id).first()
    if store is None:
        return
    orders_changed_send(store=store, order_ids=order_ids)
