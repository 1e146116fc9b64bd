"""Subscriptions, events and their delivery: the Standard Webhooks sender (standardwebhooks.com, v1).

* Recording (`events_record`): an event is an `Event` row plus one `EventDelivery` per enabled subscription of its
  store that takes its type, written in the caller's transaction (a rolled-back change leaves no event); the
  delivery task is published after the commit, and beat publishes whatever is still due (`deliveries_dispatch_due`),
  so a broker that lost the message costs a delay, never the event.
* Sending (`deliveries_send_due`): a worker claims due deliveries (SELECT ... FOR UPDATE SKIP LOCKED, then a claim
  that runs out, so a worker that died gives them back), POSTs each once through oma.core.outbound's guarded
  session (the merchant chose the URL: public addresses only unless the operator allows the host in
  OMA_MERCHANT_API_HOSTS, no redirect followed, timeouts), and records the answer. A 2xx delivers it. A 5xx, 408,
  429 or a transport failure (timeout, refused or dropped connection) is tried again later, on RetryPolicy's
  backoff (429's Retry-After as a floor), until DELIVERY_RETRY.max_attempts; any other answer (a 4xx, a redirect)
  or a URL OMA refuses to call fails it at once. A failed delivery waits for "send again" in admin.
* Each attempt carries `webhook-id` (the event's, the same on every attempt: the receiver's idempotency key),
  `webhook-timestamp` (that attempt's) and `webhook-signature` (`v1,` + base64 HMAC-SHA256 of
  "{id}.{timestamp}.{body}" keyed with the subscription's `whsec_` secret, the same `sign()` the inbound channel
  webhooks are checked with). Body: {"type", "timestamp", "data"}. At least once: a worker killed between the
  receiver's answer and our record sends that event again, under the same `webhook-id`.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import requests
from celery import current_app
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from oma.channels.connectors.webhook import generate_secret, sign
from oma.core.outbound import (
    OutboundRefused,
    OutboundSession,
    OutboundURLError,
    host_matches,
    operator_api_hosts,
    outbound_session,
    parse_base_url,
    safe_error_text,
)
from oma.core.outbox import DispatchResult, dispatch_due, enqueue_each_on_commit, publish
from oma.core.retry import DEFAULT_RETRY_STATUSES, TRANSIENT_EXCEPTIONS, RetryPolicy, retry_after_seconds
from oma.events import types
from oma.events.models import Event, EventDelivery, EventSubscription
from oma.stores.models import Store

logger = logging.getLogger(__name__)

DELIVER_TASK = "events.deliver_due"
# 10 attempts, waits doubling from about a minute to a cap of 6 hours: about 8 hours of retries in all.
DELIVERY_RETRY = RetryPolicy(
    max_attempts=10, backoff_base=60.0, backoff_cap=6 * 3600.0, jitter_floor=0.5, max_retry_after=6 * 3600.0,
    retry_after_is_floor=True, retry_statuses=DEFAULT_RETRY_STATUSES | {408},
)
TIMEOUT = (5.0, 10.0)  # (connect, read) seconds: a receiver answers quickly and works afterwards
CLAIM_FOR = timedelta(minutes=2)  # longer than one attempt can take (TIMEOUT), so a claim never lapses mid-send
REDISPATCH_AFTER = timedelta(minutes=5)  # a published task not started by then is published again
IDS_PER_TASK = 50
SEND_BATCH = 100
CLAIM_CHUNK = 5  # claimed together: at most this many attempts (TIMEOUT each) run past the time budget
SEND_TIME_BUDGET = 120.0  # seconds a task spends sending; the task's soft limit (240 s) leaves room for a chunk
ERROR_CHARS = 300
USER_AGENT = "OMA-Webhooks/1"
ALL_HOSTS = ("*",)  # every host a merchant names must resolve to public addresses (unless the operator allows it)


# --- subscriptions ------------------------------------------------------------------------------------------


def subscription_url_error(url: str, *, user: object) -> str | None:
    """Why `user` may not send events to `url`, or None. Any public https URL; http, or a host on a private
    network, only for hosts the operator allows (OMA_MERCHANT_API_HOSTS) and for superusers. The addresses a host
    resolves to are checked again on every delivery."""
    try:
        parsed = parse_base_url(url)
    except OutboundURLError as exc:
        return str(exc)
    if getattr(user, "is_superuser", False) or host_matches(parsed.host, operator_api_hosts()):
        return None
    return None if parsed.scheme == "https" else "Use an https URL."


def subscription_event_types_error(event_types: Sequence[str]) -> str | None:
    unknown = [value for value in event_types if value not in types.SUBSCRIBABLE]
    if unknown:
        return f"Unknown event types: {', '.join(unknown)}"
    return None if event_types else "Choose at least one event type."


def subscription_create(
    *, store: Store, url: str, event_types: Sequence[str], description: str = "", is_enabled: bool = True
) -> EventSubscription:
    """A new subscription with a fresh `whsec_` secret (show it to the merchant once)."""
    problem = subscription_event_types_error(event_types)
    if problem:
        raise ValueError(problem)
    return EventSubscription.objects.create(
        store=store, url=url, event_types=list(dict.fromkeys(event_types)), description=description,
        is_enabled=is_enabled, secret=generate_secret(),
    )


def subscription_rotate_secret(*, subscription: EventSubscription) -> str:
    """A new secret, in force for the next attempt of every delivery (the receiver must switch at once)."""
    subscription.secret = generate_secret()
    subscription.save(update_fields=["secret", "updated_at"])
    return subscription.secret


def subscriptions_taking(*, event_types: Collection[str], store_ids: Collection[int] | None = None) -> QuerySet:
    """Enabled subscriptions of active stores that take at least one of these types (filtered in Python: a store
    has a handful of subscriptions)."""
    rows = EventSubscription.objects.filter(is_enabled=True, store__is_active=True)
    if store_ids is not None:
        rows = rows.filter(store_id__in=list(store_ids))
    ids = [row.pk for row in rows.only("pk", "event_types") if types.takes_any(row.event_types, event_types)]
    return EventSubscription.objects.filter(pk__in=ids)


def stores_subscribed(*, event_types: Collection[str], store_ids: Collection[int] | None = None) -> set[int]:
    return set(subscriptions_taking(event_types=event_types, store_ids=store_ids).values_list("store_id", flat=True))


# --- recording events -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewEvent:
    store_id: int
    event_type: str
    data: dict[str, Any]


def new_msg_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def events_record(events: Sequence[NewEvent], *, only_to: Collection[int] | None = None) -> list[int]:
    """Record these events and one delivery per subscription that takes each (or, with `only_to`, per one of those
    subscriptions, whatever types it takes); publish the deliveries after commit. Returns the delivery ids.
    An event no subscription takes is not recorded at all."""
    if not events:
        return []
    subscriptions: dict[int, list[EventSubscription]] = defaultdict(list)
    rows = EventSubscription.objects.filter(
        is_enabled=True, store__is_active=True, store_id__in={event.store_id for event in events}
    )
    if only_to is not None:
        rows = EventSubscription.objects.filter(pk__in=list(only_to))
    for subscription in rows.only("pk", "store_id", "event_types"):
        subscriptions[subscription.store_id].append(subscription)
    now = timezone.now()
    with transaction.atomic():
        owed: list[tuple[Event, list[EventSubscription]]] = []
        for event in events:
            receivers = [
                row for row in subscriptions.get(event.store_id, [])
                if only_to is not None or types.takes(row.event_types, event.event_type)
            ]
            if receivers:
                owed.append((Event(store_id=event.store_id, msg_id=new_msg_id(), event_type=event.event_type,
                                   payload=event.data), receivers))
        if not owed:
            return []
        Event.objects.bulk_create([event for event, _ in owed])
        deliveries = EventDelivery.objects.bulk_create([
            EventDelivery(store_id=event.store_id, event=event, subscription=subscription, next_attempt_at=now,
                          dispatch_at=now + REDISPATCH_AFTER)
            for event, receivers in owed for subscription in receivers
        ])
        ids = [delivery.pk for delivery in deliveries]
        deliveries_enqueue_on_commit(ids)
    return ids


def deliveries_enqueue_on_commit(ids: Sequence[int]) -> None:
    """Publish the delivery task for these deliveries once the transaction commits; ids the broker did not take
    are due for beat's next dispatch at once."""

    chunks = [list(ids[start:start + IDS_PER_TASK]) for start in range(0, len(ids), IDS_PER_TASK)]

    def not_queued(calls: list[tuple[object, ...]]) -> None:
        missed = [pk for chunk in chunks if (chunk,) in calls for pk in chunk]
        pending = EventDelivery.objects.filter(pk__in=missed, state=EventDelivery.State.PENDING)
        pending.update(dispatch_at=timezone.now())

    enqueue_each_on_commit(current_app.tasks[DELIVER_TASK], [(chunk,) for chunk in chunks], on_broker_down=not_queued)


