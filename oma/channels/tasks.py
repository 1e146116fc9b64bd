"""Thin Celery tasks for channels: ids in, load, call one service. Each is safe to run twice."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.db.models import Q
from django.utils import timezone

from oma.channels.csv_import import csv_import_run_queued, csv_imports_enqueue_stalled
from oma.channels.models import Channel
from oma.channels.selectors import polling_channels
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


@shared_task(name="channels.enqueue_stalled_csv_imports", ignore_result=True, acks_late=False)
def enqueue_stalled_csv_imports() -> int:
    return csv_imports_enqueue_stalled()
