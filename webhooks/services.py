"""Webhook services: receive a delivery, process it once, replay, prune, erase, and register subscriptions."""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Protocol
from urllib.parse import urlsplit

from django.db import connection, transaction
from django.db.models import Case, F, Q, QuerySet, Value, When
from django.utils import timezone

from oma.core.leases import Pk, lease_take
from oma.core.outbox import after_commit
from oma.genstore.errors import GenstoreError, GenstoreRateLimited
from oma.genstore.records import OrderRecord
from oma.genstore.topics import (
    CUSTOMER_REQUEST_TOPICS,
    ORDER_ID_TOPICS,
    ORDER_TOPICS,
    ORDERS_CANCELLED,
    SUBSCRIBABLE_TOPICS,
)
from oma.orders.compliance import CustomerKeys, delivery_body_without_personal_data
from oma.stores.models import Store
from webhooks.conf import webhook_setting
from webhooks.dispatch import deliveries_publish, delivery_enqueue_after_receipt
from webhooks.intake import delivery_insert_unless_duplicate
from webhooks.models import CustomerDataExport, WebhookDelivery

logger = logging.getLogger(__name__)

State = WebhookDelivery.State

# Headers never stored with a delivery (Genstore sends none of them, but a proxy might add them).
_UNSTORED_HEADERS = {"cookie", "authorization", "proxy-authorization", "x-genstore-access-token"}


class PermanentProcessingError(Exception):
    """Processing cannot succeed by trying again (unusable payload, erased store): fail at once, replayable."""


# --- receiving ---------------------------------------------------------------------------------------


def delivery_content_sha256(*, topic: str, body: bytes) -> str:
    """SHA-256 of the topic, a newline and the exact body: what a delivery says, whatever id it comes under."""
    return hashlib.sha256(topic.encode() + b"\n" + body).hexdigest()


def delivery_dedupe_key(*, topic: str, body: bytes, webhook_id: str, content_sha256: str = "") -> str:
    """The webhook id when Genstore sends one, else the topic and the SHA-256 of the exact body (`content_sha256`
    when the caller has it already)."""
    if webhook_id:
        if len(webhook_id) <= 200:
            return f"id:{webhook_id}"
        return f"id-sha256:{hashlib.sha256(webhook_id.encode()).hexdigest()}"
    return f"sha256:{content_sha256 or delivery_content_sha256(topic=topic, body=body)}"


def storable_text(text: str) -> str:
    """`text` as the database can store it: without NUL characters or lone surrogates. Headers and webhook ids
    are not signed, so whoever holds a signed body can send them with anything in them."""
    if text.isascii() and "\x00" not in text:  # nearly always: both checks are cheap
        return text
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")


def storable_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {
        storable_text(name): storable_text(value[:1024])
        for name, value in headers.items()
        if name.lower() not in _UNSTORED_HEADERS
    }


@dataclass(frozen=True)
class ReceiveResult:
    delivery_id: int | None
    duplicate: bool
    ignored: bool


class StoreIdentity(Protocol):
    """What receiving needs of a store: a Store row, or the view's light WebhookStore."""

    @property
    def pk(self) -> Any: ...

    @property
    def domain(self) -> str: ...


