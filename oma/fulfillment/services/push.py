"""Pushing shipments to Genstore as fulfillments, exactly once, and keeping them current.

`shipment_push(shipment_id=...)` is the whole push of one shipment; tasks, the beat, `push_fulfillments` and
reconciliation all call it. Its steps:

1. **Intent.** The shipment's FulfillmentPush row (unique key: store, orderId, shipment) exists before anything is
   sent; one worker at a time holds it (a PostgreSQL advisory lock, released by PostgreSQL itself if the worker
   dies; elsewhere a lease on the row).
2. **Plan** from the order mirror: never for cancelled, refunded or voided orders, nor a voided label; only items
   that need shipping; quantities within Genstore's `fulfillableQuantity`. Refusals cost no request.
3. **Read before create.** With no fulfillment id yet: GET the order (fresh statuses, quantities and its
   fulfillments; the mirror is updated with it), re-plan, and adopt a live fulfillment that carries the same
   tracking number. Only when none does: POST the fulfillment, its id saved at once.
4. **Ambiguous writes.** A create answered by a timeout or a 5xx may have happened: list the order's fulfillments
   right away and adopt the one with our number; if it is not there, the push waits and the next attempt reads
   again before writing. Nothing is ever created twice, whatever point a worker is killed at. Every read of an
   order's fulfillments is mirrored whole and tracks the merchant's own ones (a source for genstore_shipments).
5. **Keep current.** `update_tracking` when Genstore's tracking number, company, URL or `shipmentStatus` differs
   from what OMA wants, and only forwards: a status that would move the fulfillment backwards (a late
   `in_transit` after `delivered`) is kept in `held_back_shipment_status`, not pushed. A `genstore` shipment (a
   fulfillment the merchant made in Genstore, services/genstore_shipments.py) gets its shipmentStatus alone: the
   number, company and link stay the merchant's, and OMA never creates or re-creates a fulfillment for it.
6. **Refusals.** A 400/422 (or 401/403/404) marks the push failed with Genstore's message, for the merchant to see;
   it is tried again only when the shipment or the order changes, or someone asks. Transient trouble (429, 5xx,
   timeouts) leaves it pending with a backoff.
7. **Voided labels.** A channel's shipment (never a `genstore` one: that is the merchant's own fulfillment) whose
   label was voided after OMA pushed it gets its Genstore fulfillment cancelled, once: `cancel_sent_at` is on the
   row before the PUT leaves, and an attempt that finds it set (an ambiguous answer, a killed worker) reads the
   fulfillment back first. A push that would create a fulfillment on an order where such a cancel is still owed
   runs that cancel first (its items are not free in Genstore's `fulfillableQuantity` until then), or waits for it;
   a cancel re-arms the order's pushes that found nothing left to fulfil, and re-matches the order's channel
   records refused meanwhile (a reissued label that came with its void: matching counted the live fulfillment).

What is owed (`pushes_pending`) is pushed by the store's drain (`store_pushes_drain`, run by the
`fulfillment.push_due` task): oldest first, a few pushes side by side, at the pace of the store's bucket, one drain
per store at a time.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import partial

from django.conf import settings
from django.db import IntegrityError, connection, connections, transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone

from oma.channels.models import ExternalShipment
from oma.channels.services import external_shipment_rematch
from oma.core.leases import (
    advisory_lock,
    advisory_lock_is_free,
    lease_free,
    lease_release,
    lease_renew,
    lease_take,
)
from oma.core.logcontext import log_context
from oma.core.outbox import after_commit
from oma.core.retry import RetryPolicy
from oma.fulfillment.models import LOG_LIMIT, FulfillmentPush
from oma.fulfillment.plan import PushPlan, find_ours, furthest_shipment_status, push_plan_for
from oma.fulfillment.services.genstore_shipments import order_fulfillments_record_and_track
from oma.fulfillment.services.unified_status import orders_unified_status_refresh
from oma.fulfillment.status import DEAD_FULFILLMENT_STATUSES
from oma.fulfillment.tracking_links import tracking_page_url_for
from oma.genstore.client import GenstoreClient
from oma.genstore.errors import (
    GenstoreAuthError,
    GenstoreError,
    GenstoreNotFound,
    GenstoreRateLimited,
)
from oma.genstore.records import FulfillmentRecord, OrderRecord
from oma.genstore.shipment_status import shipment_status_moves_forward
from oma.orders.models import GenstoreFulfillment, LineItem, Order
from oma.orders.services import order_fulfillment_record, order_upsert
from oma.stores.models import Store
from oma.stores.services import genstore_client_for
from tracking.models import Shipment, ShipmentLine
from tracking.numbers import canonical, normalize
from tracking.vocabulary import Status

logger = logging.getLogger(__name__)

State = FulfillmentPush.State
# A shipment tracked from a fulfillment the merchant made in Genstore (services/genstore_shipments.py).
GENSTORE = Shipment.Source.GENSTORE

# A push whose worker has held it this long without finishing is presumed dead (SQLite lease; PostgreSQL uses
# its advisory lock and only needs this for the beat to notice an abandoned row).
STALE_IN_PROGRESS = timedelta(minutes=10)
# A pending push that was queued this recently is not queued again by the beat (its task is on its way).
REQUEUE_AFTER = timedelta(minutes=2)
# A push Genstore could not take waits 30 s, doubling up to 30 min, each ±20 % (the one backoff formula,
# oma.core.retry: a step of 1.2 x, two thirds of it always waited).
PUSH_RETRY = RetryPolicy(backoff_base=36.0, backoff_cap=36.0 * 60, jitter_floor=2 / 3)
# A push waiting for a voided label's cancel that another worker is sending looks again after this long.
WAIT_FOR_CANCEL = timedelta(seconds=15)


class PushResult(StrEnum):
    CREATED = "created"  # a new fulfillment in Genstore
    ADOPTED = "adopted"  # Genstore already had a fulfillment with this tracking number: it is ours now
    UPDATED = "updated"  # update_tracking sent
    UNCHANGED = "unchanged"  # Genstore already says what OMA wants
    SKIPPED = "skipped"  # nothing may be pushed (state_reason says why)
    CANCELLED = "cancelled"  # the label was voided: its Genstore fulfillment is cancelled
    FAILED = "failed"  # Genstore refused; the merchant must look
    RETRY = "retry"  # transient trouble: try again later
    BUSY = "busy"  # another worker is pushing this shipment right now
    NOT_PUSHABLE = "not_pushable"  # no such shipment, no order, or an inactive store: no row at all


@dataclass(slots=True)
class PushOutcome:
    result: PushResult
    push: FulfillmentPush | None = None
    detail: str = ""
    retry_after: float | None = None
    requests: int = 0  # Genstore HTTP requests this push made
    steps: list[str] = field(default_factory=list)


# --- the plan, from the mirror ----------------------------------------------------------------------------------


def _load_plan(*, store: Store, order: Order, shipment: Shipment, push: FulfillmentPush) -> PushPlan:
    """The plan, with the order's branded tracking page link on OMA_PUBLIC_URL; a link that falls back to the
    carrier's is said once in the push's log (saved with the push's next write)."""
    order_lines = list(LineItem.objects.filter(order=order).order_by("pk"))
    shipment_lines = list(ShipmentLine.objects.filter(shipment=shipment).order_by("pk"))
    plan = push_plan_for(
        store=store, order=order, shipment=shipment, order_lines=order_lines, shipment_lines=shipment_lines,
        tracking_page_url=tracking_page_url_for(order, public_url=settings.OMA_PUBLIC_URL),
    )
    if plan.tracking_url_note and all(entry.get("message") != plan.tracking_url_note for entry in push.log):
        _log(push, plan.tracking_url_note)
    return plan


# --- the intent row and its lock --------------------------------------------------------------------------------


def _source_of(shipment: Shipment) -> dict[str, str]:
    return {
        "source_tracking_number": shipment.tracking_number,
        "source_carrier": shipment.carrier,
        "source_status": shipment.status,
        "source_substatus": shipment.substatus,
        "source_tracking_url": shipment.tracking_url or "",
    }


def _source_matches(push: FulfillmentPush, shipment: Shipment) -> bool:
    return all(getattr(push, name) == value for name, value in _source_of(shipment).items())


def push_row_for(*, shipment: Shipment, order: Order) -> FulfillmentPush:
    """The shipment's intent row for its current order, created (pending) if it does not exist yet."""
    key = FulfillmentPush.key_for(store_id=shipment.store_id, order_id=order.order_id, shipment_id=shipment.pk)
    push = FulfillmentPush.objects.filter(key=key).first()
    if push is not None:
        return push
    try:
        with transaction.atomic():
            push = FulfillmentPush.objects.create(
                key=key, store_id=shipment.store_id, order=order, shipment=shipment, state=State.PENDING
            )
    except IntegrityError:
        return FulfillmentPush.objects.get(key=key)
    # The shipment moved to another order: what was pushed for the old one is no longer ours to keep current.
    FulfillmentPush.objects.filter(shipment=shipment).exclude(pk=push.pk).exclude(state=State.SKIPPED).update(
        state=State.SKIPPED,
        state_reason=f"the shipment moved to order {order.order_id}",
        updated_at=timezone.now(),
    )
    return push


@contextlib.contextmanager
def _push_lock(push: FulfillmentPush) -> Iterator[bool]:
    """Hold the push exclusively; yields False when another worker holds it.

    PostgreSQL: a session advisory lock, which PostgreSQL drops the moment a killed worker's connection goes, so a
    redelivered task can take over at once. Other databases: a lease on the row (`last_attempt_at`).
    """
    if connection.vendor == "postgresql":
        with advisory_lock(push.lock_id) as locked:
            yield locked
        return
    # The lease is kept as the moment the attempt took it; a push not in progress is free whatever that moment.
    taken = lease_take(
        FulfillmentPush.objects.filter(pk=push.pk), ttl=STALE_IN_PROGRESS, now=timezone.now(),
        holder_field=None, until_field=None, taken_field="last_attempt_at",
        also_free=~Q(state=State.IN_PROGRESS), values={"state": State.IN_PROGRESS},
    )
    yield bool(taken)


def _log(push: FulfillmentPush, message: str) -> None:
    push.log = [*push.log, {"at": timezone.now().isoformat(timespec="seconds"), "message": message[:500]}][-LOG_LIMIT:]


def _save(push: FulfillmentPush, *fields: str) -> None:
    push.save(update_fields=[*dict.fromkeys([*fields, "log", "updated_at"])])


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=PUSH_RETRY.backoff(max(0, attempts - 1)))


