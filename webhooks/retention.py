"""Retention: deliveries and customer data exports older than OMA_WEBHOOK_RETENTION_DAYS are deleted."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from webhooks.models import CustomerDataExport, WebhookDelivery

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PruneResult:
    deliveries: int
    exports: int


def deliveries_prune(*, now: datetime | None = None, batch_size: int | None = None) -> PruneResult:
    """Delete deliveries and customer exports older than OMA_WEBHOOK_RETENTION_DAYS, one bounded batch per call.

    Called every minute by the outbox task, so a large backlog drains steadily without one long delete.
    """
    now = now or timezone.now()
    batch_size = batch_size or settings.OMA_WEBHOOK_PRUNE_BATCH
    cutoff = now - timedelta(days=settings.OMA_WEBHOOK_RETENTION_DAYS)
    old_ids = list(
        WebhookDelivery.objects.filter(received_at__lt=cutoff).order_by("received_at").values_list("pk", flat=True)[
            :batch_size
        ]
    )
    if old_ids:
        WebhookDelivery.objects.filter(pk__in=old_ids).delete()
    export_ids = list(
        CustomerDataExport.objects.filter(created_at__lt=cutoff).values_list("pk", flat=True)[:batch_size]
    )
    if export_ids:
        CustomerDataExport.objects.filter(pk__in=export_ids).delete()
    if old_ids or export_ids:
        logger.info("pruned %d webhook deliveries and %d customer exports older than %s", len(old_ids),
                    len(export_ids), cutoff.date())
    return PruneResult(deliveries=len(old_ids), exports=len(export_ids))
