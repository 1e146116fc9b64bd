"""Thin Celery tasks of the merchant tools: ids in, load, call one service. Each is safe to run twice."""

from __future__ import annotations

from celery import shared_task

from oma.merchant.alerts import alert_digests_send_due
from oma.merchant.estimates import transit_stats_recompute
from oma.merchant.services import orders_resync
from oma.stores.models import Store


@shared_task(name="merchant.resync_orders", ignore_result=True, soft_time_limit=600, time_limit=660)
def resync_orders(store_id: int, order_pks: list[int]) -> dict:
    store = Store.objects.filter(pk=store_id, is_active=True).first()
    if store is None:
        return {}
    return orders_resync(store=store, order_pks=order_pks).__dict__


@shared_task(name="merchant.send_alert_digests", ignore_result=True, acks_late=False, soft_time_limit=300,
             time_limit=330)
def send_alert_digests() -> int:
    """Beat, every 15 minutes: each store's digest goes out once a day from its hour (a second run sends nothing)."""
    return alert_digests_send_due()


@shared_task(name="merchant.learn_transit_times", ignore_result=True, soft_time_limit=600, time_limit=660)
def learn_transit_times(store_id: int | None = None) -> int:
    """Beat, nightly: recompute the learned delivery times (estimated delivery) of one store, or fan out to all."""
    if store_id is None:
        store_ids = list(Store.objects.filter(is_active=True).values_list("pk", flat=True))
        for each in store_ids:
            learn_transit_times.delay(each)
        return len(store_ids)
    store = Store.objects.filter(pk=store_id).first()
    return transit_stats_recompute(store=store) if store is not None else 0