def delivery_receive(
    *,
    store: StoreIdentity,
    topic: str,
    body: bytes,
    headers: Mapping[str, str],
    webhook_id: str = "",
    resource_id: str = "",
    handled: bool = True,
    dedupe_by_content: bool = True,
) -> ReceiveResult:
    """Store an authentic delivery once and enqueue its processing after the commit.

    A second delivery with the same dedupe key (even one racing this one), or with `dedupe_by_content` the same
    topic and body as a delivery of this store still retained, meets a unique constraint and is reported as a
    duplicate: it is neither stored nor processed again. (Genstore's webhook id is not signed, so a signed body
    resent under a new id is a replay; a sender that signs its ids, as channels do, passes False.) A broker
    failure never reaches the caller.
    """
    webhook_id = storable_text(webhook_id.strip())
    topic = storable_text(topic)
    content_sha256 = delivery_content_sha256(topic=topic, body=body)
    now = timezone.now()
    redispatch_after = timedelta(seconds=webhook_setting("OMA_WEBHOOK_REDISPATCH_SECONDS"))
    row = {
        "store_id": store.pk,
        "shop_domain": store.domain,
        "topic": topic[:64],
        "webhook_id": webhook_id[:255],
        "dedupe_key": delivery_dedupe_key(
            topic=topic, body=body, webhook_id=webhook_id, content_sha256=content_sha256
        ),
        "content_sha256": content_sha256 if dedupe_by_content else None,
        "resource_id": storable_text(resource_id[:64]),
        "body": body.decode("utf-8"),
        "headers": storable_headers(headers),
        "received_at": now,
        "state": State.RECEIVED if handled else State.IGNORED,
        # The fast path publishes right after the commit; this deadline is only for when that gets lost.
        "next_dispatch_at": now + redispatch_after if handled else None,
        "outcome": "" if handled else "topic not handled by OMA",
    }
    in_transaction = connection.in_atomic_block
    delivery_id = delivery_insert_unless_duplicate(row, in_transaction=in_transaction)
    if delivery_id is None:
        return ReceiveResult(delivery_id=None, duplicate=True, ignored=not handled)
    if handled:  # once the caller's transaction commits (the row is committed already outside one)
        after_commit(partial(delivery_enqueue_after_receipt, delivery_id))
    return ReceiveResult(delivery_id=delivery_id, duplicate=False, ignored=not handled)


# --- processing --------------------------------------------------------------------------------------


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
    lease = timedelta(seconds=webhook_setting("OMA_WEBHOOK_LEASE_SECONDS"))
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
    """Process deliveries at most once each: claim them, run their topics' processors, record the outcomes.

    The claim is one conditional UPDATE (unfinished, unclaimed rows only) that counts the attempt and stamps a
    claim token; effects and the "processed" mark commit in one transaction fenced by that token, so a copy of the
    task that arrives late (outbox, broker redelivery) finds nothing to do. Order deliveries of one store are
    upserted together, as one page (a constant number of queries; the newest updatedAt wins inside the batch as
    it does across batches); every other topic runs on its own.
    """
    ids = list(dict.fromkeys(delivery_ids))
    token = uuid.uuid4().hex
    taken = _claim(ids, token=token, now=timezone.now())
    claimed = (
        WebhookDelivery.objects.select_related("store")
        .filter(pk__in=taken)
        .order_by("pk")  # the order of receipt: of two versions with the same updatedAt, the later one wins
    )
    results = {delivery_id: ProcessResult(state="skipped") for delivery_id in ids}
    order_groups: dict[int, list[WebhookDelivery]] = {}
    for delivery in claimed:
        if delivery.topic in ORDER_TOPICS and delivery.store is not None:
            order_groups.setdefault(delivery.store.pk, []).append(delivery)
        else:
            results[delivery.pk] = _process_one(delivery, token)
    for group in order_groups.values():
        results.update(_process_orders(group, token))
    return results


def delivery_process(*, delivery_id: int) -> ProcessResult:
    """Process one delivery at most once (see deliveries_process)."""
    return deliveries_process(delivery_ids=[delivery_id])[delivery_id]


def _fenced(delivery: WebhookDelivery, token: str) -> QuerySet[WebhookDelivery]:
    return WebhookDelivery.objects.filter(pk=delivery.pk, claim_token=token, state=State.PROCESSING)


def _processed(outcome: Any) -> dict[str, Any]:
    """The column values of a processed delivery (`outcome` may be an expression)."""
    return {
        "state": State.PROCESSED,
        "processed_at": timezone.now(),
        "outcome": outcome,
        "last_error": "",
        "next_dispatch_at": None,
        "lease_expires_at": None,
    }


def _process_one(delivery: WebhookDelivery, token: str) -> ProcessResult:
    from webhooks.processors import process_payload

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


# Reading orders from the API (payloads that lack what OMA needs) stops after this long, well inside the task's
# time limits; the deliveries left are retried individually.
_ORDER_READS_BUDGET_SECONDS = 60


