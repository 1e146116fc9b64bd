"""Customer notification writes: store settings, detecting milestones, sending the emails, unsubscribing.

Exactly when an email goes out, and why never twice:

1. `notifications_detect` runs when tracking reports changed shipments (receivers.py, after the tracking write
   committed). For each shipment it works out the one milestone to email now (milestones.py) and inserts a `due`
   row, unique per shipment and milestone: a repeated signal, a second poller or a status that swings back and
   forth never makes a second row.
2. `notifications_send_due` (a worker) takes due rows one at a time (SELECT ... FOR UPDATE SKIP LOCKED, so workers
   share them), settles those it must skip (no email, unsubscribed, emails off, OMA_PUBLIC_URL unset, stale),
   renders the email, and commits the row as `sending` before handing the message to the mail server; it records
   `sent` after.

At most once. A worker killed between the hand-over and the `sent` commit leaves the row `sending`; it is never
picked up again, because the mail server may well have delivered it, and a second "your parcel is out for
delivery" is a visible, unrecallable mistake, while a missed one costs little: the tracking page always shows the
status and the next milestone brings another email. The window is one SMTP exchange wide; admin lists such rows
as "may not have been sent" and a merchant may choose to send them again. An error the mail backend raises (server
down, connection refused, timeout) means the message was not accepted: the row goes back to `due` with a backoff,
up to MAX_ATTEMPTS; a refused recipient fails at once.
"""

from __future__ import annotations

import logging
import smtplib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Exists, Min, OuterRef, Subquery
from django.utils import timezone

from oma.merchant.tracking_page import Branding, branding_for
from oma.notifications.messages import (
    absolute,
    email_context,
    email_message,
    email_render,
    parcel_facts,
)
from oma.notifications.milestones import MILESTONES, milestone_to_notify
from oma.notifications.models import OrderUnsubscribe, ShipmentNotification, StoreNotificationSettings
from oma.orders.models import Order
from tracking.models import Shipment, TrackingEvent

logger = logging.getLogger(__name__)

State = ShipmentNotification.State
MAX_ATTEMPTS = 5
# An email still unsent this long after it was due is no longer news ("out for delivery" two days later).
STALE_AFTER = timedelta(hours=36)
# A row still `sending` after this long was left by a worker that stopped: admin says "may not have been sent".
SENDING_UNCONFIRMED_AFTER = timedelta(minutes=10)
# Errors that say this recipient will never take the message: no retry.
PERMANENT_ERRORS: tuple[type[Exception], ...] = (smtplib.SMTPRecipientsRefused,)


# --- settings -------------------------------------------------------------------------------------------------


def notification_settings_save(*, settings_row: StoreNotificationSettings, now: datetime | None = None) -> None:
    """Save a store's settings, stamping each milestone that has just been switched on (with the store's emails on)
    with the current time: shipments are emailed only about milestones they reach after it."""
    now = now or timezone.now()
    stamps = dict(settings_row.active_since or {})
    for milestone in MILESTONES:
        if not settings_row.wants(milestone):
            stamps.pop(milestone, None)
        elif milestone not in stamps:
            stamps[milestone] = now.isoformat()
    settings_row.active_since = stamps
    settings_row.save()


def store_notifications_enable(
    *, store_id: int, milestones: Sequence[str] = MILESTONES, now: datetime | None = None
) -> StoreNotificationSettings:
    """Turn a store's customer emails on for these milestones (and off for the others)."""
    row, _ = StoreNotificationSettings.objects.get_or_create(store_id=store_id)
    row.is_enabled = True
    for milestone in MILESTONES:
        setattr(row, f"notify_{milestone}", milestone in milestones)
    notification_settings_save(settings_row=row, now=now)
    return row


# --- detecting ------------------------------------------------------------------------------------------------