# --- Genstore's view --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Genstore:
    client: GenstoreClient
    requests_before: int

    @property
    def requests(self) -> int:
        return self.client.stats.requests - self.requests_before


def _mirror(*, store: Store, order: Order, record: FulfillmentRecord) -> None:
    order_fulfillment_record(store=store, order=order, record=record)


def _refresh_order(*, store: Store, order: Order, record: OrderRecord) -> Order:
    return order_upsert(store=store, record=record).order


def _list_fulfillments(*, genstore: _Genstore, store: Store, order: Order) -> list[FulfillmentRecord]:
    """GET the order's fulfillments, every one mirrored, and those the merchant made in Genstore tracked
    (genstore_shipments: this read is one of its sources). The tracking never fails the push that read them: the
    sweep's catch-up does it again."""
    records = genstore.client.list_fulfillments(order.order_id)
    try:
        order_fulfillments_record_and_track(store=store, order=order, records=records)
    except Exception:
        logger.exception("tracking the Genstore fulfillments of order %s failed", order.order_id)
    return records


def _current_of(push: FulfillmentPush, record: FulfillmentRecord | None) -> dict[str, str]:
    """Genstore's current tracking fields for the push's fulfillment: from a fresh record, else the mirror, else
    what we last pushed."""
    if record is not None:
        return {
            "tracking_number": record.tracking_number or "",
            "tracking_company": record.tracking_company or "",
            "tracking_url": record.tracking_url or "",
            "shipment_status": record.shipment_status or "",
            "status": record.status or "",
        }
    mirrored = GenstoreFulfillment.objects.filter(store_id=push.store_id, fulfill_id=push.fulfill_id).first()
    if mirrored is not None:
        return {
            "tracking_number": mirrored.tracking_number,
            "tracking_company": mirrored.tracking_company,
            "tracking_url": mirrored.tracking_url,
            "shipment_status": mirrored.shipment_status,
            "status": mirrored.status,
        }
    return {
        "tracking_number": push.tracking_number,
        "tracking_company": push.tracking_company,
        "tracking_url": push.tracking_url,
        "shipment_status": push.shipment_status,
        "status": "",
    }


# --- the push ---------------------------------------------------------------------------------------------------


class _Refused(Exception):
    """Raised inside a push to end it as skipped or failed without calling Genstore further."""

    def __init__(self, result: PushResult, reason: str) -> None:
        super().__init__(reason)
        self.result = result
        self.reason = reason


class _Wait(Exception):
    """Raised inside a push that must wait for another push of its order (a voided label's cancel) to finish."""

    def __init__(self, reason: str, delay: timedelta) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


