"""The alert digest: one email a day per store, with the thresholds the merchant set (AlertPolicy), listing new
delivery exceptions, parcels the carrier never picked up, parcels stuck without a scan, and parcels predicted
late; for a store that brings external orders, also those Genstore refused to create (failed) and those only the
merchant can settle (needs attention). Then what stopped working and only the merchant can fix, each section shown
only when it has rows: fulfillments Genstore refused (failed pushes), tracking records still waiting for their order
a day after they came, channels whose platform refuses OMA's credentials, and the store's carrier accounts that keep
failing. Nothing to report, nothing sent. Email goes through Django's EMAIL_BACKEND (the console by default).

The queries behind those last sections (`failed_pushes`, `failed_external_orders`, `unmatched_external_shipments`,
`channels_failing_auth`, `failing_carrier_accounts`) are the one definition of each failure: oma.events raises its
`alert.*` events from the same ones, as they happen.

The day's AlertDigest row is written before sending (unique per store and day): a second run the same day, or
two beat processes at once, send nothing more; a failed send is retried by later runs, up to MAX_ATTEMPTS.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.db.models import F, Model, QuerySet
from django.urls import reverse
from django.utils import timezone

from oma.channels.models import Channel, ExternalOrder, ExternalShipment
from oma.fulfillment.models import FulfillmentPush
from oma.merchant.models import AlertDigest, AlertPolicy
from oma.merchant.selectors import (
    Thresholds,
    exception_shipments,
    late_shipments,
    not_picked_up_shipments,
    stuck_shipments,
)
from oma.stores.models import Store
from tracking.models import CarrierAccount, Shipment

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
ROWS_PER_SECTION = 25
# A tracking record may wait this long for its order (a webhook or sweep brings it) before it is news.
UNMATCHED_NEWS_AFTER = timedelta(days=1)
# One failed poll is an outage blip that the next success clears; this many in a row is an account to look at.
CARRIER_ACCOUNT_FAILURES_TO_REPORT = 3
# oma.channels.services.channel_poll pauses a channel for an hour when the platform refuses its credentials (and for
# other errors only a person can fix), five minutes for transient ones: a pause this long means "fix the channel".
CHANNEL_AUTH_PAUSE = timedelta(minutes=55)


# --- what stopped working (also read by oma.events for the alert.* events) -----------------------------------


def _in_stores(rows: QuerySet, store_ids: Collection[int] | None) -> QuerySet:
    return rows if store_ids is None else rows.filter(store_id__in=list(store_ids))


def failed_pushes(*, store_ids: Collection[int] | None = None) -> QuerySet[FulfillmentPush]:
    """Fulfillments Genstore refused (422, the token refused...): not retried until the shipment or order changes."""
    return _in_stores(FulfillmentPush.objects.filter(state=FulfillmentPush.State.FAILED), store_ids)


def failed_external_orders(*, store_ids: Collection[int] | None = None) -> QuerySet[ExternalOrder]:
    """Orders of other channels Genstore refused to create."""
    return _in_stores(ExternalOrder.objects.filter(state=ExternalOrder.State.FAILED), store_ids)


def unmatched_external_shipments(
    *, now: datetime, store_ids: Collection[int] | None = None
) -> QuerySet[ExternalShipment]:
    """Tracking records a channel reported that are still waiting for their order a day later."""
    rows = ExternalShipment.objects.filter(
        state=ExternalShipment.State.UNMATCHED, received_at__lte=now - UNMATCHED_NEWS_AFTER
    )
    return _in_stores(rows, store_ids)


def channels_failing_auth(*, store_ids: Collection[int] | None = None) -> QuerySet[Channel]:
    """Enabled channels whose last poll failed with an error only a person can fix (refused credentials): the poll
    recorded the error and paused the channel for about an hour (see CHANNEL_AUTH_PAUSE)."""
    rows = Channel.objects.filter(is_enabled=True, last_polled_at__isnull=False).exclude(last_error="").filter(
        poll_paused_until__gte=F("last_polled_at") + CHANNEL_AUTH_PAUSE
    )
    return _in_stores(rows, store_ids)


def failing_carrier_accounts(*, store_ids: Collection[int] | None = None) -> QuerySet[CarrierAccount]:
    """A store's own active carrier accounts that failed several polls in a row (credentials, outage); the shared
    accounts (no store) are the operator's."""
    rows = CarrierAccount.objects.filter(
        is_active=True, store__isnull=False, consecutive_failures__gte=CARRIER_ACCOUNT_FAILURES_TO_REPORT
    ).exclude(last_error="")
    return _in_stores(rows, store_ids)


@dataclass
class DigestContent:
    subject: str
    body: str
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def has_news(self) -> bool:
        return any(self.counts.values())


def _admin_url(path: str) -> str:
    base = settings.OMA_PUBLIC_URL.rstrip("/")
    return f"{base}{path}" if base else path


