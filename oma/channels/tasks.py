"""Thin Celery tasks for channels: ids in, load, call one service. Each is safe to run twice."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.db.models import Q
from django.utils import timezone

from oma.channels.csv_import import csv_import_run_queued, csv_imports_enqueue_stalled
from oma.channels.models import Channel
from oma.channels.order_create import external_orders_drain
from oma.channels.order_import import QUEUED_ORDERS_TASK, order_import_run_queued, order_imports_enqueue_stalled
from oma.channels.order_intake import DRAIN_TASK, external_order_drains, external_orders_drain_enqueue
from oma.channels.selectors import external_order_stores_due, polling_channels
from oma.channels.services import channel_poll, external_shipments_match_all_waiting, external_shipments_match_waiting
from oma.core.leases import lease_release, lease_take
from oma.core.outbox import publish, publish_each
from oma.stores.models import Store

# A poll stops asking after this long (ShipStation allows 40 requests a minute: about 300 orders), well inside
# the task's soft time limit; orders not reached are first in line next time.
POLL_TIME_BUDGET_SECONDS = 420
POLL_LEASE = timedelta(minutes=10)


@shared_task(name="channels.poll_all", ignore_result=True, acks_late=False)
def poll_all() -> int:
    """Beat entry point: one poll task per enabled polling channel that is not paused; then the matching net."""
    now = timezone.now()
    ids = list(
        polling_channels()
        .filter(Q(poll_paused_until__isnull=True) | Q(poll_paused_until__lte=now))
        .values_list("pk", flat=True)
    )
    # A broker that is down is logged, not raised: the next beat run polls them (their lease and pause rows say so).
    publish_each(poll_channel, [(channel_id,) for channel_id in ids])
    publish(match_waiting_all)
    return len(ids)


@shared_task(name="channels.poll_channel", ignore_result=True, soft_time_limit=540, time_limit=600)
def poll_channel(channel_id: int) -> str:
    now = timezone.now()
    # The lease (oma.core.leases): of two copies of this task (redelivery, a manual run), the second skips.
    row = Channel.objects.filter(pk=channel_id)
    polling = row.filter(is_enabled=True).filter(Q(poll_paused_until__isnull=True) | Q(poll_paused_until__lte=now))
    if not lease_take(polling, ttl=POLL_LEASE, now=now, holder_field=None, until_field="poll_lease_until"):
        return "skipped"
    try:
        channel = Channel.objects.select_related("store").get(pk=channel_id)
        return channel_poll(channel=channel, time_budget_seconds=POLL_TIME_BUDGET_SECONDS).describe()
    finally:
        lease_release(row, holder_field=None, until_field="poll_lease_until")


@shared_task(name="channels.match_waiting", ignore_result=True)
def match_waiting(store_id: int, order_ids: list[int]) -> str:
    store = Store.objects.filter(pk=store_id).first()
    if store is None:
        return "no store"
    return external_shipments_match_waiting(store=store, order_ids=order_ids).describe()


@shared_task(name="channels.match_waiting_all", ignore_result=True)
def match_waiting_all() -> str:
    return external_shipments_match_all_waiting().describe()


# 100,000 rows (the most a file may hold) import in about 13 minutes on a small machine: well inside these limits,
# which stay below the broker's visibility timeout (3600 s).
@shared_task(name="channels.import_queued_csv", ignore_result=True, soft_time_limit=3000, time_limit=3300)
def import_queued_csv(csv_import_id: int) -> str:
    report = csv_import_run_queued(csv_import_id=csv_import_id)
    return report.summary() if report is not None else "nothing to do: imported already"


@shared_task(name=QUEUED_ORDERS_TASK, ignore_result=True, soft_time_limit=3000, time_limit=3300)
def import_queued_orders(order_import_id: int) -> str:
    report = order_import_run_queued(order_import_id=order_import_id)
    return report.summary() if report is not None else "nothing to do: imported already"


@shared_task(name="channels.enqueue_stalled_csv_imports", ignore_result=True, acks_late=False)
def enqueue_stalled_csv_imports() -> int:
    """Beat: queue again the uploaded files (tracking CSVs and order files) whose worker never came or died."""
    return csv_imports_enqueue_stalled() + order_imports_enqueue_stalled()


# A drain that made no progress (its rows held by other workers) is queued again after this long, not at once.
DRAIN_IDLE_REQUEUE_SECONDS = 10.0


@shared_task(name=DRAIN_TASK, ignore_result=True, soft_time_limit=240, time_limit=300)
def create_external_orders(store_id: int, slot: int | None = None) -> str:
    """Drain `slot` of the store's external orders (its share of them): create and cancel in Genstore what is due,
    within a time budget; queued again while its share has rows due. A second copy finds the slot's drain held and
    returns. `slot` None (messages from before drains had slots): queue one drain per slot with rows due."""
    if slot is None:
        external_orders_drain_enqueue(store_id=store_id)
        return "queued the drains with rows due"
    slots = external_order_drains()
    slot %= slots  # a message queued before the number of drains went down: still a share
    result = external_orders_drain(store_id=store_id, slot=slot, slots=slots)
    if result.more_due:
        countdown = result.retry_after or (None if result.progressed else DRAIN_IDLE_REQUEUE_SECONDS)
        external_orders_drain_enqueue(store_id=store_id, slot=slot, countdown=countdown)
    return result.describe()


@shared_task(name="channels.enqueue_external_order_drains", ignore_result=True, acks_late=False)
def enqueue_external_order_drains() -> int:
    """Beat, every minute: for every store with external-order work due (lost messages, backoffs that ended, rows a
    killed worker left), a drain per slot whose share has rows due."""
    store_ids = external_order_stores_due(now=timezone.now())
    for store_id in store_ids:
        external_orders_drain_enqueue(store_id=store_id)
    return len(store_ids)
