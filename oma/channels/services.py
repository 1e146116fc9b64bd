"""Channel writes: creating channels, receiving reported shipments, matching them, withdrawing voided ones, polling.

Every record a platform reports is stored first (`ExternalShipment`), then matched (matching.py) and handed to the
tracking engine (`tracking.services.shipment_add`). Receiving is idempotent: the same report from the same
channel is stored once (its dedupe key), and a record repeating what a shipment already holds adds nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from celery import current_app
from django.db import IntegrityError, transaction
from django.db.models import Exists, Func, OuterRef, Q, Value
from django.db.models.functions import Concat, Trim
from django.utils import timezone
from django.utils.text import slugify

from oma.channels.connectors import connector_for
from oma.channels.connectors.base import (
    ConnectorAuthError,
    ConnectorError,
    ExternalShipmentRecord,
    LineRef,
    PollStats,
    RateLimitedError,
)
from oma.channels.connectors.webhook import generate_secret
from oma.channels.matching import (
    CANCELLED,
    ORDER_KEY_FIELDS,
    MatchProblem,
    OrderLedger,
    OrderLookup,
    allotted_json,
    orders_for_external_ids,
    waiting_keys_for,
)
from oma.channels.models import Channel, CsvImport, ExternalShipment, OrderPoll
from oma.channels.selectors import orders_to_poll
from oma.orders.models import Order
from oma.stores.models import Store
from tracking.models import Shipment
from tracking.numbers import canonical
from tracking.services import ShipmentConflict, shipment_add
from tracking.signals import shipments_changed_notify

logger = logging.getLogger(__name__)

State = ExternalShipment.State


class ChannelInvalid(ValueError):
    """Channel settings that cannot work; the message says what to change."""


# --- channels ----------------------------------------------------------------------------------------------


def _unique_slug(store: Store, name: str) -> str:
    base = slugify(f"{store.handle}-{name}")[:100] or "channel"
    slug, counter = base, 2
    while Channel.objects.filter(slug=slug).exists():
        slug, counter = f"{base}-{counter}", counter + 1
    return slug


def _clean_source_names(source_names: Sequence[str]) -> list[str]:
    """Stripped, without blanks or repeats, in the merchant's order: the first one is the sourceName the channel's
    external orders are created under in Genstore (order_intake.channel_source_name)."""
    return list(dict.fromkeys(name.strip() for name in source_names if name and name.strip()))


def channel_create(
    *,
    store: Store,
    kind: str,
    name: str,
    source_names: Sequence[str] = (),
    base_url: str = "",
    api_key: str = "",
    api_secret: str = "",
) -> Channel:
    """A new channel; one that receives webhooks gets its Standard Webhooks signing secret (`whsec_...`)."""
    connector = connector_for(kind)  # ValueError for an unknown kind
    name = name.strip()
    if not name:
        raise ChannelInvalid("a channel needs a name")
    if Channel.objects.filter(store=store, name=name).exists():
        raise ChannelInvalid(f"store {store.domain} already has a channel named {name!r}")
    if base_url:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ChannelInvalid(f"base URL must be an http(s) URL (got {base_url!r})")
    if (api_key or api_secret) and not connector.needs_api_credentials:
        raise ChannelInvalid(f"a {connector.label} channel takes no API key or secret")
    channel = Channel(
        store=store,
        name=name,
        kind=kind,
        source_names=_clean_source_names(source_names),
        base_url=base_url.rstrip("/"),
        api_key=api_key,
        api_secret=api_secret,
        signing_secret=generate_secret() if connector.accepts_webhooks else "",
    )
    problems = connector.check_settings(channel)
    if problems:
        raise ChannelInvalid("; ".join(problems))
    for _ in range(3):
        channel.slug = _unique_slug(store, name)
        try:
            with transaction.atomic():
                channel.save()
            break
        except IntegrityError:  # another channel took the slug between our check and our insert
            channel.pk = None
            continue
    else:
        raise ChannelInvalid("could not find a free slug for the channel; try another name")
    logger.info("channel created: %s (%s) for %s", channel.slug, kind, store.domain)
    return channel


def channel_rotate_signing_secret(*, channel: Channel, keep_previous_for: timedelta = timedelta(hours=24)) -> str:
    """A new signing secret; the old one keeps working for `keep_previous_for` while the platform switches over."""
    if not connector_for(channel.kind).accepts_webhooks:
        raise ChannelInvalid(f"channel {channel.slug} does not receive webhooks")
    channel.previous_signing_secret = channel.signing_secret
    channel.previous_signing_secret_expires_at = timezone.now() + keep_previous_for
    channel.signing_secret = generate_secret()
    channel.save(
        update_fields=["signing_secret", "previous_signing_secret", "previous_signing_secret_expires_at", "updated_at"]
    )
    return channel.signing_secret


def csv_channel_for(*, store: Store, name: str | None) -> Channel:
    """The CSV channel to import into: the one named, else the store's default "CSV import" channel (created)."""
    if name:
        channel = Channel.objects.filter(store=store, name=name).first()
        if channel is None:
            channel = Channel.objects.filter(store=store, slug=name).first()
        if channel is None:
            raise ChannelInvalid(
                f"store {store.domain} has no channel named {name!r} "
                f"(create it with: channel add --store {store.domain} --kind csv --name {name!r})"
            )
        return channel
    channel = Channel.objects.filter(store=store, kind="csv").order_by("pk").first()
    return channel or channel_create(store=store, kind="csv", name="CSV import")