def shipment_push(
    *,
    shipment_id: int,
    client: GenstoreClient | None = None,
    force: bool = False,
    status_refresh_later: set[int] | None = None,
) -> PushOutcome:
    """Bring Genstore in line with one shipment (create, adopt or update its fulfillment). Safe to run any number
    of times, concurrently or after a crash: see the module docstring. `force` re-runs a push whose shipment has
    not changed (a failed one included) and re-reads Genstore rather than trusting the mirror.

    The order's unified status is recomputed after the push commits; a batch run passes `status_refresh_later`
    to collect the order ids instead and recompute them all at once at the end."""
    outcome = _shipment_push_once(
        shipment_id=shipment_id, client=client, force=force, status_refresh_later=status_refresh_later
    )
    # The shipment changed while we pushed (a poll landed): its own trigger found us busy, so go again now.
    for _ in range(2):
        push = outcome.push
        if outcome.result in (PushResult.BUSY, PushResult.RETRY, PushResult.NOT_PUSHABLE) or push is None:
            break
        shipment = Shipment.objects.filter(pk=shipment_id).first()
        if shipment is None or shipment.order_id != push.order_id or _source_matches(push, shipment):
            break
        again = _shipment_push_once(
            shipment_id=shipment_id, client=client, force=False, status_refresh_later=status_refresh_later
        )
        again.requests += outcome.requests
        outcome = again
    return outcome


def _shipment_push_once(
    *, shipment_id: int, client: GenstoreClient | None, force: bool, status_refresh_later: set[int] | None
) -> PushOutcome:
    shipment = Shipment.objects.select_related("store", "order").filter(pk=shipment_id).first()
    if shipment is None:
        return PushOutcome(PushResult.NOT_PUSHABLE, detail="no such shipment")
    order, store = shipment.order, shipment.store
    if order is None:
        return PushOutcome(PushResult.NOT_PUSHABLE, detail="the shipment is not matched to a Genstore order yet")
    if not store.is_active:
        return PushOutcome(PushResult.NOT_PUSHABLE, detail="the store is inactive")
    push = push_row_for(shipment=shipment, order=order)
    if not force and _settled(push, shipment):
        return PushOutcome(_settled_result(push), push=push, detail="nothing changed since the last push")

    with _push_lock(push) as locked:
        if not locked:
            return PushOutcome(PushResult.BUSY, push=push, detail="another worker is pushing this shipment")
        push.refresh_from_db()
        if not force and _settled(push, shipment):
            return PushOutcome(_settled_result(push), push=push, detail="pushed meanwhile by another worker")
        was_in_progress = push.state == State.IN_PROGRESS
        now = timezone.now()
        push.state = State.IN_PROGRESS
        push.attempts += 1
        push.last_attempt_at = now
        push.queued_at = None
        for name, value in _source_of(shipment).items():
            setattr(push, name, value)
        if was_in_progress:
            _log(push, "the previous attempt did not finish (worker stopped): reading Genstore before writing")
        _save(push, "state", "attempts", "last_attempt_at", "queued_at", *_source_of(shipment))
        genstore: _Genstore | None = None
        try:
            genstore_client = client or _client_for(store)
            genstore = _Genstore(client=genstore_client, requests_before=genstore_client.stats.requests)
            result = _execute(
                push=push, store=store, order=order, shipment=shipment, genstore=genstore, verify=force
            )
        except _Refused as refused:
            outcome = _finish_refused(push, refused, genstore)
            _after_push(push, status_refresh_later)
            return outcome
        except _Wait as wait:
            return _finish_wait(push, wait, genstore)
        except GenstoreError as exc:
            outcome = _finish_error(push, exc, genstore)
            if outcome.result == PushResult.FAILED:
                _after_push(push, status_refresh_later)
            return outcome
        except BaseException as exc:
            # Our own bug or a killed task: leave it pending so the beat tries again (reading before writing).
            push.state = State.PENDING
            push.last_error = f"{type(exc).__name__}: {exc}"[:2000]
            push.next_attempt_at = timezone.now() + _backoff(push.attempts)
            _save(push, "state", "last_error", "next_attempt_at")
            raise
        finally:
            if client is None and genstore is not None:
                genstore.client.close()
    _after_push(push, status_refresh_later)
    return PushOutcome(result, push=push, requests=genstore.requests if genstore else 0)


SETTLED_STATES = (State.SUCCEEDED, State.SKIPPED, State.FAILED, State.CANCELLED)


def _settled(push: FulfillmentPush, shipment: Shipment) -> bool:
    return push.state in SETTLED_STATES and _source_matches(push, shipment)


def _settled_result(push: FulfillmentPush) -> PushResult:
    results: dict[str, PushResult] = {
        State.SKIPPED: PushResult.SKIPPED, State.FAILED: PushResult.FAILED, State.CANCELLED: PushResult.CANCELLED,
    }
    return results.get(push.state, PushResult.UNCHANGED)


def _client_for(store: Store) -> GenstoreClient:
    return genstore_client_for(store)