def _line(shipment: Shipment, extra: str) -> str:
    order = shipment.order
    order_label = (order.name or f"#{order.order_id}") if order else "(no order)"
    link = _admin_url(reverse("admin:orders_order_change", args=[order.pk])) if order else ""
    return f"  - {order_label}: {shipment.tracking_number} ({shipment.carrier.upper() or '?'}) {extra}  {link}".rstrip()


def _external_line(row: ExternalOrder, extra: str) -> str:
    link = _admin_url(reverse("admin:channels_externalorder_change", args=[row.pk]))
    text = " ".join(extra.split())
    text = text if len(text) <= 200 else text[:200] + "…"
    return f"  - {row.source_name} order {row.external_order_id} ({row.channel.name}): {text}  {link}"


def _short(text: str, limit: int = 200) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[:limit] + "…"


def _admin_link(obj: Model) -> str:
    meta = obj._meta
    return _admin_url(reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk]))


def _push_line(push: FulfillmentPush) -> str:
    order = push.order
    number = push.tracking_number or push.source_tracking_number or "?"
    reason = _short(push.state_reason or push.last_error or "failed")
    return f"  - {order.name or '#' + order.order_id}: {number} {reason}  {_admin_link(push)}"


def _unmatched_line(record: ExternalShipment) -> str:
    return (f"  - {record.tracking_number} for order {record.external_order_id} ({record.channel.name}), "
            f"received {record.received_at:%Y-%m-%d}  {_admin_link(record)}")


def _channel_line(channel: Channel) -> str:
    return f"  - {channel.name} ({channel.kind}): {_short(channel.last_error)}  {_admin_link(channel)}"


def _carrier_account_line(account: CarrierAccount) -> str:
    return (f"  - {account}: {account.consecutive_failures} failures in a row, {_short(account.last_error)}  "
            f"{_admin_link(account)}")


def _operations_sections(store: Store, now: datetime) -> list[tuple[str, str, int, list[str]]]:
    """What stopped working and needs the merchant; a section is listed (and counted) only when it has rows."""
    ids = [store.pk]
    candidates: list[tuple[str, str, QuerySet, Callable[[Any], str]]] = [
        ("failed_pushes", "Fulfillments Genstore refused (fix the cause, then retry the push in OMA)",
         failed_pushes(store_ids=ids).select_related("order").order_by("updated_at", "pk"), _push_line),
        ("unmatched_records", "Tracking records still waiting for their order after a day",
         unmatched_external_shipments(now=now, store_ids=ids).select_related("channel").order_by("received_at", "pk"),
         _unmatched_line),
        ("channels_failing", "Channels whose platform refuses OMA's credentials (polls paused)",
         channels_failing_auth(store_ids=ids).order_by("name", "pk"), _channel_line),
        ("carrier_accounts_failing", "Carrier accounts failing (their parcels get no new scans)",
         failing_carrier_accounts(store_ids=ids).order_by("carrier", "pk"), _carrier_account_line),
    ]
    sections = []
    for key, title, rows, line in candidates:
        count = rows.count()
        if count:
            sections.append((key, title, count, [line(row) for row in rows[:ROWS_PER_SECTION]]))
    return sections


def _external_order_sections(store: Store) -> list[tuple[str, str, int, list[str]]]:
    """Failed creates and rows that need the merchant, for a store that brings external orders at all."""
    rows = ExternalOrder.objects.filter(store=store).select_related("channel").order_by("received_at", "pk")
    if not rows.exists():
        return []
    failed = failed_external_orders(store_ids=[store.pk]).select_related("channel").order_by("received_at", "pk")
    attention = rows.exclude(needs_attention="")
    return [
        ("external_failed", "External orders Genstore refused to create (fix and retry them in OMA)",
         failed.count(),
         [_external_line(row, row.last_error or row.state_reason or "failed") for row in failed[:ROWS_PER_SECTION]]),
        ("external_attention", "External orders that need you", attention.count(),
         [_external_line(row, row.needs_attention) for row in attention[:ROWS_PER_SECTION]]),
    ]


