"""Processing: claim deliveries (oma.core.leases), call their topics' handlers (oma.core.topic_handlers, registered
by the apps that own the data), record the outcome, and retry with backoff or fail."""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Case, F, Q, QuerySet, Value, When
from django.utils import timezone

from oma.core.leases import Pk, lease_take
from oma.core.topic_handlers import (
    PermanentProcessingError,
    TopicBatchFactory,
    TopicDelivery,
    batch_for,
    handler_for,
)
from oma.genstore.errors import GenstoreError, GenstoreRateLimited
from webhooks.models import WebhookDelivery

logger = logging.getLogger(__name__)

State = WebhookDelivery.State


@dataclass(frozen=True)
class ProcessResult:
    """What one processing call did: the state it left, and when to try again if it should."""

    state: str
    retry_in: float | None = None


class _ClaimLost(Exception):
    """Another attempt took over this delivery (our lease expired): roll back and leave it to that attempt."""


# A retry's countdown may fire a moment before the time it was set for.
_CLAIM_TOLERANCE = timedelta(seconds=2)


def _claim(ids: Sequence[int], *, token: str, now: datetime) -> list[Pk]:
    """Take the processing lease (oma.core.leases) of the unfinished deliveries among `ids` that no attempt holds:
    received rows; retries whose backoff is over (their lease is the "not before"); processing rows whose lease ran
    out (their attempt died). The same UPDATE moves them to processing and counts the attempt."""
    lease = timedelta(seconds=settings.OMA_WEBHOOK_LEASE_SECONDS)
    return lease_take(
        WebhookDelivery.objects.filter(pk__in=ids, state__in=WebhookDelivery.UNFINISHED_STATES),
        holder=token,
        ttl=lease,
        now=now,
        holder_field="claim_token",
        until_field="lease_expires_at",
        also_free=Q(state=State.RECEIVED) | Q(state=State.RETRYING, lease_expires_at__lte=now + _CLAIM_TOLERANCE),
        values={
            "state": State.PROCESSING,
            "attempts": F("attempts") + 1,
            # If this attempt dies, the outbox hands the rows out again once the lease has run out.
            "next_dispatch_at": now + lease + timedelta(seconds=5),
        },
    )


def deliveries_process(*, delivery_ids: Sequence[int]) -> dict[int, ProcessResult]:
    """Process deliveries at most once each: claim them, run their topics' handlers, record the outcomes.

    The claim is one conditional UPDATE (unfinished, unclaimed rows only) that counts the attempt and stamps a
    claim token; effects and the "processed" mark commit in one transaction fenced by that token, so a copy of the
    task that arrives late (outbox, broker redelivery) finds nothing to do. Deliveries of one store on a batched
    topic (orders/*) are handled together by their topic's batch; every other topic runs on its own.
    """
    ids = list(dict.fromkeys(delivery_ids))
    token = uuid.uuid4().hex
    taken = _claim(ids, token=token, now=timezone.now())
    claimed = (
        WebhookDelivery.objects.filter(pk__in=taken)
        .order_by("pk")  # the order of receipt: of two versions with the same updatedAt, the later one wins
    )
    results = {delivery_id: ProcessResult(state="skipped") for delivery_id in ids}
    batches: dict[tuple[int, TopicBatchFactory], list[WebhookDelivery]] = {}
    for delivery in claimed:
        factory = batch_for(delivery.topic)
        if factory is not None and delivery.store_id is not None:
            batches.setdefault((delivery.store_id, factory), []).append(delivery)
        else:
            results[delivery.pk] = _process_one(delivery, token)
    for (store_id, factory), group in batches.items():
        results.update(_process_batch(factory, store_id, group, token))
    return results


def _fenced(delivery: WebhookDelivery, token: str) -> QuerySet[WebhookDelivery]:
    return WebhookDelivery.objects.filter(pk=delivery.pk, claim_token=token, state=State.PROCESSING)


def _processed(outcome: str | Case) -> dict[str, object]:
    """The column values of a processed delivery (`outcome` may be an expression)."""
    return {
        "state": State.PROCESSED,
        "processed_at": timezone.now(),
        "outcome": outcome,
        "last_error": "",
        "next_dispatch_at": None,
        "lease_expires_at": None,
    }


def load_payload(delivery: WebhookDelivery) -> dict[str, Any]:
    try:
        payload = json.loads(delivery.body)
    except (ValueError, RecursionError) as exc:
        raise PermanentProcessingError("stored body is not JSON") from exc
    if not isinstance(payload, dict):
        raise PermanentProcessingError("stored body is not a JSON object")
    return payload


def topic_delivery(delivery: WebhookDelivery) -> TopicDelivery:
    """What a topic handler is given of a delivery; PermanentProcessingError once its store was erased."""
    if delivery.store_id is None:
        raise PermanentProcessingError("the store was erased")
    return TopicDelivery(
        delivery_id=delivery.pk,
        store_id=delivery.store_id,
        topic=delivery.topic,
        webhook_id=delivery.webhook_id,
        payload=load_payload(delivery),
    )


def process_payload(delivery: WebhookDelivery) -> str:
    """Run the handler of a delivery's topic (any not handled in batches); raises PermanentProcessingError when it
    can never succeed."""
    if delivery.store_id is None:
        raise PermanentProcessingError("the store was erased")
    handler = handler_for(delivery.topic)
    if handler is None:
        return "topic not handled by OMA"
    item = topic_delivery(delivery)
    try:
        return handler(item)
    except KeyError as exc:  # the shape was checked on receipt; a redacted body may no longer fit
        raise PermanentProcessingError(f"payload lacks {exc}") from exc