def _execute(
    *, push: FulfillmentPush, store: Store, order: Order, shipment: Shipment, genstore: _Genstore, verify: bool
) -> PushResult:
    """`verify` (a forced push: admin, reconciliation) re-reads Genstore instead of trusting the mirror."""
    plan = _load_plan(store=store, order=order, shipment=shipment, push=push)
    if label_voided(shipment):
        return _cancel_voided(push=push, store=store, order=order, shipment=shipment, genstore=genstore,
                              verify=verify, skip_reason=plan.skip_reason)
    if push.fulfill_id:
        if plan.skip_reason:
            raise _Refused(PushResult.SKIPPED, f"Genstore not updated: {plan.skip_reason}")
        record = None
        if verify:
            listed = _list_fulfillments(genstore=genstore, store=store, order=order)
            record = next((r for r in listed if r.fulfill_id == push.fulfill_id), None)
            if record is None and shipment.source == GENSTORE:
                raise _Refused(
                    PushResult.SKIPPED,
                    f"fulfillment {push.fulfill_id} is gone from Genstore: it was made there, not by OMA, so OMA "
                    "creates none in its place",
                )
            if record is None:
                _log(push, f"fulfillment {push.fulfill_id} is gone from Genstore: pushing the shipment anew")
                push.fulfill_id, push.adopted, push.create_sent_at = "", False, None
                _save(push, "fulfill_id", "adopted", "create_sent_at")
        if push.fulfill_id:
            return _keep_current(push=push, plan=plan, shipment=shipment, record=record, genstore=genstore,
                                 result=PushResult.UNCHANGED)

    # A voided label of this order may still hold these items in Genstore: its cancel goes first. The mirror's
    # quantities predate that cancel, so the fresh read below judges them.
    cancelled_first = _cancels_first(push=push, order=order, genstore=genstore)

    # Refusals judged on the mirror cost no request, unless an earlier create may have happened (then read first).
    if not push.create_sent_at and not cancelled_first:
        if plan.skip_reason or plan.create_skip_reason:
            raise _Refused(PushResult.SKIPPED, plan.skip_reason or plan.create_skip_reason)
        if plan.create_fail_reason:
            raise _Refused(PushResult.FAILED, plan.create_fail_reason)

    # Read before create: the fresh order (statuses, quantities, its fulfillments), into the mirror as well.
    fresh = genstore.client.get_order(order.order_id)
    order = _refresh_order(store=store, order=order, record=fresh)
    records = (
        list(fresh.fulfillments) if fresh.has_fulfillments
        else _list_fulfillments(genstore=genstore, store=store, order=order)
    )
    plan = _load_plan(store=store, order=order, shipment=shipment, push=push)
    ours = find_ours(records, shipment.tracking_number)
    if ours is not None:
        return _adopt(push=push, store=store, order=order, shipment=shipment, plan=plan, record=ours,
                      genstore=genstore)

    if plan.skip_reason or plan.create_skip_reason:
        raise _Refused(PushResult.SKIPPED, plan.skip_reason or plan.create_skip_reason)
    if plan.create_fail_reason:
        raise _Refused(PushResult.FAILED, plan.create_fail_reason)
    if shipment.source == GENSTORE:
        raise _Refused(
            PushResult.SKIPPED,
            "no live Genstore fulfillment carries this number: the shipment was tracked from a fulfillment made in "
            "Genstore, and OMA never creates one for it",
        )

    # The intent, as sent, is on the row before the request leaves.
    push.create_sent_at = timezone.now()
    push.tracking_number, push.tracking_company, push.tracking_url = (
        plan.tracking_number, plan.tracking_company, plan.tracking_url,
    )
    push.notify_customer = plan.notify_customer
    push.line_items = [line.as_json() for line in plan.lines]
    _log(push, f"creating the fulfillment: {_lines_text(plan)}")
    _save(
        push, "create_sent_at", "tracking_number", "tracking_company", "tracking_url", "notify_customer", "line_items"
    )
    try:
        created = genstore.client.create_fulfillment(
            order_id=order.order_id,
            line_items=[(line.line_item_id, line.quantity) for line in plan.lines],
            tracking_number=plan.tracking_number,
            tracking_company=plan.tracking_company,
            tracking_url=plan.tracking_url or None,
            notify_customer=plan.notify_customer,
        )
    except GenstoreError as exc:
        if not (exc.ambiguous or exc.transient):
            raise
        # It may have happened: read before writing again.
        _log(push, f"create unanswered ({exc}); reading the order's fulfillments")
        try:
            listed = _list_fulfillments(genstore=genstore, store=store, order=order)
        except GenstoreError:
            raise exc from None
        ours = find_ours(listed, shipment.tracking_number)
        if ours is None:
            raise
        return _adopt(push=push, store=store, order=order, shipment=shipment, plan=plan, record=ours,
                      genstore=genstore, after_error=True)
    push.fulfill_id = created.fulfill_id
    _log(push, f"created fulfillment {created.fulfill_id}")
    _save(push, "fulfill_id")
    return _keep_current(
        push=push, plan=plan, shipment=shipment, record=created, genstore=genstore, result=PushResult.CREATED,
        mirror_record=True,
    )


def _adopt(
    *, push: FulfillmentPush, store: Store, order: Order, shipment: Shipment, plan: PushPlan,
    record: FulfillmentRecord, genstore: _Genstore, after_error: bool = False,
) -> PushResult:
    if (record.status or "") in DEAD_FULFILLMENT_STATUSES:
        raise _Refused(
            PushResult.SKIPPED,
            f"Genstore fulfillment {record.fulfill_id} with this tracking number is {record.status}: not re-created",
        )
    push.fulfill_id = record.fulfill_id
    push.adopted = not after_error and not push.create_sent_at
    push.line_items = [{"id": line.id, "quantity": line.quantity} for line in record.line_items]
    push.tracking_number = record.tracking_number or ""
    push.tracking_company = record.tracking_company or ""
    push.tracking_url = record.tracking_url or ""
    push.shipment_status = record.shipment_status or ""
    if after_error or push.create_sent_at:
        _log(push, f"our earlier create did reach Genstore: fulfillment {record.fulfill_id} found by tracking number")
    else:
        _log(push, f"adopted Genstore's fulfillment {record.fulfill_id} (same tracking number)")
    _save(push, "fulfill_id", "adopted", "line_items", "tracking_number", "tracking_company", "tracking_url",
          "shipment_status")
    _mirror(store=store, order=order, record=record)
    if plan.skip_reason:
        raise _Refused(PushResult.SKIPPED, f"Genstore not updated: {plan.skip_reason}")
    result = PushResult.ADOPTED if push.adopted else PushResult.CREATED
    return _keep_current(push=push, plan=plan, shipment=shipment, record=record, genstore=genstore, result=result)