def channel_touch(channel: Channel, *, now: datetime) -> None:
    Channel.objects.filter(pk=channel.pk).update(last_activity_at=now)
    channel.last_activity_at = now


# --- receiving and matching --------------------------------------------------------------------------------


def dedupe_key(record: ExternalShipmentRecord) -> str:
    """Same report -> same key. A platform shipment id identifies itself (an update of it is the same record)."""
    material: list[object]
    if record.external_id:
        material = ["id", record.external_id]
    else:
        material = [
            "content",
            record.external_order_id,
            record.tracking_number,
            sorted(json.dumps(line.as_json(), sort_keys=True) for line in record.lines),
            record.voided,
        ]
    return hashlib.sha256(json.dumps(material, separators=(",", ":")).encode()).hexdigest()


def refs_of(row: ExternalShipment) -> tuple[LineRef, ...]:
    return tuple(LineRef.from_json(line) for line in row.lines or ())


def shipment_source_for(channel: Channel) -> str:
    return {"csv": Shipment.Source.CSV, "webhook": Shipment.Source.WEBHOOK}.get(channel.kind, Shipment.Source.CONNECTOR)


@dataclass(frozen=True, slots=True)
class MatchOutcome:
    """What matching did with one record. outcome: created, added, already, waiting, rejected, withdrawn."""

    outcome: str
    problem: str = ""
    shipment_id: int | None = None
    tracking_number: str = ""  # the number as the tracking engine holds it


def external_shipment_row(
    *,
    channel: Channel,
    record: ExternalShipmentRecord,
    key: str,
    csv_import: CsvImport | None = None,
    delivery_id: int | None = None,
) -> ExternalShipment:
    return ExternalShipment(
        store_id=channel.store_id,
        channel=channel,
        external_order_id=record.external_order_id[:128],
        external_id=record.external_id[:128],
        tracking_number=record.tracking_number[:64],
        carrier=record.carrier[:32],
        lines=[line.as_json() for line in record.lines],
        shipped_at=record.shipped_at,
        reported_status=record.status[:64],
        voided=record.voided,
        dedupe_key=key,
        source_ref=record.source_ref[:255],
        csv_import=csv_import,
        delivery_id=delivery_id,
        raw=dict(record.raw),
    )


def existing_shipments(*, store: Store, numbers: Sequence[str]) -> dict[str, object]:
    """The store's shipments for these (canonical) numbers, by number: one query for a whole import."""
    found: dict[str, object] = dict.fromkeys(numbers)
    for shipment in (
        Shipment.objects.filter(store=store, tracking_number__in=list(numbers))
        .select_related("order")
        .only("pk", "order_id", "status", "tracking_number", "order__order_id")
    ):
        found[shipment.tracking_number] = shipment
    return found