def _process_one(delivery: WebhookDelivery, token: str) -> ProcessResult:
    fenced = _fenced(delivery, token)
    try:
        with transaction.atomic():
            outcome = process_payload(delivery)[:255]
            if not fenced.update(**_processed(outcome)):
                raise _ClaimLost
    except _ClaimLost:
        logger.warning("delivery %s: attempt %d lost its claim; its effects were rolled back", delivery.pk,
                       delivery.attempts)
        return ProcessResult(state="skipped")
    except Exception as exc:
        return _delivery_attempt_failed(delivery=delivery, attempt=delivery.attempts, fenced=fenced, exc=exc)
    logger.debug("delivery %s (%s) processed: %s", delivery.pk, delivery.topic, outcome)
    return ProcessResult(state=State.PROCESSED)


# A batch's reads (orders whose payload lacks what OMA needs are read from the API) stop after this long, well
# inside the task's time limits; the deliveries left are retried individually.
_BATCH_READS_BUDGET_SECONDS = 60


def _process_batch(
    factory: TopicBatchFactory, store_id: int, deliveries: list[WebhookDelivery], token: str
) -> dict[int, ProcessResult]:
    """Deliveries of one store on a batched topic: the batch reads each one (outside any transaction), then applies
    those still claimed and they are marked processed, in one transaction."""
    results: dict[int, ProcessResult] = {}

    def failed(delivery: WebhookDelivery, exc: Exception) -> ProcessResult:
        return _delivery_attempt_failed(
            delivery=delivery, attempt=delivery.attempts, fenced=_fenced(delivery, token), exc=exc
        )

    try:
        batch = factory(store_id)
    except Exception as exc:
        return {delivery.pk: failed(delivery, exc) for delivery in deliveries}
    prepared: list[WebhookDelivery] = []
    started = time.monotonic()
    try:
        for delivery in deliveries:
            try:
                if time.monotonic() - started > _BATCH_READS_BUDGET_SECONDS:
                    raise TimeoutError("the batch spent its time reading other deliveries; retried on its own")
                batch.read(topic_delivery(delivery))
            except Exception as exc:
                results[delivery.pk] = failed(delivery, exc)
                continue
            prepared.append(delivery)
        if not prepared:
            return results
        try:
            with transaction.atomic():
                held = set(
                    WebhookDelivery.objects.select_for_update()
                    .filter(pk__in=[delivery.pk for delivery in prepared], claim_token=token, state=State.PROCESSING)
                    .values_list("pk", flat=True)
                )
                outcomes = {pk: text[:255] for pk, text in batch.apply(held).items()}
                # One UPDATE for the batch (the rows are locked above; only the outcome differs from row to row).
                if outcomes:
                    WebhookDelivery.objects.filter(pk__in=list(outcomes)).update(
                        **_processed(Case(*[When(pk=pk, then=Value(text)) for pk, text in outcomes.items()]))
                    )
        except Exception as exc:
            for delivery in prepared:
                results[delivery.pk] = failed(delivery, exc)
            return results
    finally:
        batch.close()
    for delivery in prepared:
        if delivery.pk not in held:
            logger.warning("delivery %s: attempt %d lost its claim before processing", delivery.pk, delivery.attempts)
        results[delivery.pk] = ProcessResult(state=State.PROCESSED if delivery.pk in held else "skipped")
    return results


def retry_delay(*, attempt: int, exc: BaseException | None = None) -> float:
    """Exponential backoff from the base, capped, with jitter; at least what a rate limit asked for."""
    base = settings.OMA_WEBHOOK_RETRY_BASE_SECONDS
    cap = settings.OMA_WEBHOOK_RETRY_MAX_SECONDS
    delay = min(cap, base * 2 ** max(attempt - 1, 0))
    delay = delay / 2 + random.uniform(0, delay / 2)
    if isinstance(exc, GenstoreRateLimited) and exc.retry_after:
        delay = max(delay, min(cap, exc.retry_after))
    return round(delay, 1)


def _is_permanent(exc: BaseException) -> bool:
    if isinstance(exc, PermanentProcessingError):
        return True
    return isinstance(exc, GenstoreError) and not exc.transient


def _delivery_attempt_failed(
    *, delivery: WebhookDelivery, attempt: int, fenced: QuerySet[WebhookDelivery], exc: Exception
) -> ProcessResult:
    error = f"{type(exc).__name__}: {exc}"[:4000]
    max_attempts = settings.OMA_WEBHOOK_MAX_ATTEMPTS
    if _is_permanent(exc) or attempt >= max_attempts:
        fenced.update(state=State.FAILED, last_error=error, next_dispatch_at=None, lease_expires_at=None)
        log = logger.warning if isinstance(exc, GenstoreError | PermanentProcessingError) else logger.exception
        log("delivery %s (%s, %s) failed after %d attempt(s): %s", delivery.pk, delivery.topic,
            delivery.shop_domain, attempt, error)
        return ProcessResult(state=State.FAILED)
    delay = retry_delay(attempt=attempt, exc=exc)
    redispatch = timedelta(seconds=settings.OMA_WEBHOOK_REDISPATCH_SECONDS)
    retry_at = timezone.now() + timedelta(seconds=delay)
    fenced.update(
        state=State.RETRYING,
        last_error=error,
        lease_expires_at=retry_at,  # not claimable before: a stray copy of the task cannot cut the backoff short
        next_dispatch_at=retry_at + redispatch,
    )
    logger.warning("delivery %s (%s, %s) attempt %d failed, retrying in %.0f s: %s", delivery.pk, delivery.topic,
                   delivery.shop_domain, attempt, delay, error)
    return ProcessResult(state=State.RETRYING, retry_in=delay)