def _keep_current(
    *, push: FulfillmentPush, plan: PushPlan, shipment: Shipment, record: FulfillmentRecord | None,
    genstore: _Genstore, result: PushResult, mirror_record: bool = False,
) -> PushResult:
    """update_tracking if Genstore differs from the plan (never backwards); mark the push succeeded.
    `mirror_record`: `record` is not in the order mirror yet (a fresh create): mirror whichever version is last.
    A `genstore` shipment's fulfillment is the merchant's: only its shipmentStatus is moved (`_keep_status_current`)."""
    current = _current_of(push, record)
    if current["status"] in DEAD_FULFILLMENT_STATUSES:
        raise _Refused(
            PushResult.SKIPPED, f"Genstore fulfillment {push.fulfill_id} is {current['status']}: not updated"
        )
    baseline = furthest_shipment_status(current["shipment_status"], push.shipment_status)
    target = baseline
    push.held_back_shipment_status = ""
    if plan.shipment_status:
        if shipment_status_moves_forward(baseline or None, plan.shipment_status):
            target = plan.shipment_status
        else:
            push.held_back_shipment_status = plan.shipment_status
            _log(push, f"{plan.shipment_status} not pushed: Genstore is already at {baseline}")
    if shipment.source == GENSTORE:
        return _keep_status_current(push=push, shipment=shipment, current=current, target=target, record=record,
                                    genstore=genstore, result=result, mirror_record=mirror_record)
    wanted = {
        "tracking_number": plan.tracking_number,
        "tracking_company": plan.tracking_company,
        "tracking_url": plan.tracking_url,
        "shipment_status": target,
    }
    differs = [name for name, value in wanted.items() if (current[name] or "") != (value or "")]
    if differs:
        # The customer hears about a new number or carrier; status moves alone are Genstore's to announce.
        number_changed = bool({"tracking_number", "tracking_company"} & set(differs)) and result == PushResult.UNCHANGED
        notify = plan.notify_customer and number_changed
        updated = genstore.client.update_tracking(
            push.fulfill_id,
            tracking_number=plan.tracking_number,
            tracking_company=plan.tracking_company,
            tracking_url=plan.tracking_url or None,
            shipment_status=target or None,
            notify_customer=notify,
        )
        record, mirror_record = updated, True
        moves = ", ".join(f"{name} {current[name] or '-'} -> {wanted[name] or '-'}" for name in differs)
        _log(push, f"update_tracking: {moves}")
        if result == PushResult.UNCHANGED:
            result = PushResult.UPDATED
    if mirror_record and record is not None:
        _mirror(store=push.store, order=push.order, record=record)
    push.tracking_number, push.tracking_company, push.tracking_url = (
        plan.tracking_number, plan.tracking_company, plan.tracking_url,
    )
    return _succeeded(push, shipment_status=target, result=result)


def _keep_status_current(
    *, push: FulfillmentPush, shipment: Shipment, current: dict[str, str], target: str,
    record: FulfillmentRecord | None, genstore: _Genstore, result: PushResult, mirror_record: bool,
) -> PushResult:
    """The merchant's own fulfillment (a `genstore` shipment): its number, company and link are theirs, as they
    spell them ("DHL Express"); OMA moves only its shipmentStatus, forward, with an update_tracking that names
    nothing else. So a push that runs after the merchant changed the number in Genstore, and before OMA read the
    order again, cannot write the old number back. Nor is the old parcel's status written onto another number:
    not when the mirror shows the change already, and an answer showing it (the change came in between) ends
    the push, the fulfillment mirrored, for the tracker to retire this shipment."""
    if not _carries(current["tracking_number"], shipment):
        raise _Refused(PushResult.SKIPPED, _number_moved(push, current["tracking_number"], shipment))
    if target and target != (current["shipment_status"] or ""):
        record, mirror_record = genstore.client.update_shipment_status(push.fulfill_id, shipment_status=target), True
        _log(push, f"update_tracking (shipmentStatus only): {current['shipment_status'] or '-'} -> {target}")
        if result == PushResult.UNCHANGED:
            result = PushResult.UPDATED
        if not _carries(record.tracking_number or "", shipment):
            _mirror(store=push.store, order=push.order, record=record)
            push.shipment_status = record.shipment_status or ""
            _save(push, "shipment_status")
            raise _Refused(PushResult.SKIPPED, _number_moved(push, record.tracking_number or "", shipment))
    if mirror_record and record is not None:
        _mirror(store=push.store, order=push.order, record=record)
    # What Genstore holds is what this row says was pushed: the merchant's values, as Genstore answered them.
    held = _current_of(push, record) if record is not None else current
    push.tracking_number, push.tracking_company, push.tracking_url = (
        held["tracking_number"], held["tracking_company"], held["tracking_url"],
    )
    return _succeeded(push, shipment_status=target, result=result)


def _carries(genstore_number: str, shipment: Shipment) -> bool:
    """Whether the number Genstore holds (as spelled there) is the shipment's (normalized, maybe canonical)."""
    number = normalize(genstore_number)
    if not number:
        return False
    return number == shipment.tracking_number or canonical(number, carrier=shipment.carrier) == shipment.tracking_number


def _number_moved(push: FulfillmentPush, number: str, shipment: Shipment) -> str:
    return (
        f"Genstore fulfillment {push.fulfill_id} now carries {number.strip() or 'no tracking number'}, not "
        f"{shipment.tracking_number}: its status is not pushed (the merchant changed it in Genstore; this shipment "
        "is retired when OMA reads the order again)"
    )


def _succeeded(push: FulfillmentPush, *, shipment_status: str, result: PushResult) -> PushResult:
    push.shipment_status = shipment_status
    push.state = State.SUCCEEDED
    push.state_reason = ""
    push.last_error = ""
    push.last_error_status = None
    push.next_attempt_at = None
    push.succeeded_at = timezone.now()
    _save(push, "tracking_number", "tracking_company", "tracking_url", "shipment_status", "held_back_shipment_status",
          "state", "state_reason", "last_error", "last_error_status", "next_attempt_at", "succeeded_at")
    return result


# --- voided labels: cancelling what was pushed ------------------------------------------------------------------


def label_voided(shipment: Shipment) -> bool:
    """A channel voided this shipment's label. A `genstore` shipment mirrors the merchant's own fulfillment: its
    status never makes OMA cancel anything."""
    return shipment.status == Status.CANCELLED and shipment.source != Shipment.Source.GENSTORE


def _cancels_owed(*, order_id: int) -> QuerySet[FulfillmentPush]:
    """The order's pushes whose fulfillment (created, adopted, or maybe created) must still be cancelled: their
    channel shipment's label was voided and no attempt has settled that yet."""
    return (
        FulfillmentPush.objects.filter(
            order_id=order_id, shipment__order_id=order_id, shipment__status=Status.CANCELLED
        )
        .exclude(shipment__source=Shipment.Source.GENSTORE)
        .filter(~Q(fulfill_id="") | Q(create_sent_at__isnull=False))
        .filter(Q(state__in=[State.PENDING, State.IN_PROGRESS]) | ~Q(source_status=Status.CANCELLED))
    )


def _cancels_first(*, push: FulfillmentPush, order: Order, genstore: _Genstore) -> bool:
    """Run the cancels still owed on this order before creating (True if there were any); _Wait when one of them is
    being sent by another worker or Genstore could not take it now."""
    owed = list(
        _cancels_owed(order_id=order.pk).exclude(pk=push.pk).values_list("shipment_id", "source_tracking_number")
    )
    for shipment_id, number in owed:
        assert shipment_id is not None
        outcome = _shipment_push_once(
            shipment_id=shipment_id, client=genstore.client, force=False, status_refresh_later=None
        )
        if outcome.result == PushResult.BUSY:
            raise _Wait(f"waiting for the voided label {number}: its Genstore fulfillment is being cancelled",
                        WAIT_FOR_CANCEL)
        if outcome.result == PushResult.RETRY:
            delay = max(timedelta(seconds=outcome.retry_after or 0.0), WAIT_FOR_CANCEL)
            raise _Wait(f"waiting for the voided label {number}: its Genstore fulfillment is not cancelled yet "
                        f"({outcome.detail})", delay)
        detail = f" ({outcome.detail})" if outcome.detail else ""
        _log(push, f"voided label {number} of this order first: {outcome.result}{detail}")
    return bool(owed)


