"""Channel writes: creating channels, receiving reported shipments, matching them, withdrawing voided ones, polling.

Every record a platform reports is stored (`ExternalShipment`), matched (matching.py) and handed to the tracking
engine (`tracking.services.shipment_add`, or `shipments_add_many` for a batch). Receiving is idempotent: the same
report from the same channel is stored once (its dedupe key), and a record repeating what a shipment already holds
adds nothing. Many records at once (an import batch, a delivery's shipments) go through a `MatchBatch`: a constant
number of queries however many records.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple
from urllib.parse import urlsplit

from celery import current_app
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, Func, OuterRef, Q, Value
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
    Allocation,
    LockedOrder,
    MatchProblem,
    OrderLedger,
    OrderLookup,
    allotted_json,
    lock_orders,
    orders_for_external_ids,
    waiting_keys_for,
)
from oma.channels.models import Channel, CsvImport, ExternalShipment, OrderPoll
from oma.channels.selectors import orders_to_poll
from oma.core.bulk import AnyOf, rows_insert
from oma.orders.models import Order
from oma.stores.models import Store
from tracking.models import Shipment
from tracking.numbers import canonical, normalize
from tracking.services import (
    ShipmentAdd,
    ShipmentAdded,
    ShipmentConflict,
    detection_fields,
    shipment_add,
    shipments_add_many,
)
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


def external_shipment_values(
    *,
    channel: Channel,
    record: ExternalShipmentRecord,
    key: str,
    csv_import_id: int | None = None,
    delivery_id: int | None = None,
) -> dict[str, object]:
    """A new record's columns (oma.core.bulk's row form), waiting for its order until matching says otherwise."""
    return {
        "store_id": channel.store_id,
        "channel_id": channel.pk,
        "external_order_id": record.external_order_id[:128],
        "external_id": record.external_id[:128],
        "tracking_number": record.tracking_number[:64],
        "carrier": record.carrier[:32],
        "lines": [line.as_json() for line in record.lines],
        "shipped_at": record.shipped_at,
        "reported_status": record.status[:64],
        "voided": record.voided,
        "state": State.UNMATCHED,
        "problem": "",
        "order_id": None,
        "shipment_id": None,
        "allotted_lines": [],
        "dedupe_key": key,
        "source_ref": record.source_ref[:255],
        "csv_import_id": csv_import_id,
        "delivery_id": delivery_id,
        "raw": dict(record.raw),
        "matched_at": None,
    }


def external_shipment_row(
    *,
    channel: Channel,
    record: ExternalShipmentRecord,
    key: str,
    csv_import: CsvImport | None = None,
    delivery_id: int | None = None,
) -> ExternalShipment:
    row = ExternalShipment(**external_shipment_values(
        channel=channel, record=record, key=key, csv_import_id=csv_import.pk if csv_import else None,
        delivery_id=delivery_id,
    ))
    row.channel = channel
    if csv_import is not None:
        row.csv_import = csv_import
    return row


class KnownShipment(NamedTuple):
    """What matching reads of the shipment that holds a number: one already stored, or (pk None) one a batch is
    about to write."""

    pk: int | None
    order_id: int | None
    order_code: str  # the order's orderId, for people
    status: str


def existing_shipments(*, store: Store, numbers: Iterable[str]) -> dict[str, KnownShipment | None]:
    """The store's shipments for these (canonical) numbers, by number (None: no shipment): one query for a batch."""
    found: dict[str, KnownShipment | None] = dict.fromkeys(numbers)
    for pk, number, order_pk, status, order_code in Shipment.objects.filter(
        AnyOf(F("tracking_number"), sorted(found)), store=store
    ).order_by().values_list("pk", "tracking_number", "order_id", "status", "order__order_id"):
        found[number] = KnownShipment(pk=pk, order_id=order_pk, order_code=order_code or "", status=status)
    return found


def _match_plan(
    *, number: str, refs: Sequence[LineRef], order: Order | LockedOrder, ledger: OrderLedger,
    existing: KnownShipment | None,
) -> Allocation:
    """What a record for `order` puts in the parcel `number` (canonical) that `existing` holds (None: no shipment
    yet); MatchProblem when it cannot be matched."""
    if existing is not None:
        if existing.order_id not in (None, order.pk):
            other = existing.order_code or existing.order_id
            raise MatchProblem(f"tracking number {number} is already on order {other}")
        if existing.status == CANCELLED:
            raise MatchProblem(f"tracking number {number} was voided; a voided label is not used again")
    return ledger.allocate(tracking_number=number, refs=refs)


