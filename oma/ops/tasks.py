from __future__ import annotations

import os
import socket

from celery import shared_task
from django.utils import timezone

from oma.ops.health import WORKER_HEARTBEAT_NAME
from oma.ops.models import Heartbeat


@shared_task(name="ops.heartbeat", ignore_result=True, acks_late=False, soft_time_limit=20, time_limit=30)
def heartbeat() -> str:
    """Sent by beat every 30 s: when a worker runs it, beat, broker and workers all work (/healthz reads it)."""
    detail = f"{socket.gethostname()}:{os.getpid()}"
    Heartbeat.objects.update_or_create(
        name=WORKER_HEARTBEAT_NAME, defaults={"beat_at": timezone.now(), "detail": detail}
    )
    return detail