def match_row(
    *,
    row: ExternalShipment,
    order: Order,
    ledger: OrderLedger,
    now: datetime,
    known_shipments: dict[str, object] | None = None,
) -> MatchOutcome:
    """Match `row` to `order` (its row locked by the caller) and add or complete its shipment. Sets the row's
    fields; the caller saves it. Never raises for a bad record: the row is marked rejected with the reason.

    `known_shipments` (canonical number -> Shipment or None), when given, saves the lookup of each number; the
    shipments written here are added to it."""
    store = order.store
    row.order = order
    number = row.tracking_number
    try:
        if order.is_cancelled:
            raise MatchProblem(f"order {order.order_id} is cancelled")
        number = canonical(row.tracking_number, carrier=row.carrier, priority=store.carrier_priority or ())
        if known_shipments is not None and number in known_shipments:
            existing = known_shipments[number]
        else:
            existing = existing_shipments(store=store, numbers=[number])[number]
        assert existing is None or isinstance(existing, Shipment)
        if existing is not None:
            if existing.order_id not in (None, order.pk):
                other = existing.order.order_id if existing.order else existing.order_id
                raise MatchProblem(f"tracking number {number} is already on order {other}")
            if existing.status == CANCELLED:
                raise MatchProblem(f"tracking number {number} was voided; a voided label is not used again")
        allocation = ledger.allocate(tracking_number=number, refs=refs_of(row))
        if existing is not None and not allocation.adds_anything:
            outcome, shipment_id = "already", existing.pk
        else:
            shipment = shipment_add(
                store=store,
                tracking_number=row.tracking_number,
                carrier=row.carrier or None,
                order=order,
                lines=[(ledger.line(pk), quantity) for pk, quantity in allocation.totals.items()],
                source=shipment_source_for(row.channel),
                now=now,
            )
            ledger.commit(shipment.tracking_number, allocation)
            if known_shipments is not None:
                known_shipments[number] = known_shipments[shipment.tracking_number] = shipment
            outcome, shipment_id = ("added" if existing is not None else "created"), shipment.pk
    except (MatchProblem, ShipmentConflict) as exc:
        row.state = State.REJECTED
        row.problem = str(exc)
        row.shipment_id = None
        return MatchOutcome(outcome="rejected", problem=str(exc), tracking_number=number)
    row.state = State.MATCHED
    row.problem = ""
    row.shipment_id = shipment_id
    row.allotted_lines = allotted_json(ledger, allocation)
    row.matched_at = now
    return MatchOutcome(outcome=outcome, shipment_id=shipment_id, tracking_number=number)


def _shipment_cancel_voided(*, shipment: object, channel: Channel, now: datetime) -> None:
    """Stop tracking a voided label: status cancelled, no more polls; its items are free for another parcel."""
    assert isinstance(shipment, Shipment)
    shipment.status = CANCELLED
    shipment.substatus = ""
    shipment.raw_text = f"label voided (reported by channel {channel.name})"[:512]
    shipment.status_changed_at = now
    shipment.next_poll_at = None
    shipment.save(update_fields=["status", "substatus", "raw_text", "status_changed_at", "next_poll_at", "updated_at"])
    shipments_changed_notify([shipment.pk])  # pushes and the unified status follow, after commit


def withdraw_row(*, row: ExternalShipment, now: datetime) -> MatchOutcome:
    """A voided label: withdraw every live record of this channel for the number, and the shipment if this channel
    reported it. The caller saves `row`. A void for a number never reported live is kept, with nothing to undo."""
    channel = row.channel
    siblings = ExternalShipment.objects.filter(
        channel=channel, tracking_number=row.tracking_number, state__in=[State.MATCHED, State.UNMATCHED]
    ).exclude(pk=row.pk)
    was_live = row.state == State.MATCHED or siblings.filter(state=State.MATCHED).exists()
    siblings.update(state=State.WITHDRAWN, updated_at=now)
    number = canonical(row.tracking_number, carrier=row.carrier, priority=channel.store.carrier_priority or ())
    shipment = Shipment.objects.select_for_update().filter(store_id=channel.store_id, tracking_number=number).first()
    row.state = State.WITHDRAWN
    row.matched_at = row.matched_at or now
    if shipment is None or not was_live:
        row.problem = "" if shipment is None else "voided; the shipment came from elsewhere and was left as it is"
        return MatchOutcome(outcome="withdrawn")
    row.shipment = shipment
    row.order_id = row.order_id or shipment.order_id
    if shipment.status != CANCELLED:
        _shipment_cancel_voided(shipment=shipment, channel=channel, now=now)
    return MatchOutcome(outcome="withdrawn", shipment_id=shipment.pk)


def _lock_and_match(*, row: ExternalShipment, lookup: OrderLookup | None, now: datetime) -> MatchOutcome:
    if lookup is None:
        row.state = State.UNMATCHED
        return MatchOutcome(outcome="waiting")
    if lookup.problem:
        row.state = State.REJECTED
        row.problem = lookup.problem
        return MatchOutcome(outcome="rejected", problem=lookup.problem)
    assert lookup.order is not None
    order = lock_order(lookup.order.pk)
    ledger = OrderLedger.load([order])[order.pk]
    return match_row(row=row, order=order, ledger=ledger, now=now)


