"""Uploaded files waiting for a worker: the queue behind big tracking CSV and order file uploads.

The admin does not import a big file inside the web request: it checks the file, keeps its bytes on the import's
row (`queued_file`) and publishes the import's task after the commit. The row is the queue, the broker only a
nudge: a worker claims the row (a lease kept as the moment it was taken, `claimed_at`), imports it, and empties
`queued_file` once done (`finished_at` set). A task the broker lost, or an attempt whose worker died, leaves the
row queued: beat publishes it again once it has waited `STALLED_AFTER` and no live claim holds it. A file is
imported late, never dropped, and never by two attempts at once.

Every import model that queues files has the same columns: `queued_file`, `claimed_at`, `started_at` (when the
upload was made) and `finished_at` (CsvImport, OrderImport).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TypeVar

from celery import current_app
from django.db import models
from django.db.models import QuerySet

from oma.core.leases import lease_free, lease_take
from oma.core.outbox import AnyTask, after_commit, publish, publish_each

M = TypeVar("M", bound=models.Model)

# A claim older than this belongs to an attempt that has ended (the import tasks' hard time limit is 3300 s).
QUEUED_IMPORT_CLAIM = timedelta(hours=1)
# A queued import no worker has taken after this long is queued again (a worker takes one within seconds).
STALLED_AFTER = timedelta(minutes=10)


def task_named(name: str) -> AnyTask:
    """An import task, by name: oma.channels.tasks imports the import modules, so they cannot import it."""
    task: AnyTask = current_app.tasks[name]
    return task


def queued_files(model: type[M]) -> QuerySet[M]:
    """The imports of `model` still waiting to be imported (or being imported)."""
    return model._default_manager.filter(finished_at__isnull=True, queued_file__isnull=False)


def queued_file_hold(row: models.Model, data: bytes, *, task_name: str) -> None:
    """Keep `data` on the import's row and publish its task once the current transaction commits. The task is
    looked up then, not now; a broker that is down is logged, and beat queues the row again when it has stalled."""
    row.queued_file = data  # type: ignore[attr-defined]
    row.save(update_fields=["queued_file"])
    after_commit(lambda: publish(task_named(task_name), row.pk))


def queued_file_claim(model: type[M], *, pk: int, now: datetime) -> bool:
    """Take the import `pk` for this attempt: False when it has run already, another attempt holds it (a task
    delivered twice), or the row is gone. An attempt lost half-way is taken over once its claim has expired."""
    return bool(lease_take(
        queued_files(model).filter(pk=pk), ttl=QUEUED_IMPORT_CLAIM, now=now,
        holder_field=None, until_field=None, taken_field="claimed_at",
    ))


def queued_files_enqueue_stalled(model: type[M], *, task_name: str, now: datetime) -> int:
    """Publish again the imports whose task never ran (the broker lost it, or was down when the upload committed)
    or whose attempt ended without finishing (a killed worker); the number published."""
    unclaimed = lease_free(now=now, ttl=QUEUED_IMPORT_CLAIM, until_field=None, taken_field="claimed_at")
    stalled = list(
        queued_files(model).filter(unclaimed, started_at__lt=now - STALLED_AFTER).values_list("pk", flat=True)
    )
    if stalled:
        publish_each(task_named(task_name), [(pk,) for pk in stalled])  # broker down: the next run
    return len(stalled)