def alert_digest_build(*, store: Store, policy: AlertPolicy, since: datetime, now: datetime) -> DigestContent:
    thresholds = {store.pk: Thresholds(policy.not_picked_up_after_days, policy.stuck_after_days,
                                       policy.late_after_days)}
    sections: list[tuple[str, str, int, list[str]]] = []
    if policy.include_exceptions:
        exceptions = exception_shipments(store_ids=[store.pk], since=since)
        sections.append((
            "exceptions", "New delivery exceptions", exceptions.count(),
            [_line(s, f"{s.status}{': ' + s.substatus if s.substatus else ''} {s.raw_text}".strip())
             for s in exceptions[:ROWS_PER_SECTION]],
        ))
    not_picked = not_picked_up_shipments(store_ids=[store.pk], now=now, thresholds=thresholds)
    sections.append((
        "not_picked_up", f"No carrier scan {policy.not_picked_up_after_days}+ days after the label",
        not_picked.count(),
        [_line(s, f"label {s.created_at:%Y-%m-%d}") for s in not_picked[:ROWS_PER_SECTION]],
    ))
    stuck = stuck_shipments(store_ids=[store.pk], now=now, thresholds=thresholds)
    sections.append((
        "stuck", f"Stuck: no new scan for {policy.stuck_after_days}+ days", stuck.count(),
        [_line(s, f"{s.status}, last scan {s.last_event_at:%Y-%m-%d}" if s.last_event_at else s.status)
         for s in stuck[:ROWS_PER_SECTION]],
    ))
    late = list(itertools.islice(late_shipments(store_ids=[store.pk], now=now, thresholds=thresholds), 1000))
    sections.append((
        "late", f"Predicted late (more than {policy.late_after_days} day(s) past the estimate)", len(late),
        [_line(s, f"expected by {estimate.latest:%Y-%m-%d} ({estimate.source})")
         for s, estimate in late[:ROWS_PER_SECTION]],
    ))
    sections.extend(_external_order_sections(store))
    sections.extend(_operations_sections(store, now))
    counts = {key: count for key, _title, count, _lines in sections}
    summary = ", ".join(f"{count} {key.replace('_', ' ')}" for key, _t, count, _l in sections if count)
    lines = [f"What needs attention at {store} ({now:%Y-%m-%d %H:%M} UTC).", ""]
    for _key, title, count, rows in sections:
        if not count:
            continue
        lines.append(f"{title}: {count}")
        lines.extend(rows)
        if count > len(rows):
            lines.append(f"  … and {count - len(rows)} more")
        lines.append("")
    lines.append(f"Dashboard: {_admin_url(reverse('admin:dashboard'))}")
    lines.append("Thresholds and recipients are on the store's page in OMA's admin.")
    return DigestContent(subject=f"[OMA] {store}: {summary or 'nothing to report'}", body="\n".join(lines),
                         counts=counts)


def _due_today(policy: AlertPolicy, now: datetime) -> bool:
    return now.hour >= policy.send_hour_utc


def alert_digest_send(*, store: Store, now: datetime | None = None) -> AlertDigest | None:
    """Build, record and send today's digest of one store (at most once a day)."""
    now = now or timezone.now()
    policy = AlertPolicy.objects.filter(store=store, is_enabled=True).first()
    if policy is None or not policy.recipient_list:
        return None
    today = now.date()
    digest = AlertDigest.objects.filter(store=store, digest_date=today).first()
    if digest is None:
        previous = AlertDigest.objects.filter(store=store, digest_date__lt=today).order_by("-digest_date").first()
        since = previous.period_end if previous else now - timedelta(days=1)
        content = alert_digest_build(store=store, policy=policy, since=since, now=now)
        try:
            with transaction.atomic():
                digest = AlertDigest.objects.create(
                    store=store, digest_date=today, period_start=since, period_end=now,
                    recipients=policy.recipient_list, counts=content.counts, subject=content.subject,
                    body=content.body,
                    state=AlertDigest.State.PENDING if content.has_news else AlertDigest.State.NOTHING,
                )
        except IntegrityError:  # another run wrote today's digest first: it sends it
            return AlertDigest.objects.filter(store=store, digest_date=today).first()
    return _deliver(digest, now)


def _deliver(digest: AlertDigest, now: datetime) -> AlertDigest:
    with transaction.atomic():
        claimed = (
            AlertDigest.objects.select_for_update(skip_locked=True)
            .filter(pk=digest.pk, state=AlertDigest.State.PENDING).first()
        )
        if claimed is None:
            return AlertDigest.objects.get(pk=digest.pk)
        claimed.attempts += 1
        try:
            EmailMessage(subject=claimed.subject, body=claimed.body, to=claimed.recipients).send()
        except Exception as exc:  # SMTP trouble of any kind: recorded, retried by the next run
            claimed.last_error = f"{type(exc).__name__}: {exc}"[:2000]
            if claimed.attempts >= MAX_ATTEMPTS:
                claimed.state = AlertDigest.State.FAILED
            logger.warning("alert digest %s of store %s not sent: %s", claimed.pk, claimed.store_id, exc)
        else:
            claimed.state = AlertDigest.State.SENT
            claimed.sent_at = now
            claimed.last_error = ""
        claimed.save(update_fields=["attempts", "state", "sent_at", "last_error"])
        return claimed


def alert_digests_send_due(*, now: datetime | None = None) -> int:
    """Beat entry point: every active store whose digest hour has come and has no digest sent today."""
    now = now or timezone.now()
    sent = 0
    policies = AlertPolicy.objects.filter(is_enabled=True, store__is_active=True).select_related("store")
    for policy in policies:
        if not _due_today(policy, now) or not policy.recipient_list:
            continue
        existing = AlertDigest.objects.filter(store=policy.store, digest_date=now.date()).first()
        if existing is not None and existing.state != AlertDigest.State.PENDING:
            continue
        digest = alert_digest_send(store=policy.store, now=now)
        if digest is not None and digest.state == AlertDigest.State.SENT:
            sent += 1
    return sent