def _process_orders(deliveries: list[WebhookDelivery], token: str) -> dict[int, ProcessResult]:
    """orders/* deliveries of one store: read each one's order (from the payload, or the API when it lacks what OMA
    needs), then upsert them as one page and mark them processed in the same transaction."""
    from oma.orders.services import orders_upsert_page
    from webhooks.processors import OrderClientCache, order_record_for

    store = deliveries[0].store
    assert store is not None
    results: dict[int, ProcessResult] = {}
    prepared: list[tuple[WebhookDelivery, OrderRecord, str]] = []
    clients = OrderClientCache(store)
    started = time.monotonic()
    try:
        for delivery in deliveries:
            try:
                if time.monotonic() - started > _ORDER_READS_BUDGET_SECONDS:
                    raise TimeoutError("the batch spent its time reading other orders; retried on its own")
                record, note = order_record_for(store, delivery, clients)
            except Exception as exc:
                results[delivery.pk] = _delivery_attempt_failed(
                    delivery=delivery, attempt=delivery.attempts, fenced=_fenced(delivery, token), exc=exc
                )
                continue
            prepared.append((delivery, record, note))
    finally:
        clients.close()
    if not prepared:
        return results
    try:
        with transaction.atomic():
            held = set(
                WebhookDelivery.objects.select_for_update()
                .filter(pk__in=[delivery.pk for delivery, _, _ in prepared], claim_token=token, state=State.PROCESSING)
                .values_list("pk", flat=True)
            )
            live = [item for item in prepared if item[0].pk in held]
            newest = _newest_delivery_per_order(live)
            counts = orders_upsert_page(store=store, records=[record for _, record, _ in newest.values()])
            outcomes: dict[int, str] = {}
            for delivery, record, note in live:
                applied = newest[record.order_id][0] is delivery
                outcome = counts.outcomes.get(record.order_id, "stale") if applied else "stale"
                text = f"order {record.order_id} {outcome}{note}"
                if delivery.topic == ORDERS_CANCELLED and record.cancelled_at is None:
                    text += "; Genstore does not show it cancelled"
                outcomes[delivery.pk] = text[:255]
            # One UPDATE for the batch (the rows are locked above; only the outcome differs from row to row).
            if outcomes:
                WebhookDelivery.objects.filter(pk__in=list(outcomes)).update(
                    **_processed(Case(*[When(pk=pk, then=Value(text)) for pk, text in outcomes.items()]))
                )
    except Exception as exc:
        for delivery, _, _ in prepared:
            results[delivery.pk] = _delivery_attempt_failed(
                delivery=delivery, attempt=delivery.attempts, fenced=_fenced(delivery, token), exc=exc
            )
        return results
    for delivery, _, _ in prepared:
        if delivery.pk not in held:
            logger.warning("delivery %s: attempt %d lost its claim before processing", delivery.pk, delivery.attempts)
        results[delivery.pk] = ProcessResult(state=State.PROCESSED if delivery.pk in held else "skipped")
    return results


def _newest_delivery_per_order(
    items: list[tuple[WebhookDelivery, OrderRecord, str]],
) -> dict[str, tuple[WebhookDelivery, OrderRecord, str]]:
    """The delivery carrying each order's newest version (a later one wins a tie, like the upsert itself)."""
    newest: dict[str, tuple[WebhookDelivery, OrderRecord, str]] = {}
    for item in items:
        record = item[1]
        kept = newest.get(record.order_id)
        older = (
            kept is not None
            and record.updated_at is not None
            and kept[1].updated_at is not None
            and record.updated_at < kept[1].updated_at
        )
        if not older:
            newest[record.order_id] = item
    return newest