def deliveries_dispatch_due(*, now: datetime | None = None) -> DispatchResult:
    """Beat: publish the deliveries whose task was lost or whose retry time has come (oma.core.outbox)."""
    task = current_app.tasks[DELIVER_TASK]
    return dispatch_due(
        EventDelivery.objects.filter(state=EventDelivery.State.PENDING),
        due_field="dispatch_at",
        send=lambda ids: publish(task, list(ids)),
        send_size=IDS_PER_TASK,
        redispatch_after=REDISPATCH_AFTER,
        now=now,
    )


def deliveries_send_again(*, deliveries: QuerySet[EventDelivery]) -> int:
    """Admin's "send again": the deliveries start over (a fresh round of attempts, same webhook-id)."""
    now = timezone.now()
    with transaction.atomic():
        ids = list(deliveries.values_list("pk", flat=True))
        EventDelivery.objects.filter(pk__in=ids).update(
            state=EventDelivery.State.PENDING, attempts=0, next_attempt_at=now, dispatch_at=now + REDISPATCH_AFTER,
            claimed_until=None, delivered_at=None,
        )
        deliveries_enqueue_on_commit(ids)
    return len(ids)


def subscriptions_send_test(*, subscriptions: QuerySet[EventSubscription]) -> int:
    """Admin's "send a test event": one `oma.test` event to each of these subscriptions."""
    sent = 0
    for subscription in subscriptions.select_related("store"):
        data = {
            "store": store_data(subscription.store),
            "message": "A test event from OMA: your endpoint and its secret work if this signature checks out.",
            "subscription": {"id": subscription.pk, "eventTypes": subscription.event_types},
        }
        sent += len(events_record([NewEvent(subscription.store_id, types.TEST, data)], only_to=[subscription.pk]))
    return sent