def match_row(
    *,
    row: ExternalShipment,
    order: Order,
    ledger: OrderLedger,
    now: datetime,
    known_shipments: dict[str, KnownShipment | None] | None = None,
) -> MatchOutcome:
    """Match `row` to `order` (its row locked by the caller) and add or complete its shipment. Sets the row's
    fields; the caller saves it. Never raises for a bad record: the row is marked rejected with the reason.

    `known_shipments` (canonical number -> KnownShipment or None), when given, saves the lookup of each number; the
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
        allocation = _match_plan(number=number, refs=refs_of(row), order=order, ledger=ledger, existing=existing)
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
                known_shipments[number] = known_shipments[shipment.tracking_number] = KnownShipment(
                    pk=shipment.pk, order_id=order.pk, order_code=order.order_id, status=shipment.status
                )
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


@dataclass(slots=True)
class _Decision:
    """One record of a MatchBatch between deciding (in memory) and writing."""

    values: dict[str, object]  # the record's columns
    outcome: str
    number: str = ""  # canonical
    problem: str = ""
    add: int | None = None  # its ShipmentAdd's index: a shipment is written for it
    shipment_id: int | None = None


class MatchBatch:
    """Matching many records of one channel at once (an import batch, a delivery's shipments), inside the caller's
    transaction, in a constant number of queries: the orders are locked (in pk order) and their ledgers read when
    the batch is made, before the caller reads which records it has already (under the locks); `match` then decides
    every record in memory, in order, as match_row would one by one, and writes the shipments, their lines and the
    records in bulk. `shipments_changed` follows once (after the commit, or with the caller's
    shipments_changed_batch)."""

    def __init__(self, *, store: Store, channel: Channel, order_pks: Iterable[int]) -> None:
        self.store = store
        self.channel = channel
        self.orders = {order.pk: order for order in lock_orders(order_pks)}
        self.ledgers = OrderLedger.load(list(self.orders.values()))

    def match(
        self,
        items: Sequence[tuple[str, ExternalShipmentRecord, int]],
        *,
        now: datetime,
        csv_import_id: int | None = None,
        delivery_id: int | None = None,
        keep_rejected: bool = True,
    ) -> list[MatchOutcome]:
        """Match (dedupe key, record, order pk) items, none of them stored before (the caller checked) nor voided.
        Rejected records are stored too unless `keep_rejected` is False (an import's report keeps those); a record
        whose order is gone (deleted since it was looked up) is stored waiting."""
        decisions, adds = self._decide(items, csv_import_id=csv_import_id, delivery_id=delivery_id)
        written = shipments_add_many(store=self.store, adds=adds, now=now)
        by_number = {result.tracking_number: result.shipment_id for result in written
                     if isinstance(result, ShipmentAdded)}
        outcomes: list[MatchOutcome] = []
        rows: list[dict[str, object]] = []
        for decision in decisions:
            if decision.add is not None:
                result = written[decision.add]
                if isinstance(result, ShipmentConflict):  # a shipment added meanwhile by someone not holding our locks
                    decision.outcome, decision.problem = "rejected", str(result)
                else:
                    decision.shipment_id = result.shipment_id
            elif decision.outcome == "already" and decision.shipment_id is None:  # a shipment of this batch
                decision.shipment_id = by_number.get(decision.number)
                if decision.shipment_id is None:  # whose write was refused
                    decision.outcome, decision.problem = "rejected", f"tracking number {decision.number} was refused"
            values = decision.values
            if decision.outcome == "rejected":
                values.update(state=State.REJECTED, problem=decision.problem, allotted_lines=[])
            elif decision.outcome != "waiting":
                values.update(state=State.MATCHED, shipment_id=decision.shipment_id, matched_at=now)
            outcomes.append(MatchOutcome(outcome=decision.outcome, problem=decision.problem,
                                         shipment_id=decision.shipment_id, tracking_number=decision.number))
            if keep_rejected or decision.outcome != "rejected":
                rows.append(values)
        rows_insert(ExternalShipment, rows)
        return outcomes

    def _decide(
        self, items: Sequence[tuple[str, ExternalShipmentRecord, int]], *, csv_import_id: int | None,
        delivery_id: int | None,
    ) -> tuple[list[_Decision], list[ShipmentAdd]]:
        """Every record matched in memory, in order, each seeing what the ones before it took: its decision, and the
        shipment writes owed."""
        priority = tuple(self.store.carrier_priority or ())
        # One detection per number, for matching (its canonical form) and for writing the shipment.
        detected: dict[tuple[str, str], dict[str, object]] = {}
        fields_of = []
        for _, record, _ in items:
            spelled = (normalize(record.tracking_number), record.carrier.strip().lower())
            fields = detected.get(spelled)
            if fields is None:
                fields = detected[spelled] = detection_fields(spelled[0], carrier=spelled[1], priority=priority)
            fields_of.append(fields)
        known = existing_shipments(store=self.store, numbers={str(f["tracking_number"]) for f in detected.values()})
        source = shipment_source_for(self.channel)
        adds: list[ShipmentAdd] = []
        decisions: list[_Decision] = []
        for (key, record, order_pk), fields in zip(items, fields_of, strict=True):
            values = external_shipment_values(channel=self.channel, record=record, key=key,
                                              csv_import_id=csv_import_id, delivery_id=delivery_id)
            order = self.orders.get(order_pk)
            if order is None:
                decisions.append(_Decision(values=values, outcome="waiting"))
                continue
            values["order_id"] = order.pk
            ledger = self.ledgers[order.pk]
            number = record.tracking_number
            try:
                if order.is_cancelled:
                    raise MatchProblem(f"order {order.order_id} is cancelled")
                number = str(fields["tracking_number"])
                existing = known.get(number)
                allocation = _match_plan(number=number, refs=record.lines, order=order, ledger=ledger,
                                         existing=existing)
            except MatchProblem as exc:
                decisions.append(_Decision(values=values, outcome="rejected", number=number, problem=str(exc)))
                continue
            values["allotted_lines"] = allotted_json(ledger, allocation)
            if existing is not None and not allocation.adds_anything:
                decisions.append(_Decision(values=values, outcome="already", number=number, shipment_id=existing.pk))
                continue
            decisions.append(_Decision(values=values, outcome="added" if existing is not None else "created",
                                       number=number, add=len(adds)))
            adds.append(ShipmentAdd(
                tracking_number=record.tracking_number, carrier=record.carrier, order=order,
                lines=[(ledger.line(pk), quantity) for pk, quantity in allocation.totals.items()], source=source,
                detected=fields,
            ))
            ledger.commit(number, allocation)  # at once: the batch's later records see what this one takes
            known[number] = KnownShipment(pk=existing.pk if existing else None, order_id=order.pk,
                                          order_code=order.order_id, status=existing.status if existing else "")
        return decisions, adds


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


def external_shipments_void(
    *,
    channel: Channel,
    items: Sequence[tuple[str, ExternalShipmentRecord]],
    now: datetime,
    csv_import_id: int | None = None,
) -> list[MatchOutcome]:
    """Voided labels a file reports (a tracking CSV's void rows), in the caller's transaction: each stored as a
    voided record and withdrawn through withdraw_row, as a platform's void is, so a pushed fulfillment is cancelled
    once by the push that follows. Outcomes: `withdrawn` (this channel's live records of the number withdrawn, and
    its shipment cancelled when they made it: shipment_id), `already` (withdrawn before), `unknown` (the channel
    never reported the number: the void is kept, with nothing to undo; `problem` says so), `duplicate` (the same
    record stored before)."""
    numbers = sorted({record.tracking_number[:64] for _, record in items})
    states: dict[str, set[str]] = {}
    for number, state in ExternalShipment.objects.filter(
        AnyOf(F("tracking_number"), numbers), channel=channel, voided=False
    ).order_by().values_list("tracking_number", "state"):
        states.setdefault(number, set()).add(state)
    outcomes = []
    for key, record in items:
        row = ExternalShipment(**external_shipment_values(channel=channel, record=record, key=key,
                                                          csv_import_id=csv_import_id))
        row.channel = channel
        try:
            with transaction.atomic():  # withdraw_row looks for this channel's other records of the number
                row.save(force_insert=True)
        except IntegrityError:  # stored meanwhile by a concurrent import of the same row
            outcomes.append(MatchOutcome(outcome="duplicate"))
            continue
        outcome = withdraw_row(row=row, now=now)
        known = states.get(row.tracking_number, set())
        if known & {State.MATCHED, State.UNMATCHED}:
            states[row.tracking_number] = {State.WITHDRAWN}
        elif State.WITHDRAWN in known:
            row.problem = ""  # not "from elsewhere": this channel's own label, voided before
            outcome = MatchOutcome(outcome="already", shipment_id=outcome.shipment_id)
        else:
            elsewhere = "; its shipment came from elsewhere and was left as it is" if row.problem else ""
            row.problem = (f"tracking number {row.tracking_number} was never reported by channel {channel.name}: "
                           f"nothing to void{elsewhere}")
            outcome = MatchOutcome(outcome="unknown", problem=row.problem)
        row.save()
        outcomes.append(MatchOutcome(outcome=outcome.outcome, problem=outcome.problem,
                                     shipment_id=outcome.shipment_id, tracking_number=row.tracking_number))
    return outcomes


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
    order id is looked up. Voided records go first, each in its own transaction, so that a reissued label can take
    the items a void freed; then those whose order is not mirrored (kept, waiting); then those of known orders, all
    in one transaction holding their orders' locks (a MatchBatch: a constant number of queries however many).
    Outcomes per record: created/added (a shipment was written), already, waiting (order not mirrored yet: kept and
    matched when it arrives), rejected (with the reason), withdrawn, duplicate (this report was stored before).
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
    unmatched: list[tuple[str, ExternalShipmentRecord]] = []  # voided, or no order to match
    matched: list[tuple[str, ExternalShipmentRecord, int]] = []
    for key, record in keyed:
        if key in known and not (record.voided and not known[key]):
            summary.outcomes.append(MatchOutcome(outcome="duplicate"))  # stored before, nothing new in it
            continue
        lookup = OrderLookup(order=order) if order is not None else lookups.get(record.external_order_id)
        if lookup is not None and lookup.order is not None and not record.voided:
            matched.append((key, record, lookup.order.pk))
        else:
            unmatched.append((key, record))
    if unmatched:
        summary.outcomes.extend(
            _retried_on_race(channel, lambda: _receive_unmatched(channel=channel, items=unmatched, lookups=lookups,
                                                                 delivery_id=delivery_id, now=now))
        )
    if matched:
        summary.outcomes.extend(
            _retried_on_race(channel, lambda: _receive_matched(channel=channel, items=matched,
                                                               delivery_id=delivery_id, now=now))
        )
    if touch_channel:
        channel_touch(channel, now=now)
    return summary


def _retried_on_race(channel: Channel, receive: Callable[[], list[MatchOutcome]]) -> list[MatchOutcome]:
    """One transaction; a racing copy of the same report makes its insert fail: rolled back and done again, when
    the copy's rows are there to see."""
    for attempt in range(2):
        try:
            with transaction.atomic():
                return receive()
        except IntegrityError:
            if attempt == 1:
                raise
            logger.info("channel %s: the same records arrived twice at once; handling them again", channel.slug)
    raise AssertionError("unreachable")


def _receive_matched(
    *, channel: Channel, items: list[tuple[str, ExternalShipmentRecord, int]], delivery_id: int | None,
    now: datetime,
) -> list[MatchOutcome]:
    """Records of known orders, not voided: one MatchBatch. A record stored meanwhile (a racing copy that held the
    orders' locks first) is a duplicate."""
    batch = MatchBatch(store=channel.store, channel=channel, order_pks=[order_pk for _, _, order_pk in items])
    stored = dict(
        ExternalShipment.objects.filter(AnyOf(F("dedupe_key"), [key for key, _, _ in items]), channel=channel)
        .order_by().values_list("dedupe_key", "shipment_id")
    )
    fresh = [item for item in items if item[0] not in stored]
    outcomes = iter(batch.match(fresh, now=now, delivery_id=delivery_id))
    return [
        MatchOutcome(outcome="duplicate", shipment_id=stored[key]) if key in stored else next(outcomes)
        for key, _, _ in items
    ]


def _receive_unmatched(
    *,
    channel: Channel,
    items: Sequence[tuple[str, ExternalShipmentRecord]],
    lookups: dict[str, OrderLookup],
    delivery_id: int | None,
    now: datetime,
) -> list[MatchOutcome]:
    """Voided records (a withdrawal each) and records whose order is not mirrored or is ambiguous, one by one."""
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