def retry_delay(*, attempt: int, exc: BaseException | None = None) -> float:
    """Exponential backoff from the base, capped, with jitter; at least what a rate limit asked for."""
    base = webhook_setting("OMA_WEBHOOK_RETRY_BASE_SECONDS")
    cap = webhook_setting("OMA_WEBHOOK_RETRY_MAX_SECONDS")
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
    max_attempts = webhook_setting("OMA_WEBHOOK_MAX_ATTEMPTS")
    if _is_permanent(exc) or attempt >= max_attempts:
        fenced.update(state=State.FAILED, last_error=error, next_dispatch_at=None, lease_expires_at=None)
        log = logger.warning if isinstance(exc, GenstoreError | PermanentProcessingError) else logger.exception
        log("delivery %s (%s, %s) failed after %d attempt(s): %s", delivery.pk, delivery.topic,
            delivery.shop_domain, attempt, error)
        return ProcessResult(state=State.FAILED)
    delay = retry_delay(attempt=attempt, exc=exc)
    redispatch = timedelta(seconds=webhook_setting("OMA_WEBHOOK_REDISPATCH_SECONDS"))
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


# --- replay and pruning ------------------------------------------------------------------------------


def deliveries_replay(*, deliveries: QuerySet[WebhookDelivery]) -> int:
    """Process the given deliveries again (failed ones, or any an operator picks); in-flight ones are left alone.

    Processing is idempotent, so replaying a processed delivery changes only what is out of date. Ignored
    deliveries have nothing to replay.
    """
    now = timezone.now()
    redispatch = timedelta(seconds=webhook_setting("OMA_WEBHOOK_REDISPATCH_SECONDS"))
    replayable = deliveries.exclude(state=State.IGNORED).exclude(
        state=State.PROCESSING, lease_expires_at__gte=now
    ).filter(store__isnull=False)
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


@dataclass(frozen=True)
class PruneResult:
    deliveries: int
    exports: int


def deliveries_prune(*, now: datetime | None = None, batch_size: int | None = None) -> PruneResult:
    """Delete deliveries and customer exports older than OMA_WEBHOOK_RETENTION_DAYS, one bounded batch per call.

    Called every minute by the outbox task, so a large backlog drains steadily without one long delete.
    """
    now = now or timezone.now()
    batch_size = batch_size or webhook_setting("OMA_WEBHOOK_PRUNE_BATCH")
    cutoff = now - timedelta(days=webhook_setting("OMA_WEBHOOK_RETENTION_DAYS"))
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


# --- erasing (compliance topics) ---------------------------------------------------------------------


def deliveries_redact(*, store: Store, order_ids: Iterable[str], also: Sequence[int] = ()) -> int:
    """Erase personal data from the stored bodies of a store's deliveries about these orders (and `also` ids).

    The row stays (id, topic, time, dedupe key) for the dedupe audit; the body keeps its topic's allow-list.
    """
    order_ids = [str(order_id) for order_id in order_ids]
    # Only ORDER_ID_TOPICS carry a Genstore orderId as resource_id (a channel delivery's is the platform's own).
    rows = WebhookDelivery.objects.filter(store=store).filter(
        Q(resource_id__in=order_ids, topic__in=ORDER_ID_TOPICS) | Q(pk__in=list(also))
    )
    now = timezone.now()
    count = 0
    for delivery in rows.only("pk", "topic", "body").iterator(chunk_size=200):
        redacted_body = delivery_body_without_personal_data(topic=delivery.topic, body=delivery.body)
        WebhookDelivery.objects.filter(pk=delivery.pk).update(body=redacted_body, redacted_at=now)
        count += 1
    return count


@dataclass(frozen=True)
class CustomerErasure:
    deliveries: int
    exports: int


