"""Replay: hand deliveries back to processing (failed ones, or any an operator picks)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from oma.core.leases import lease_free
from oma.core.outbox import after_commit
from oma.stores.models import Store
from webhooks.dispatch import deliveries_publish
from webhooks.models import WebhookDelivery

logger = logging.getLogger(__name__)

State = WebhookDelivery.State


def deliveries_replay(*, deliveries: QuerySet[WebhookDelivery]) -> int:
    """Process the given deliveries again (failed ones, or any an operator picks); in-flight ones are left alone.

    Processing is idempotent, so replaying a processed delivery changes only what is out of date. Ignored
    deliveries have nothing to replay.
    """
    now = timezone.now()
    redispatch = timedelta(seconds=settings.OMA_WEBHOOK_REDISPATCH_SECONDS)
    # An attempt in flight holds its lease: a processing row is replayable only once its lease is free.
    in_flight_free = ~Q(state=State.PROCESSING) | lease_free(now=now, until_field="lease_expires_at")
    replayable = deliveries.exclude(state=State.IGNORED).filter(in_flight_free, store__isnull=False)
    with transaction.atomic():
        ids = list(replayable.select_for_update(skip_locked=True).values_list("pk", flat=True))
        WebhookDelivery.objects.filter(pk__in=ids).update(
            state=State.RECEIVED,
            attempts=0,
            replay_count=F("replay_count") + 1,
            next_dispatch_at=now + redispatch,
            lease_expires_at=None,
            processed_at=None,
        )
        after_commit(partial(deliveries_publish, ids))
    if ids:
        logger.info("replaying %d webhook deliveries", len(ids))
    return len(ids)


def deliveries_for_replay(
    *, store: Store | None = None, state: str | None = State.FAILED, since: datetime | None = None
) -> QuerySet[WebhookDelivery]:
    queryset = WebhookDelivery.objects.all()
    if store is not None:
        queryset = queryset.filter(store=store)
    if state:
        queryset = queryset.filter(state=state)
    if since is not None:
        queryset = queryset.filter(received_at__gte=since)
    return queryset