def store_data(store: Store) -> dict[str, Any]:
    return {"id": store.pk, "domain": store.domain, "name": store.name}


EVENT_RETENTION = timedelta(days=30)


# --- sending -------------------------------------------------------------------------------------------------


def body_of(event: Event) -> bytes:
    """The exact bytes signed and sent (the same on every attempt)."""
    envelope = {"type": event.event_type, "timestamp": event.created_at.isoformat(), "data": event.payload}
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode()


@dataclass(frozen=True, slots=True)
class Answer:
    """One attempt's outcome: the receiver's status (None when no answer), what went wrong, whether to retry."""

    status: int | None
    error: str = ""
    transient: bool = False
    retry_after: float | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class SendSummary:
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    statuses: list[int | None] = field(default_factory=list)


def deliveries_send_due(
    *, delivery_ids: Sequence[int] | None = None, now: datetime | None = None, limit: int = SEND_BATCH,
    time_budget: float = SEND_TIME_BUDGET,
) -> SendSummary:
    """Send the due deliveries (of `delivery_ids`, or any), each once; see the module docstring. Claims a few at a
    time and stops claiming when `time_budget` seconds are spent (slow receivers must not outlast the task's time
    limit); what is left is made due for beat's next dispatch."""
    now = now or timezone.now()
    deadline = time.monotonic() + time_budget
    summary = SendSummary()
    sessions: dict[int, OutboundSession] = {}
    try:
        while len(summary.statuses) < limit:
            if time.monotonic() > deadline:
                _leave_for_beat(delivery_ids=delivery_ids, now=now)
                break
            claimed = _claim(delivery_ids=delivery_ids, now=now, limit=min(CLAIM_CHUNK, limit - len(summary.statuses)))
            if not claimed:
                break
            for delivery in claimed:
                _record(delivery, _attempt(delivery, sessions), now=now, summary=summary)
    finally:
        for session in sessions.values():
            session.close()
    return summary


def _attempt(delivery: EventDelivery, sessions: dict[int, OutboundSession]) -> Answer:
    subscription = delivery.subscription
    if not subscription.is_enabled:
        return Answer(status=None, error="the subscription is disabled")
    session = sessions.get(subscription.pk)
    if session is None:
        session = sessions[subscription.pk] = outbound_session(
            base_url=subscription.url, own_hosts=ALL_HOSTS, timeout=TIMEOUT
        )
    return _post(session, delivery)


def _leave_for_beat(*, delivery_ids: Sequence[int] | None, now: datetime) -> None:
    if delivery_ids is not None:
        EventDelivery.objects.filter(
            pk__in=list(delivery_ids), state=EventDelivery.State.PENDING, next_attempt_at__lte=now
        ).update(dispatch_at=now)