def _read_fulfillment(genstore: _Genstore, store: Store, order: Order, fulfill_id: str) -> FulfillmentRecord | None:
    listed = _list_fulfillments(genstore=genstore, store=store, order=order)
    return next((record for record in listed if record.fulfill_id == fulfill_id), None)


def _dead(record: FulfillmentRecord) -> bool:
    return (record.status or "") in DEAD_FULFILLMENT_STATUSES


def _cancel_voided(
    *, push: FulfillmentPush, store: Store, order: Order, shipment: Shipment, genstore: _Genstore, verify: bool,
    skip_reason: str,
) -> PushResult:
    """The label was voided: cancel the Genstore fulfillment OMA pushed for it, exactly once."""
    if order.cancelled_at is not None:  # Genstore's cancelled order: nothing of it is ours to change
        raise _Refused(PushResult.SKIPPED, f"Genstore not updated: {skip_reason}")
    done = partial(_mark_cancelled, push=push, store=store, order=order)
    record: FulfillmentRecord | None = None
    if not push.fulfill_id:
        # Never pushed: nothing to undo, unless a create may have reached Genstore (or someone asks to check).
        if not (push.create_sent_at or verify):
            raise _Refused(PushResult.SKIPPED, skip_reason)
        record = find_ours(_list_fulfillments(genstore=genstore, store=store, order=order), shipment.tracking_number)
        if record is None or _dead(record):
            raise _Refused(PushResult.SKIPPED, f"{skip_reason}; no live Genstore fulfillment carries its number")
        push.fulfill_id = record.fulfill_id
        _log(push, f"fulfillment {record.fulfill_id} carries the voided label's number")
        _save(push, "fulfill_id")
    elif push.cancel_sent_at or verify:
        # An earlier cancel may have been applied without our hearing of it: read before writing again.
        record = _read_fulfillment(genstore, store, order, push.fulfill_id)
        if record is None:
            return done(record=None, message=f"fulfillment {push.fulfill_id} is gone from Genstore")
    else:
        mirrored = GenstoreFulfillment.objects.filter(store_id=push.store_id, fulfill_id=push.fulfill_id).first()
        if mirrored is not None and mirrored.status in DEAD_FULFILLMENT_STATUSES:  # dead is final in Genstore
            return done(record=None, message=f"fulfillment {push.fulfill_id} is {mirrored.status} in Genstore already")
    if record is not None and _dead(record):
        return done(record=record, message=f"fulfillment {push.fulfill_id} is {record.status} in Genstore already")

    push.cancel_sent_at = timezone.now()
    _log(push, f"the label was voided: cancelling fulfillment {push.fulfill_id}")
    _save(push, "cancel_sent_at")
    try:
        record = genstore.client.cancel_fulfillment(push.fulfill_id)
    except GenstoreError as exc:
        if exc.transient or exc.ambiguous:
            raise  # pending with a backoff; the next attempt reads the fulfillment first
        # A refusal may be Genstore saying it is cancelled already (our earlier PUT did land): look.
        _log(push, f"cancel refused ({exc}); reading the fulfillment back")
        try:
            record = _read_fulfillment(genstore, store, order, push.fulfill_id)
        except GenstoreError:
            raise exc from None
        if record is None:
            return done(record=None, message=f"fulfillment {push.fulfill_id} is gone from Genstore")
        if _dead(record):
            return done(record=record, message=f"fulfillment {push.fulfill_id} is {record.status} in Genstore")
        if isinstance(exc, GenstoreAuthError):
            raise
        raise _Refused(
            PushResult.FAILED,
            f"Genstore refused to cancel fulfillment {push.fulfill_id} of the voided label: {exc.error_text or exc}",
        ) from None
    return done(record=record, message=f"cancelled fulfillment {push.fulfill_id}")


def _mark_cancelled(
    *, push: FulfillmentPush, store: Store, order: Order, record: FulfillmentRecord | None, message: str
) -> PushResult:
    if record is not None:
        _mirror(store=store, order=order, record=record)
    push.state = State.CANCELLED
    push.state_reason = f"the label was voided: Genstore fulfillment {push.fulfill_id} cancelled"
    push.cancelled_at = timezone.now()
    push.last_error = ""
    push.last_error_status = None
    push.next_attempt_at = None
    _log(push, message)
    _save(push, "state", "state_reason", "cancelled_at", "last_error", "last_error_status", "next_attempt_at")
    # Its items are free in Genstore again: the order's pushes that found nothing left to fulfil are judged again
    # (the drain running this push takes them in its next batch; otherwise the beat, within a minute).
    FulfillmentPush.objects.filter(
        order_id=order.pk, fulfill_id="", shipment__order_id=order.pk,
        state__in=[State.PENDING, State.SKIPPED, State.FAILED],
    ).exclude(shipment__status=Status.CANCELLED).update(
        state=State.PENDING, next_attempt_at=None, updated_at=timezone.now(),
        state_reason="a voided label's fulfillment was cancelled: judging again",
    )
    _replacements_rematch(order=order)
    return PushResult.CANCELLED


def _replacements_rematch(*, order: Order) -> None:
    """Channel records of this order refused while the voided label's fulfillment held their items (a reissued
    label reported with its void: matching counts a live Genstore fulfillment as shipped) are matched again; a new
    shipment queues its own push. Matching refuses again whatever is still wrong."""
    rejected = ExternalShipment.objects.filter(
        order_id=order.pk, state=ExternalShipment.State.REJECTED, voided=False
    ).order_by("pk").values_list("pk", flat=True)
    for record_id in rejected:
        try:
            outcome = external_shipment_rematch(record_id=record_id, include_rejected=True)
        except Exception:  # the cancel is done and recorded; a record left rejected can be re-matched in admin
            logger.exception("re-matching channel record %s after a voided label's cancel failed", record_id)
            continue
        if outcome.outcome in ("created", "added"):
            logger.info("channel record %s of order %s matched once the voided label's fulfillment was cancelled",
                        record_id, order.order_id)


def _lines_text(plan: PushPlan) -> str:
    return ", ".join(f"{line.quantity} × {line.line_item_id}" for line in plan.lines)