def notifications_detect(*, shipment_ids: Sequence[int], now: datetime | None = None) -> int:
    """Insert a due notification for each of these shipments that reached a milestone its store emails; the
    number inserted. A constant number of queries whatever the batch size; safe to repeat."""
    shipments = list(
        Shipment.objects.filter(
            pk__in=list(shipment_ids),
            status__in=MILESTONES,
            order__isnull=False,
            order__cancelled_at__isnull=True,
            store__is_active=True,
            store__notification_settings__is_enabled=True,
        ).values_list("pk", "store_id", "order_id", "status", "status_changed_at")
    )
    if not shipments:
        return 0
    ids = [row[0] for row in shipments]
    active = {
        row.store_id: row.active_since_times()
        for row in StoreNotificationSettings.objects.filter(store_id__in={row[1] for row in shipments})
    }
    first_event_at: dict[int, dict[str, datetime]] = {}
    for shipment_id, status, first in (
        TrackingEvent.objects.filter(shipment_id__in=ids, status__in=MILESTONES)
        .values("shipment_id", "status").annotate(first=Min("occurred_at"))
        .values_list("shipment_id", "status", "first")
    ):
        first_event_at.setdefault(shipment_id, {})[status] = first
    already: dict[int, set[str]] = {}
    for shipment_id, milestone in ShipmentNotification.objects.filter(shipment_id__in=ids).values_list(
        "shipment_id", "milestone"
    ):
        already.setdefault(shipment_id, set()).add(milestone)

    now = now or timezone.now()
    new_rows = []
    for shipment_id, store_id, order_id, status, status_changed_at in shipments:
        found = milestone_to_notify(
            status=status,
            status_changed_at=status_changed_at,
            first_event_at=first_event_at.get(shipment_id, {}),
            active_since=active.get(store_id, {}),
            already=already.get(shipment_id, set()),
        )
        if found is not None:
            milestone, reached_at = found
            new_rows.append(
                ShipmentNotification(
                    store_id=store_id, shipment_id=shipment_id, order_id=order_id, milestone=milestone,
                    reached_at=reached_at, due_at=now, created_at=now,
                )
            )
    # A concurrent detection of the same change inserted the same rows: theirs stand, ours are dropped.
    ShipmentNotification.objects.bulk_create(new_rows, ignore_conflicts=True)
    return len(new_rows)


# --- sending --------------------------------------------------------------------------------------------------


@dataclass
class SendRun:
    """What one drain did: rows settled per final state, and whether due rows were left for the next run."""

    counts: Counter[str] = field(default_factory=Counter)
    more_due: bool = False

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class _StoreFacts:
    settings_row: StoreNotificationSettings | None
    branding: Branding


def notifications_send_due(
    *, limit: int = 200, connection: BaseEmailBackend | None = None, now: datetime | None = None
) -> SendRun:
    """Send (or skip, saying why) up to `limit` due notifications, one at a time, over one mail connection."""
    run = SendRun()
    stores: dict[int, _StoreFacts] = {}
    connection = connection or get_connection()
    try:
        for _ in range(limit):
            state = notification_send_next(connection=connection, stores=stores, now=now)
            if state is None:
                break
            run.counts[state] += 1
        else:
            run.more_due = notifications_due_exist(now=now)
    finally:
        connection.close()
    if run.counts[State.SKIPPED_NO_PUBLIC_URL]:
        logger.warning("customer emails: %d skipped because OMA_PUBLIC_URL is not set (no link to put in them)",
                       run.counts[State.SKIPPED_NO_PUBLIC_URL])
    if run.total:
        logger.info("customer emails: %s", ", ".join(f"{count} {state}" for state, count in sorted(run.counts.items())))
    return run


def notifications_due_exist(*, now: datetime | None = None) -> bool:
    return ShipmentNotification.objects.filter(state=State.DUE, due_at__lte=now or timezone.now()).exists()


def notification_send_next(
    *, connection: BaseEmailBackend, stores: dict[int, _StoreFacts] | None = None, now: datetime | None = None
) -> str | None:
    """Take the next due notification and settle it: skipped, sent, failed, or due again later. Its final state,
    or None when nothing is due. `stores` caches each store's settings and branding across calls."""
    stores = {} if stores is None else stores
    moment = now or timezone.now()
    with transaction.atomic():
        row = (
            ShipmentNotification.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("store", "order", "shipment")
            .annotate(
                unsubscribed=Exists(OrderUnsubscribe.objects.filter(order_id=OuterRef("order_id"))),
                location=Subquery(
                    TrackingEvent.objects.filter(shipment_id=OuterRef("shipment_id")).exclude(location="")
                    .order_by("-occurred_at", "-id").values("location")[:1]
                ),
            )
            .filter(state=State.DUE, due_at__lte=moment)
            .order_by("due_at", "pk")
            .first()
        )
        if row is None:
            return None
        facts = stores.get(row.store_id)
        if facts is None:
            facts = stores[row.store_id] = _StoreFacts(
                settings_row=StoreNotificationSettings.objects.filter(store_id=row.store_id).first(),
                branding=branding_for(row.store),
            )
        skipped = _skip_reason(row, facts.settings_row, moment)
        if skipped is not None:
            _settle(row, skipped[0], error=skipped[1])
            return row.state
        try:
            message = _message_for(row, facts)
        except Exception as exc:  # a merchant's template that does not render: nothing to send, say why
            logger.exception("customer email %s: could not be rendered", row.pk)
            _settle(row, State.FAILED, error=f"could not render the email: {type(exc).__name__}: {exc}")
            return row.state
        row.state = State.SENDING
        row.attempts += 1
        row.sending_started_at = moment
        row.subject = str(message.subject)[:255]
        row.save(update_fields=["state", "attempts", "sending_started_at", "subject", "language"])
    # Committed as `sending`: from here on this row is never taken again, whatever happens to this process.
    try:
        connection.send_messages([message])
    except Exception as exc:  # the backend raised: the server did not take the message
        return _after_failure(row, exc, moment, connection)
    ShipmentNotification.objects.filter(pk=row.pk, state=State.SENDING).update(
        state=State.SENT, sent_at=timezone.now(), last_error=""
    )
    return State.SENT