def lock_order(order_pk: int) -> Order:
    # of=("self",): lock the order row only, not its store (matching for other orders of the store goes on).
    return Order.objects.select_for_update(of=("self",)).select_related("store").get(pk=order_pk)


@dataclass
class ReceiveSummary:
    outcomes: list[MatchOutcome] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(1 for item in self.outcomes if item.outcome == outcome)

    def describe(self) -> str:
        counts: dict[str, int] = {}
        for item in self.outcomes:
            counts[item.outcome] = counts.get(item.outcome, 0) + 1
        return ", ".join(f"{count} {outcome}" for outcome, count in sorted(counts.items())) or "nothing"


def external_shipments_receive(
    *,
    channel: Channel,
    records: Sequence[ExternalShipmentRecord],
    delivery_id: int | None = None,
    order: Order | None = None,
    now: datetime | None = None,
    touch_channel: bool = True,
) -> ReceiveSummary:
    """Store and match the records one platform reported (a webhook delivery, a poll answer).

    `order`: the order the records are known to be about (a poll asked for it); otherwise each record's external
    order id is looked up. Records about one order are handled in one transaction holding that order's lock;
    voided ones go first, so that a reissued label can take the items a void freed. Outcomes per record:
    created/added (a shipment was written), already, waiting (order not mirrored yet: kept and matched when it
    arrives), rejected (with the reason), withdrawn, duplicate (this report was stored before).
    """
    now = now or timezone.now()
    summary = ReceiveSummary()
    if not records:
        return summary
    keyed = sorted(((dedupe_key(r), r) for r in records), key=lambda item: not item[1].voided)
    known = dict(
        ExternalShipment.objects.filter(channel=channel, dedupe_key__in=[key for key, _ in keyed]).values_list(
            "dedupe_key", "voided"
        )
    )
    lookups: dict[str, OrderLookup] = {}
    if order is None:
        lookups = orders_for_external_ids(
            store=channel.store,
            external_ids=[r.external_order_id for key, r in keyed if not r.voided and key not in known],
            source_names=channel.source_names,
        )
    groups: dict[int | None, list[tuple[str, ExternalShipmentRecord]]] = {}
    for key, record in keyed:
        if key in known and not (record.voided and not known[key]):
            summary.outcomes.append(MatchOutcome(outcome="duplicate"))  # stored before, nothing new in it
            continue
        lookup = OrderLookup(order=order) if order is not None else lookups.get(record.external_order_id)
        target = lookup.order.pk if lookup is not None and lookup.order is not None and not record.voided else None
        groups.setdefault(target, []).append((key, record))
    for order_pk, items in groups.items():
        summary.outcomes.extend(
            _receive_group(channel=channel, order_pk=order_pk, items=items, lookups=lookups, delivery_id=delivery_id,
                           now=now)
        )
    if touch_channel:
        channel_touch(channel, now=now)
    return summary


def _receive_group(
    *,
    channel: Channel,
    order_pk: int | None,
    items: Sequence[tuple[str, ExternalShipmentRecord]],
    lookups: dict[str, OrderLookup],
    delivery_id: int | None,
    now: datetime,
) -> list[MatchOutcome]:
    """One transaction for the records of one order (or of no known order). A racing copy of the same report
    makes the insert fail: the group is rolled back and done again, when the copy's rows are there to see."""
    for attempt in range(2):
        try:
            with transaction.atomic():
                return _receive_group_once(channel=channel, order_pk=order_pk, items=items, lookups=lookups,
                                           delivery_id=delivery_id, now=now)
        except IntegrityError:
            if attempt == 1:
                raise
            logger.info("channel %s: the same records arrived twice at once; handling them again", channel.slug)
    raise AssertionError("unreachable")


