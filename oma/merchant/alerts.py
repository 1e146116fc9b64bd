"""The alert digest: one email a day per store, with the thresholds the merchant set (AlertPolicy), listing new
delivery exceptions, parcels the carrier never picked up, parcels stuck without a scan, and parcels predicted
late; for a store that brings external orders, also those Genstore refused to create (failed) and those only the
merchant can settle (needs attention). Nothing to report, nothing sent. Email goes through Django's EMAIL_BACKEND
(the console by default).

The day's AlertDigest row is written before sending (unique per store and day): a second run the same day, or
two beat processes at once, send nothing more; a failed send is retried by later runs, up to MAX_ATTEMPTS.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from oma.channels.models import ExternalOrder
from oma.merchant.models import AlertDigest, AlertPolicy
from oma.merchant.selectors import (
    Thresholds,
    exception_shipments,
    late_shipments,
    not_picked_up_shipments,
    stuck_shipments,
)
from oma.stores.models import Store
from tracking.models import Shipment

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
ROWS_PER_SECTION = 25


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


def _external_order_sections(store: Store) -> list[tuple[str, str, int, list[str]]]:
    """Failed creates and rows that need the merchant, for a store that brings external orders at all."""
    rows = ExternalOrder.objects.filter(store=store).select_related("channel").order_by("received_at", "pk")
    if not rows.exists():
        return []
    failed = rows.filter(state=ExternalOrder.State.FAILED)
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