def _skip_reason(
    row: ShipmentNotification, settings_row: StoreNotificationSettings | None, now: datetime
) -> tuple[str, str] | None:
    if settings_row is None or not settings_row.wants(row.milestone) or not row.store.is_active:
        return State.SKIPPED_DISABLED, "the store's emails for this milestone were turned off before it was sent"
    if row.order.cancelled_at is not None:
        return State.SKIPPED_DISABLED, "the order was cancelled"
    if now - row.due_at > STALE_AFTER:
        return State.SKIPPED_STALE, f"still unsent {STALE_AFTER} after it was due: no longer news"
    if getattr(row, "unsubscribed", False):
        return State.SKIPPED_UNSUBSCRIBED, ""
    if not _valid_email(row.order.email):
        return State.SKIPPED_NO_EMAIL, "the order has no usable email (Genstore's protected customer data)"
    if not settings.OMA_PUBLIC_URL:
        return State.SKIPPED_NO_PUBLIC_URL, "OMA_PUBLIC_URL is not set: the email would have no working link"
    return None


def _valid_email(address: str) -> bool:
    if not address:
        return False
    try:
        validate_email(address)
    except ValidationError:
        return False
    return True


def _message_for(row: ShipmentNotification, facts: _StoreFacts) -> EmailMultiAlternatives:
    settings_row = facts.settings_row
    assert settings_row is not None  # checked by _skip_reason
    row.language = settings_row.language or settings.LANGUAGE_CODE
    public_url = settings.OMA_PUBLIC_URL
    parcel = parcel_facts(shipment=row.shipment, order=row.order, location=getattr(row, "location", None) or "")
    rendered = email_render(
        store=row.store,
        milestone=row.milestone,
        context=email_context(
            store=row.store, branding=facts.branding, milestone=row.milestone, facts=parcel, public_url=public_url
        ),
        language=row.language,
    )
    return email_message(
        rendered=rendered,
        to=row.order.email,
        sender_name=facts.branding.name or str(row.store),
        reply_to=settings_row.reply_to or facts.branding.support_email,
        unsubscribe_url=absolute(public_url, parcel.unsubscribe_path),
        notification_id=row.pk,
    )


def _settle(row: ShipmentNotification, state: str, *, error: str = "") -> None:
    row.state = state
    row.last_error = error[:2000]
    row.save(update_fields=["state", "last_error"])


def _after_failure(row: ShipmentNotification, exc: Exception, now: datetime, connection: BaseEmailBackend) -> str:
    # The connection may be broken: close it, so that the next message opens a fresh one.
    try:
        connection.close()
    except Exception:  # closing a broken connection may fail too; the next send opens a new one
        logger.debug("closing the mail connection failed", exc_info=True)
    error = f"{type(exc).__name__}: {exc}"[:2000]
    if isinstance(exc, PERMANENT_ERRORS) or row.attempts >= MAX_ATTEMPTS:
        state, due_at = State.FAILED, row.due_at
    else:
        state, due_at = State.DUE, now + timedelta(minutes=2 ** row.attempts)
    logger.warning("customer email %s not sent (attempt %d, now %s): %s", row.pk, row.attempts, state, error)
    ShipmentNotification.objects.filter(pk=row.pk, state=State.SENDING).update(
        state=state, due_at=due_at, last_error=error
    )
    return state


def notifications_send_again(*, notification_ids: Sequence[int], now: datetime | None = None) -> int:
    """A merchant's decision: make these unconfirmed (`sending`), failed or skipped-for-want-of-a-URL emails due
    again. The one way a `sending` row is ever sent a second time."""
    return ShipmentNotification.objects.filter(
        pk__in=list(notification_ids),
        state__in=[State.SENDING, State.FAILED, State.SKIPPED_NO_PUBLIC_URL],
    ).update(state=State.DUE, due_at=now or timezone.now(), last_error="")


def notification_unconfirmed(row: ShipmentNotification, *, now: datetime | None = None) -> bool:
    """A row a worker left `sending` (it stopped between handing the email over and recording it): the email may
    or may not have gone out."""
    started = row.sending_started_at
    return (
        row.state == State.SENDING
        and started is not None
        and (now or timezone.now()) - started > SENDING_UNCONFIRMED_AFTER
    )


# --- unsubscribing --------------------------------------------------------------------------------------------


def order_unsubscribe(*, order: Order) -> OrderUnsubscribe:
    """No more emails about this order (idempotent); what is already due is skipped when its turn comes."""
    row, _ = OrderUnsubscribe.objects.get_or_create(order=order, defaults={"store_id": order.store_id})
    return row