def _receive_group_once(
    *,
    channel: Channel,
    order_pk: int | None,
    items: Sequence[tuple[str, ExternalShipmentRecord]],
    lookups: dict[str, OrderLookup],
    delivery_id: int | None,
    now: datetime,
) -> list[MatchOutcome]:
    ledger = None
    known_shipments: dict[str, object] | None = None
    if order_pk is not None:
        order = lock_order(order_pk)
        ledger = OrderLedger.load([order])[order.pk]
        known_shipments = existing_shipments(
            store=order.store,
            numbers=[
                canonical(r.tracking_number, carrier=r.carrier, priority=order.store.carrier_priority or ())
                for _, r in items
            ],
        )
    existing = {
        row.dedupe_key: row
        for row in ExternalShipment.objects.select_for_update().filter(
            channel=channel, dedupe_key__in=[key for key, _ in items]
        )
    }
    outcomes = []
    for key, record in items:
        row = existing.get(key)
        if row is not None:
            if record.voided and not row.voided:  # the platform voided a shipment it reported before
                row.voided = True
                row.reported_status = record.status[:64]
                outcomes.append(withdraw_row(row=row, now=now))
                row.save()
            else:
                outcomes.append(MatchOutcome(outcome="duplicate", shipment_id=row.shipment_id))
            continue
        row = external_shipment_row(channel=channel, record=record, key=key, delivery_id=delivery_id)
        if record.voided:
            row.save(force_insert=True)  # withdraw_row looks for this channel's other records of the number
            outcome = withdraw_row(row=row, now=now)
        elif ledger is not None:
            outcome = match_row(row=row, order=ledger.order, ledger=ledger, now=now, known_shipments=known_shipments)
        else:
            outcome = _lock_and_match(row=row, lookup=lookups.get(record.external_order_id), now=now)
        row.save()
        existing[key] = row
        outcomes.append(outcome)
    return outcomes


def external_shipment_rematch(*, record_id: int, include_rejected: bool = False) -> MatchOutcome:
    """Try to match one waiting record again (its order may have arrived); rejected ones too when asked."""
    states = [State.UNMATCHED, State.REJECTED] if include_rejected else [State.UNMATCHED]
    now = timezone.now()
    with transaction.atomic():
        row = (
            ExternalShipment.objects.select_for_update(of=("self",))
            .select_related("channel", "channel__store")
            .filter(pk=record_id, state__in=states)
            .first()
        )
        if row is None:
            return MatchOutcome(outcome="skipped")
        lookup = orders_for_external_ids(
            store=row.channel.store, external_ids=[row.external_order_id], source_names=row.channel.source_names
        ).get(row.external_order_id)
        row.problem = ""
        outcome = _lock_and_match(row=row, lookup=lookup, now=now)
        row.save()
    return outcome