def _claim(*, delivery_ids: Sequence[int] | None, now: datetime, limit: int) -> list[EventDelivery]:
    due = (
        EventDelivery.objects.filter(state=EventDelivery.State.PENDING, next_attempt_at__lte=now)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
    )
    if delivery_ids is not None:
        due = due.filter(pk__in=list(delivery_ids))
    with transaction.atomic():
        ids = list(
            due.select_for_update(skip_locked=True).order_by("next_attempt_at", "pk").values_list("pk", flat=True)[
                :limit
            ]
        )
        if not ids:
            return []
        EventDelivery.objects.filter(pk__in=ids).update(claimed_until=now + CLAIM_FOR, last_attempt_at=now)
    return list(EventDelivery.objects.filter(pk__in=ids).select_related("event", "subscription").order_by("pk"))


def _post(session: OutboundSession, delivery: EventDelivery) -> Answer:
    subscription, event = delivery.subscription, delivery.event
    body = body_of(event)
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": event.msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret=subscription.secret or "", msg_id=event.msg_id, timestamp=timestamp,
                                  body=body),
    }
    try:
        response = session.post(subscription.url, data=body, headers=headers, allow_redirects=False, stream=True)
    except OutboundRefused as exc:
        return Answer(status=None, error=str(exc)[:ERROR_CHARS])
    except TRANSIENT_EXCEPTIONS as exc:
        return Answer(status=None, error=f"{type(exc).__name__}: no answer"[:ERROR_CHARS], transient=True)
    except (requests.RequestException, ValueError) as exc:  # a URL requests cannot use: trying again will not help
        return Answer(status=None, error=f"{type(exc).__name__}: {exc}"[:ERROR_CHARS])
    with response:
        try:
            snippet = response.raw.read(ERROR_CHARS, decode_content=True) or b""
        except Exception:  # the body is only for the log; an unreadable one changes nothing
            snippet = b""
    status = response.status_code
    if 200 <= status < 300:
        return Answer(status=status)
    text = safe_error_text(snippet.decode(errors="replace"), limit=ERROR_CHARS) or ""
    error = f"HTTP {status}" + (f": {text}" if text else "")
    if 300 <= status < 400:
        error += " (redirects are not followed: give the final URL)"
    retry_after = retry_after_seconds(response.headers.get("Retry-After"), now=timezone.now())
    return Answer(status=status, error=error, transient=status in DELIVERY_RETRY.retry_statuses,
                  retry_after=retry_after if status == 429 else None)


def _record(delivery: EventDelivery, answer: Answer, *, now: datetime, summary: SendSummary) -> None:
    attempts = delivery.attempts + 1
    values: dict[str, Any] = {"attempts": attempts, "last_status": answer.status, "claimed_until": None,
                              "last_error": answer.error}
    if answer.delivered:
        values.update(state=EventDelivery.State.DELIVERED, delivered_at=now, next_attempt_at=None, dispatch_at=None)
        summary.delivered += 1
    elif answer.transient and attempts < DELIVERY_RETRY.max_attempts:
        delay = DELIVERY_RETRY.backoff(attempts - 1)
        if answer.retry_after is not None:
            delay = max(delay, min(answer.retry_after, DELIVERY_RETRY.max_retry_after))
        values.update(next_attempt_at=now + timedelta(seconds=delay), dispatch_at=now + timedelta(seconds=delay))
        summary.retrying += 1
    else:
        values.update(state=EventDelivery.State.FAILED, next_attempt_at=None, dispatch_at=None)
        summary.failed += 1
        logger.warning("event delivery %s to subscription %s failed after %d attempt(s): %s", delivery.pk,
                       delivery.subscription_id, attempts, answer.error)
    summary.statuses.append(answer.status)
    # Only while it is still ours: a "send again" meanwhile started a new round that this answer must not end.
    EventDelivery.objects.filter(pk=delivery.pk, state=EventDelivery.State.PENDING,
                                 claimed_until__isnull=False).update(**values)


def events_prune(*, older_than: timedelta, now: datetime | None = None, limit: int = 5000) -> int:
    """Forget settled events older than `older_than` (their deliveries with them); pending ones stay."""
    cutoff = (now or timezone.now()) - older_than
    old = Event.objects.filter(created_at__lt=cutoff).exclude(deliveries__state=EventDelivery.State.PENDING)
    ids = list(old.order_by("pk").values_list("pk", flat=True)[:limit])
    deleted, _ = Event.objects.filter(pk__in=ids).delete()
    return deleted