def _finish_refused(push: FulfillmentPush, refused: _Refused, genstore: _Genstore | None) -> PushOutcome:
    if push.fulfill_id and refused.result == PushResult.FAILED:
        state = State.FAILED
    else:
        state = State.SKIPPED if refused.result == PushResult.SKIPPED else State.FAILED
    push.state = state
    push.state_reason = refused.reason[:512]
    push.next_attempt_at = None
    if state == State.FAILED:
        push.last_error = refused.reason[:2000]
        push.last_error_status = None
    _log(push, f"{state}: {refused.reason}")
    _save(push, "state", "state_reason", "next_attempt_at", "last_error", "last_error_status")
    return PushOutcome(refused.result, push=push, detail=refused.reason, requests=genstore.requests if genstore else 0)


def _finish_wait(push: FulfillmentPush, wait: _Wait, genstore: _Genstore | None) -> PushOutcome:
    push.state = State.PENDING
    push.state_reason = wait.reason[:512]
    push.next_attempt_at = timezone.now() + wait.delay
    _log(push, wait.reason)
    _save(push, "state", "state_reason", "next_attempt_at")
    return PushOutcome(PushResult.RETRY, push=push, detail=wait.reason, retry_after=wait.delay.total_seconds(),
                       requests=genstore.requests if genstore else 0)


def _finish_error(push: FulfillmentPush, exc: GenstoreError, genstore: _Genstore | None) -> PushOutcome:
    requests = genstore.requests if genstore else 0
    push.last_error = (exc.error_text or str(exc))[:2000]
    push.last_error_status = exc.status
    if exc.transient or exc.ambiguous:
        retry_after = exc.retry_after if isinstance(exc, GenstoreRateLimited) and exc.retry_after else None
        delay = timedelta(seconds=retry_after) if retry_after else _backoff(push.attempts)
        push.state = State.PENDING
        push.state_reason = f"Genstore did not answer: trying again after {int(delay.total_seconds())} s"
        push.next_attempt_at = timezone.now() + delay
        _log(push, f"will retry: {exc}")
        _save(push, "state", "state_reason", "next_attempt_at", "last_error", "last_error_status")
        return PushOutcome(
            PushResult.RETRY, push=push, detail=str(exc), retry_after=delay.total_seconds(), requests=requests
        )
    if isinstance(exc, GenstoreAuthError):
        reason = "Genstore refused the store's access token (reconnect the store)"
    elif isinstance(exc, GenstoreNotFound):
        reason = "Genstore does not know this " + ("fulfillment" if push.fulfill_id else "order")
    else:
        reason = "Genstore refused the push"
    push.state = State.FAILED
    push.state_reason = f"{reason}: {push.last_error}"[:512]
    push.next_attempt_at = None
    _log(push, f"failed: {exc}")
    _save(push, "state", "state_reason", "next_attempt_at", "last_error", "last_error_status")
    return PushOutcome(PushResult.FAILED, push=push, detail=push.state_reason, requests=requests)


def _after_push(push: FulfillmentPush, later: set[int] | None) -> None:
    if later is not None:
        later.add(push.order_id)
        return
    # After the commit (at once outside a transaction); a failure is logged, and reconciliation recomputes it.
    after_commit(partial(orders_unified_status_refresh, order_ids=[push.order_id]))


# --- what is owed -----------------------------------------------------------------------------------------------


def pushes_pending(
    *,
    store: Store | None = None,
    limit: int = 1000,
    include_queued: bool = False,
    requeue_after: timedelta = REQUEUE_AFTER,
    now: datetime | None = None,
) -> list[int]:
    """Ids of shipments whose push is owed, oldest first: never pushed, pending and due, abandoned by a dead worker,
    or settled but the shipment changed since (a trigger that got lost). A pending push queued less than
    `requeue_after` ago is left to its task, unless `include_queued` (the foreground command does not wait for the
    workers)."""
    now = now or timezone.now()
    shipments = Shipment.objects.filter(order__isnull=False, store__is_active=True)
    pushes = FulfillmentPush.objects.filter(shipment__isnull=False, store__is_active=True)
    if store is not None:
        shipments = shipments.filter(store=store)
        pushes = pushes.filter(store=store)
    never = shipments.exclude(
        Exists(FulfillmentPush.objects.filter(shipment=OuterRef("pk"), order=OuterRef("order")))
    ).order_by("pk").values_list("pk", flat=True)[:limit]

    due = Q(state=State.PENDING) & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
    if not include_queued:
        due &= Q(queued_at__isnull=True) | Q(queued_at__lt=now - requeue_after)
    changed = Q(state__in=SETTLED_STATES) & (
        ~Q(source_tracking_number=F("shipment__tracking_number"))
        | ~Q(source_carrier=F("shipment__carrier"))
        | ~Q(source_status=F("shipment__status"))
        | ~Q(source_substatus=F("shipment__substatus"))
        | ~Q(source_tracking_url=F("shipment__tracking_url"))
    )
    owed = (
        pushes.filter(due | changed)
        .filter(order_id=F("shipment__order_id"))
        .order_by("updated_at", "pk")
        .values_list("shipment_id", flat=True)[:limit]
    )
    ids = list(dict.fromkeys([*never, *_abandoned(pushes, now=now, limit=limit), *owed]))
    return ids[:limit]


def _abandoned(pushes: QuerySet[FulfillmentPush], *, now: datetime, limit: int) -> list[int]:
    """Shipments whose push is `in_progress` although no worker holds it any more (killed mid-push).

    PostgreSQL: the advisory lock is free (PostgreSQL released it with the dead worker's connection), known at
    once. Elsewhere: the lease ran out."""
    in_progress = pushes.filter(state=State.IN_PROGRESS).order_by("last_attempt_at", "pk")
    if connection.vendor != "postgresql":
        stale = lease_free(now=now, ttl=STALE_IN_PROGRESS, until_field=None, taken_field="last_attempt_at")
        return list(in_progress.filter(stale).values_list("shipment_id", flat=True)[:limit])
    pushes_in_progress = in_progress.only("pk", "key", "shipment_id")[:limit]
    return [
        push.shipment_id for push in pushes_in_progress
        if push.shipment_id is not None and advisory_lock_is_free(push.lock_id)
    ]


# --- draining a store's owed pushes -----------------------------------------------------------------------------