def external_shipments_match_waiting(*, store: Store, order_ids: Sequence[int]) -> ReceiveSummary:
    """Orders arrived or changed: match the records that were waiting for them, oldest first."""
    summary = ReceiveSummary()
    orders = Order.objects.filter(store=store, pk__in=list(order_ids)).only(*ORDER_KEY_FIELDS)
    keys = waiting_keys_for(orders)
    if not keys:
        return summary
    waiting = list(
        ExternalShipment.objects.filter(store=store, state=State.UNMATCHED, external_order_id__in=keys)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for record_id in waiting:
        summary.outcomes.append(external_shipment_rematch(record_id=record_id))
    if waiting:
        logger.info("channels: %d waiting record(s) of %s re-matched: %s", len(waiting), store.domain,
                    summary.describe())
    return summary


def external_shipments_match_all_waiting(*, store: Store | None = None, limit: int = 5000) -> ReceiveSummary:
    """Safety net behind the order hook: match waiting records whose order exists by now (a missed hook), found
    the ways matching finds it: sourceIdentifier, orderId, or the order's name with or without '#'."""
    summary = ReceiveSummary()
    by_name = Q(name=OuterRef("bare_order_name")) | Q(name=Concat(Value("#"), OuterRef("bare_order_name")))
    order_exists = Order.objects.filter(store_id=OuterRef("store_id")).filter(
        Q(source_identifier=OuterRef("external_order_id"))
        | Q(order_id=OuterRef("external_order_id"))
        | (by_name & ~Q(name=""))
    )
    waiting = (
        ExternalShipment.objects.filter(state=State.UNMATCHED)
        # matching.order_name_forms in SQL: '#1001' and '1001' both stand for the order named '#1001' (or '1001').
        .annotate(bare_order_name=Trim(Func(Trim("external_order_id"), Value("#"), function="LTRIM")))
        .filter(Exists(order_exists))
    )
    if store is not None:
        waiting = waiting.filter(store=store)
    for record_id in waiting.order_by("pk").values_list("pk", flat=True)[:limit]:
        summary.outcomes.append(external_shipment_rematch(record_id=record_id))
    return summary


def on_orders_changed(sender: object, *, store: Store, order_ids: list[int], **kwargs: object) -> None:
    """Receiver of oma.orders.signals.orders_changed: the order mirror committed new or changed orders.

    One indexed query when nothing waits (the usual case); matching runs right away otherwise. Never raises into
    the order mirror: a failure is logged and handed to a task (the beat safety net catches the rest).
    """
    try:
        keys = waiting_keys_for(Order.objects.filter(store=store, pk__in=order_ids).only(*ORDER_KEY_FIELDS))
        if not keys or not ExternalShipment.objects.filter(
            store=store, state=State.UNMATCHED, external_order_id__in=keys
        ).exists():
            return
        external_shipments_match_waiting(store=store, order_ids=order_ids)
    except Exception:
        logger.exception("channels: matching waiting records for %s failed; handing it to a task", store.domain)
        try:
            # By name: oma.channels.tasks imports this module.
            current_app.tasks["channels.match_waiting"].delay(store.pk, list(order_ids))
        except Exception:  # the broker is down too: the periodic safety net will match them
            logger.warning("channels: could not enqueue matching for %s; the periodic run will", store.domain)


# --- polling -----------------------------------------------------------------------------------------------


@dataclass
class PollResult:
    channel_id: int
    orders_asked: int = 0
    orders_due: int = 0
    summary: ReceiveSummary = field(default_factory=ReceiveSummary)
    stats: PollStats = field(default_factory=PollStats)
    stopped: str = ""  # why the poll ended before asking about every due order

    def describe(self) -> str:
        text = (
            f"{self.orders_asked}/{self.orders_due} orders asked in {self.stats.requests} requests; "
            f"records: {self.summary.describe()}"
        )
        return f"{text}; stopped: {self.stopped}" if self.stopped else text


def channel_poll(
    *,
    channel: Channel,
    max_orders: int | None = None,
    time_budget_seconds: float | None = None,
    now: datetime | None = None,
    client: object | None = None,
) -> PollResult:
    """Ask a polling channel's platform about its orders that still lack tracking, the longest-unasked first.

    Each order's answer is stored as it comes. A rate limit longer than the client may wait, or a platform
    failure, pauses the channel (`poll_paused_until`); the orders not reached are simply first next time.
    """
    connector = connector_for(channel.kind)
    if not connector.polls:
        raise ChannelInvalid(f"channel {channel.slug} ({channel.kind}) is not polled")
    now = now or timezone.now()
    result = PollResult(channel_id=channel.pk)
    due = orders_to_poll(channel=channel, now=now, limit=max_orders)
    result.orders_due = len(due)
    if not due:
        Channel.objects.filter(pk=channel.pk).update(last_polled_at=now)
        return result
    orders = {order.pk: order for order in Order.objects.filter(pk__in=[item.order_pk for item in due])}
    deadline = time.monotonic() + time_budget_seconds if time_budget_seconds else None
    options: dict[str, object] = {}
    if client is not None:
        options["client"] = client
        result.stats = getattr(client, "stats", result.stats)
    error = ""
    pause_for: float | None = None
    asked: list[OrderPoll] = []

    def remember_asked() -> None:
        # When each order was last asked, written in batches (one upsert each).
        if asked:
            OrderPoll.objects.bulk_create(
                asked, update_conflicts=True, unique_fields=["channel", "order"],
                update_fields=["last_polled_at", "shipments_seen"],
            )
            asked.clear()

    try:
        for polled, records in connector.fetch_shipments(
            channel, due, stats=result.stats, deadline=deadline, **options
        ):
            order = orders[polled.order_pk]
            summary = external_shipments_receive(
                channel=channel, records=records, order=order, now=timezone.now(), touch_channel=False
            )
            result.summary.outcomes.extend(summary.outcomes)
            asked.append(OrderPoll(channel=channel, order=order, last_polled_at=timezone.now(),
                                   shipments_seen=len(records)))
            if len(asked) >= 50:
                remember_asked()
            result.orders_asked += 1
        if result.orders_asked < len(due):
            result.stopped = "time budget used up"
    except RateLimitedError as exc:
        result.stopped = str(exc)
        pause_for = exc.retry_after
    except ConnectorAuthError as exc:
        result.stopped = error = str(exc)
        pause_for = 3600.0  # until someone fixes the credentials; an hourly retry notices when they do
    except ConnectorError as exc:
        result.stopped = error = str(exc)
        pause_for = 300.0 if exc.transient else 3600.0
    finally:
        remember_asked()
    Channel.objects.filter(pk=channel.pk).update(
        last_polled_at=now,
        last_activity_at=now,
        last_error=error[:2000],
        poll_paused_until=now + timedelta(seconds=pause_for) if pause_for else None,
    )
    log = logger.warning if result.stopped and error else logger.info
    log("channel %s polled: %s", channel.slug, result.describe())
    return result