def customer_deliveries_erase(
    *, store: Store, customer: Mapping[str, Any], order_ids: Sequence[str], also: Sequence[int] = ()
) -> CustomerErasure:
    """customers/redact: delete the customer's data exports and erase the personal data of every stored delivery
    about the customer: those about the orders (and `also` ids), and the customer's earlier compliance requests.

    A customers/data_request delivery names no order in resource_id: it is found by the customer (id or email) or
    the orders its body names. Running it again finds nothing new.
    """
    wanted = CustomerKeys.of(customer, order_ids)
    requests = []
    candidates = WebhookDelivery.objects.filter(store=store, topic__in=CUSTOMER_REQUEST_TOPICS, redacted_at=None)
    for delivery_id, body in candidates.values_list("pk", "body").iterator(chunk_size=200):
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            continue
        if isinstance(payload, dict) and wanted.same_customer(_customer_named_in(payload)):
            requests.append(delivery_id)
    exports = [
        export.pk
        for export in CustomerDataExport.objects.filter(store=store).only(
            "pk", "delivery", "customer_id", "orders_requested", "data"
        )
        if export.delivery_id in requests or wanted.same_customer(_customer_of_export(export))
    ]
    if exports:
        CustomerDataExport.objects.filter(pk__in=exports).delete()
    deliveries = deliveries_redact(store=store, order_ids=order_ids, also=[*also, *requests])
    return CustomerErasure(deliveries=deliveries, exports=len(exports))


def _customer_named_in(payload: dict[str, Any]) -> CustomerKeys:
    orders = payload.get("ordersRequested") or payload.get("ordersToRedact")
    return CustomerKeys.of(payload.get("customer"), orders if isinstance(orders, list) else ())


def _customer_of_export(export: CustomerDataExport) -> CustomerKeys:
    data = export.data if isinstance(export.data, dict) else {}
    customer = data.get("customer") if isinstance(data.get("customer"), dict) else {}
    found = [order.get("orderId") for order in data.get("orders") or [] if isinstance(order, dict)]
    requested = export.orders_requested if isinstance(export.orders_requested, list) else []
    return CustomerKeys.of({**customer, "id": export.customer_id or customer.get("id")}, [*requested, *found])


def deliveries_erase_for_store(*, store: Store, keep: Sequence[int] = ()) -> int:
    """Delete every delivery and export of a store (shop/redact), except the `keep` deliveries."""
    CustomerDataExport.objects.filter(store=store).delete()
    deleted, _ = WebhookDelivery.objects.filter(store=store).exclude(pk__in=list(keep)).delete()
    return deleted


def customer_data_export_save(
    *, store: Store, delivery: WebhookDelivery | None, customer_id: str, orders_requested: list[str], data: dict
) -> CustomerDataExport:
    values = {
        "store": store,
        "customer_id": customer_id[:64],
        "orders_requested": orders_requested,
        "orders_found": len(data.get("orders", [])),
        "data": data,
    }
    if delivery is None:
        return CustomerDataExport.objects.create(**values)
    export, _ = CustomerDataExport.objects.update_or_create(delivery=delivery, defaults=values)
    return export


# --- subscriptions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegisterResult:
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)


def _same_address(left: str, right: str) -> bool:
    return left.strip().rstrip("/").lower() == right.strip().rstrip("/").lower()


def subscription_address_error(address: str) -> str | None:
    """Genstore wants HTTPS; plain HTTP is allowed only to a loopback host (the sandbox, local runs)."""
    parts = urlsplit(address)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname in {"127.0.0.1", "localhost", "::1"}:
        return None
    return f"webhook address must be an https:// URL (got {address!r})"


def subscribable_topics() -> list[str]:
    """Every topic OMA handles that an app subscribes to through the API.

    The compliance topics are left out: their callback URLs live in the app's configuration on Genstore.
    """
    return list(SUBSCRIBABLE_TOPICS)


def webhook_subscriptions_register(*, store: Store, address: str) -> RegisterResult:
    """List the store's subscriptions and create the missing ones at `address`; running it twice creates nothing."""
    from oma.stores.services import genstore_client_for

    problem = subscription_address_error(address)
    if problem:
        raise ValueError(problem)
    client = genstore_client_for(store)
    subscribed = {sub.topic for sub in client.list_webhooks() if _same_address(sub.address, address)}
    result = RegisterResult()
    for topic in subscribable_topics():
        if topic in subscribed:
            result.existing.append(topic)
            continue
        client.create_webhook(address=address, topic=topic)
        result.created.append(topic)
    logger.info("webhooks for %s at %s: %d created, %d already there", store.domain, address,
                len(result.created), len(result.existing))
    return result

