"""The Celery app and OMA's periodic schedule.

The schedule is defined here, in code, and synced into django-celery-beat's tables on every `migrate`
(and by `manage.py sync_beat_schedule`), so merchants see and pause the periodic tasks in admin while the
code stays the single source of the schedule.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from celery import Celery
from celery.schedules import crontab
from celery.signals import setup_logging
from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

from oma.core.beat import beat_schedule_define
from oma.ops.logging import configure_celery_logging

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oma.settings")


def _closed_channel_raises_connection_error(connparams: Callable[..., Any]) -> Callable[..., Any]:
    """Keep a worker alive through a Redis restart while it holds unacknowledged (acks_late) messages.

    On a lost broker connection Celery 5.7 closes the connection; kombu 5.7's Redis channel then still tries to
    use it (to put unacknowledged messages back, or to ack a task that finishes after the reconnect), finds no
    connection and raises AttributeError. Celery treats that as unrecoverable: the worker hangs in its shutdown and
    consumes nothing ever again (tests/webhooks/test_acceptance.py, about one run in three; celery/celery#10205).
    Raised as a connection error instead, it is what kombu and Celery expect from a closed connection: the close
    goes on, the late ack is logged as lost, and the worker reconnects. The messages concerned come back after
    Redis's visibility timeout (OMA's tasks are safe to run twice), and the outboxes re-dispatch unfinished work.
    """

    def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self.connection is None or self.connection.client is None:
            raise RedisConnectionError("this broker channel's connection is closed")
        return connparams(self, *args, **kwargs)

    return guarded


kombu_redis.Channel._connparams = _closed_channel_raises_connection_error(  # type: ignore[attr-defined]
    kombu_redis.Channel._connparams  # type: ignore[attr-defined]  # kombu's private, untyped method
)

app = Celery("oma")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def _use_django_logging(loglevel: int | str | None = None, logfile: str | None = None, **kwargs: object) -> None:
    """Workers and beat log through settings.LOGGING (redaction, store/order ids), not Celery's own handlers."""
    configure_celery_logging(loglevel=loglevel, logfile=logfile)

# name -> task, schedule (a crontab or a number of seconds), kwargs, and how long a missed run stays useful.
BEAT_SCHEDULE: dict[str, dict] = {
    "notifications: send customer emails still due (lost messages, retries whose time has come)": {
        "task": "notifications.enqueue_due",
        "schedule": 60,
        "expire_seconds": 55,
    },
    "events: send due event deliveries; find alerts and shipment/order changes no signal announced": {
        "task": "events.enqueue_due",
        "schedule": 60,
        "expire_seconds": 55,
    },
    "orders: incremental sweep of every active store": {
        "task": "orders.sweep_all_stores",
        "schedule": crontab(minute="*/15"),
        "kwargs": {"kind": "incremental"},
        "expire_seconds": 14 * 60,
    },
    "orders: nightly full sweep of every active store": {
        "task": "orders.sweep_all_stores",
        "schedule": crontab(hour=3, minute=17),
        "kwargs": {"kind": "full"},
        "expire_seconds": 6 * 3600,
    },
    "webhooks: outbox (re-enqueue undispatched or stuck deliveries; prune old ones)": {
        "task": "webhooks.dispatch_outbox",
        "schedule": 60,
        "expire_seconds": 55,
    },
    "fulfillment: push what is still pending (lost triggers, retries due, dead workers)": {
        "task": "fulfillment.push_pending",
        "schedule": 60,
        "expire_seconds": 55,
    },
    "tracking: poll the carriers for due shipments": {
        "task": "tracking.poll_due",
        "schedule": 60,
        "expire_seconds": 55,
    },
    "channels: poll ShipStation for orders still lacking tracking; match records waiting for their order": {
        "task": "channels.poll_all",
        "schedule": crontab(minute="*/10"),
        "expire_seconds": 9 * 60,
    },
    "channels: create and cancel external orders in Genstore (drains lost, backoffs ended, workers that died)": {
        "task": "channels.enqueue_external_order_drains",
        "schedule": 60,
        "expire_seconds": 55,
    },
    "channels: queue again uploaded tracking and order files whose worker never came or died": {
        "task": "channels.enqueue_stalled_csv_imports",
        "schedule": crontab(minute="*/5"),
        "expire_seconds": 4 * 60,
    },
    "merchant: alert digests (each store once a day, from its chosen hour)": {
        "task": "merchant.send_alert_digests",
        "schedule": crontab(minute="*/15"),
        "expire_seconds": 14 * 60,
    },
    "ops: heartbeat (a worker ran a task beat sent: /healthz and /metrics read it)": {
        "task": "ops.heartbeat",
        "schedule": 30,
        "expire_seconds": 25,
    },
    "fulfillment: nightly reconciliation of every active store (report only; the dashboard shows it)": {
        "task": "fulfillment.reconcile_all_stores",
        "schedule": crontab(hour=4, minute=23),  # after the nightly full sweep (03:17)
        "expire_seconds": 6 * 3600,
    },
    "merchant: learn delivery times for estimated delivery (nightly)": {
        "task": "merchant.learn_transit_times",
        "schedule": crontab(hour=2, minute=43),
        "expire_seconds": 6 * 3600,
    },
}

beat_schedule_define(BEAT_SCHEDULE)