# A drain works through its store's owed pushes for this long, then queues itself again: other stores' drains get
# the worker in between, and no drain comes near Celery's time limit.
DRAIN_BUDGET = timedelta(seconds=60)
# The drain's lease on its store row, renewed before each push: a worker killed mid-drain holds its store this long.
DRAIN_LEASE = timedelta(seconds=30)
# Owed pushes looked up at a time (oldest first); the orders' unified statuses are refreshed once per batch.
DRAIN_BATCH = 100
# Pushes a drain runs side by side (threads of its worker, each with its own Genstore client and database
# connection): a push mostly waits (for Genstore, for the database), and one push after the other cannot keep up
# with a bucket of 400 at 40/s. The store's bucket paces them all.
DRAIN_LANES = 4


@dataclass(slots=True)
class DrainOutcome:
    busy: bool = False  # another drain holds the store: this one did nothing
    more: bool = False  # it stopped with owed pushes it did not try (its budget ran out)
    tried: set[int] = field(default_factory=set)  # shipment ids pushed (whatever the result)
    results: Counter[str] = field(default_factory=Counter)

    @property
    def pushed(self) -> int:
        return len(self.tried)


def store_pushes_drain(
    *,
    store: Store,
    client: GenstoreClient | None = None,
    budget: timedelta = DRAIN_BUDGET,
    batch: int = DRAIN_BATCH,
    lanes: int = DRAIN_LANES,
) -> DrainOutcome:
    """Push what the store owes (`pushes_pending`, oldest first), `lanes` pushes side by side at the pace of the
    store's bucket (each client waits for its tokens), for up to `budget`. One drain per store at a time: a lease
    on the store row; a second drain finds it taken and returns `busy` at once. Each shipment is tried once per
    drain: one still owed afterwards (another worker held it, or Genstore asked us to wait) is the next drain's.

    One lane only inside a transaction (threads would not see its writes: a test, a caller's atomic block) and off
    PostgreSQL (SQLite takes one writer at a time)."""
    outcome = DrainOutcome()
    rows = Store.objects.filter(pk=store.pk, is_active=True)
    token = uuid.uuid4().hex
    if not lease_take(rows, holder=token, ttl=DRAIN_LEASE, holder_field="push_drain_token",
                      until_field="push_drain_until"):
        outcome.busy = rows.exists()
        return outcome
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        lanes = 1

    def still_ours() -> bool:
        return bool(lease_renew(rows, holder=token, ttl=DRAIN_LEASE, holder_field="push_drain_token",
                                until_field="push_drain_until"))

    run = _DrainRun(store=store, outcome=outcome, deadline=time.monotonic() + budget.total_seconds(),
                    renew=still_ours)
    try:
        while True:
            owed = pushes_pending(store=store, limit=batch + len(outcome.tried), include_queued=True)
            ids = [pk for pk in owed if pk not in outcome.tried][:batch]
            if not ids or not run.batch(ids, client=client, lanes=lanes):
                return outcome
    finally:
        lease_release(rows, holder=token, holder_field="push_drain_token", until_field="push_drain_until")


@dataclass
class _DrainRun:
    """One drain's state, shared by its lanes."""

    store: Store
    outcome: DrainOutcome
    deadline: float
    renew: Callable[[], bool]
    stopped: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    order_ids: dict[int, str] = field(default_factory=dict)  # shipment pk -> Genstore orderId (log lines)

    def batch(self, ids: list[int], *, client: GenstoreClient | None, lanes: int) -> bool:
        """Push these shipments; False when the drain must stop (budget spent, lease lost). The shipments of one
        order go to the same lane, one after the other: two pushes of one order at once would lock its rows in
        opposite orders."""
        order_of: dict[int, int | None] = {}
        for shipment_id, order_pk, order_id in Shipment.objects.filter(pk__in=ids).values_list(
            "pk", "order_id", "order__order_id"
        ):
            order_of[shipment_id] = order_pk
            self.order_ids[shipment_id] = order_id or ""
        by_order: dict[int | None, list[int]] = {}
        for shipment_id in ids:
            by_order.setdefault(order_of.get(shipment_id), []).append(shipment_id)
        todo = iter(list(by_order.values()))
        later: set[int] = set()  # the orders whose unified status to refresh, once, at the end
        errors: list[BaseException] = []
        # Each lane runs in a copy of this thread's context, so its log lines carry the task's ids too.
        threads = [
            threading.Thread(
                target=contextvars.copy_context().run, args=(self._own_lane, todo, later, errors),
                name=f"push-drain-{lane}",
            )
            for lane in range(1, min(lanes, len(by_order)))
        ]
        try:
            for thread in threads:
                thread.start()
            self._lane(todo, later, client)
        finally:
            for thread in threads:
                thread.join()
            if later:
                orders_unified_status_refresh(order_ids=sorted(later))
        if errors:
            raise errors[0]
        return not self.stopped.is_set()

    def _own_lane(self, todo: Iterator[list[int]], later: set[int], errors: list[BaseException]) -> None:
        """A lane in its own thread: its own Genstore client and (Django's, per thread) database connection."""
        client = _client_for(self.store)
        try:
            self._lane(todo, later, client)
        except BaseException as exc:  # handed to the drain's thread, which raises it
            errors.append(exc)
            self.stopped.set()
        finally:
            client.close()
            connections.close_all()  # this thread's connections only

    def _lane(self, todo: Iterator[list[int]], later: set[int], client: GenstoreClient | None) -> None:
        while not self.stopped.is_set():
            with self.lock:
                shipment_ids = next(todo, None)
            if shipment_ids is None:
                return
            for shipment_id in shipment_ids:
                if not self._may_go_on():
                    return
                self._push(shipment_id, later, client)

    def _may_go_on(self) -> bool:
        if time.monotonic() >= self.deadline:
            self.outcome.more = True
            self.stopped.set()
        elif not self.renew():  # the lease ran out (a push waited that long) and another drain took the store
            self.stopped.set()
        return not self.stopped.is_set()

    def _push(self, shipment_id: int, later: set[int], client: GenstoreClient | None) -> None:
        try:
            with log_context(order_id=self.order_ids.get(shipment_id)):
                result = str(shipment_push(shipment_id=shipment_id, client=client, status_refresh_later=later).result)
        except Exception:  # one push's trouble (a deadlock, our bug) never stops the others; its row is due again
            logger.exception("push of shipment %s failed; a later drain tries it again", shipment_id)
            result = "error"
        with self.lock:
            self.outcome.tried.add(shipment_id)
            self.outcome.results[result] += 1


def pushes_untried(*, store: Store, tried: set[int]) -> bool:
    """Whether the store owes a push that a drain which tried `tried` did not try (it came after its last look)."""
    owed = pushes_pending(store=store, limit=len(tried) + 1, include_queued=True)
    return any(pk not in tried for pk in owed)
