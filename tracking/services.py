"""Tracking writes: adding shipments, applying carrier answers, scheduling the next poll, carrier accounts.

The carrier modules (tracking/carriers/) are pure; these services translate their `TrackingResult`s into rows.
Applying results works in bulk (constant queries per batch) because polling applies thousands at a time;
`shipment_apply_result` is the one-shipment form of the same code.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from oma.core.bulk import AnyOf, Row, objects_update, rows_insert
from oma.stores.models import Store
from tracking.carriers.base import TrackingEventRecord, TrackingResult
from tracking.carriers.registry import CARRIERS, UnknownCarrier, get_spec
from tracking.detection.detect import detect
from tracking.models import CarrierAccount, CarrierCode, Shipment, ShipmentLine, TrackingEvent
from tracking.numbers import choose_candidate, normalize
from tracking.signals import shipments_changed_notify
from tracking.vocabulary import FAILURE_SUBSTATUSES, Status, is_terminal, moves_forward

logger = logging.getLogger(__name__)


class OrderRef(Protocol):
    """An order of the mirror (oma.orders.models.Order) as tracking sees it: tracking does not import orders."""

    @property
    def pk(self) -> int: ...

    @property
    def store_id(self) -> int: ...


class LineItemRef(Protocol):
    """A line item of the mirror (oma.orders.models.LineItem) as tracking sees it."""

    @property
    def pk(self) -> int: ...

    @property
    def order_id(self) -> int: ...

# The carriers whose accounts hold OAuth client credentials (the others hold an API key).
OAUTH_CARRIERS: frozenset[str] = frozenset(
    code for code, spec in CARRIERS.items() if spec.auth == "oauth_client_credentials"
)


class ShipmentConflict(ValueError):
    """The tracking number is already on another order of the store."""


class CarrierAccountInvalid(ValueError):
    """Carrier account settings that cannot work (missing credentials, unknown carrier...)."""


# --- adding shipments ---------------------------------------------------------------------------------


def shipment_add(
    *,
    store: Store,
    tracking_number: str,
    carrier: str | None = None,
    order: OrderRef | None = None,
    lines: Iterable[tuple[LineItemRef, int]] = (),
    source: str = Shipment.Source.MANUAL,
    tracking_url: str = "",
    now: datetime | None = None,
) -> Shipment:
    """The store's shipment for `tracking_number`, created (due for a poll now) or completed. Idempotent.

    Without a carrier, detection picks the most likely one, using the store's carrier priority list when a
    number fits several; every candidate is kept on the shipment. The same number on another order of the store
    raises ShipmentConflict. `lines` are (line item, quantity) pairs of the order; repeating a call sets the same
    quantities again, so a redelivered webhook or a re-imported CSV changes nothing.
    """
    number = normalize(tracking_number)
    if not number:
        raise ValueError("tracking number is blank")
    if order is not None and order.store_id != store.pk:
        raise ValueError(f"order {order.pk} belongs to another store")
    lines = list(lines)
    for line_item, quantity in lines:
        if quantity < 1:
            raise ValueError(f"quantity must be at least 1 (line item {line_item.pk})")
        if order is not None and line_item.order_id != order.pk:
            raise ValueError(f"line item {line_item.pk} is not on order {order.pk}")
    now = now or timezone.now()
    carrier_code = (carrier or "").strip().lower()
    fields = detection_fields(number, carrier=carrier_code, priority=store.carrier_priority or ())
    # A barcode may carry routing data around the number the carrier tracks (USPS 420+ZIP): keep the latter.
    number = str(fields.pop("tracking_number"))

    with transaction.atomic():
        shipment = Shipment.objects.select_for_update().filter(store=store, tracking_number=number).first()
        created = False
        if shipment is None:
            shipment = Shipment(
                store=store,
                order_id=order.pk if order is not None else None,
                tracking_number=number,
                source=source,
                next_poll_at=now,
                **fields,
            )
            if tracking_url:
                shipment.tracking_url = tracking_url
            try:
                with transaction.atomic():
                    shipment.save(force_insert=True)
                created = True
            except IntegrityError:
                # Someone added the same number between our read and our insert: complete theirs.
                shipment = Shipment.objects.select_for_update().get(store=store, tracking_number=number)
        linked = False
        if not created:
            linked = _complete_existing(
                shipment, order=order, carrier=carrier_code, tracking_url=tracking_url, now=now
            )
        if lines:
            _set_lines(shipment, lines)
        if created or linked or lines:
            shipments_changed_notify([shipment.pk])
    return shipment


def _complete_existing(
    shipment: Shipment,
    *,
    order: OrderRef | None,
    carrier: str,
    tracking_url: str,
    now: datetime,
) -> bool:
    """Bring an existing shipment up to date with a repeated add; True when it was newly linked to an order."""
    if order is not None and shipment.order_id not in (None, order.pk):
        raise ShipmentConflict(
            f"tracking number {shipment.tracking_number} is already on order {shipment.order_id} of this store"
        )
    changed: list[str] = []
    if order is not None and shipment.order_id is None:
        shipment.order_id = order.pk
        changed.append("order")
    if carrier and carrier != shipment.carrier:
        # The caller knows the carrier better than our detection did: switch, and ask the right carrier now.
        fields = detection_fields(
            shipment.tracking_number, carrier=carrier, priority=shipment.store.carrier_priority or ()
        )
        fields.pop("tracking_number")
        for name, value in fields.items():
            setattr(shipment, name, value)
        shipment.registered_with = None
        changed += [*fields, "registered_with"]
        if not is_terminal(shipment.status, shipment.substatus):
            shipment.next_poll_at = now
            changed.append("next_poll_at")
    if tracking_url and tracking_url != shipment.tracking_url:
        shipment.tracking_url = tracking_url
        changed.append("tracking_url")
    if changed:
        shipment.save(update_fields=[*dict.fromkeys(changed), "updated_at"])
    return "order" in changed


def _set_lines(shipment: Shipment, lines: Sequence[tuple[LineItemRef, int]]) -> None:
    wanted = {line_item.pk: quantity for line_item, quantity in lines}
    existing = {line.line_item_id: line for line in ShipmentLine.objects.filter(shipment=shipment)}
    ShipmentLine.objects.bulk_create(
        [
            ShipmentLine(shipment=shipment, line_item_id=pk, quantity=quantity)
            for pk, quantity in wanted.items()
            if pk not in existing
        ],
        ignore_conflicts=True,
    )
    to_update = []
    for pk, quantity in wanted.items():
        line = existing.get(pk)
        if line is not None and line.quantity != quantity:
            line.quantity = quantity
            to_update.append(line)
    if to_update:
        ShipmentLine.objects.bulk_update(to_update, ["quantity"])


@dataclass(frozen=True, slots=True)
class ShipmentAdd:
    """The arguments of one `shipment_add` call, for `shipments_add_many`. `detected`: detection_fields(normalized
    number, carrier=..., priority=the store's) when the caller has them already (its `tracking_number` is the
    canonical number), so the number is not detected twice."""

    tracking_number: str
    carrier: str = ""
    order: OrderRef | None = None
    lines: Sequence[tuple[LineItemRef, int]] = ()
    source: str = Shipment.Source.MANUAL
    tracking_url: str = ""
    detected: dict[str, object] | None = None


@dataclass(frozen=True, slots=True)
class ShipmentAdded:
    shipment_id: int
    tracking_number: str  # as stored (canonical)
    created: bool


def shipments_add_many(
    *, store: Store, adds: Sequence[ShipmentAdd], now: datetime | None = None
) -> list[ShipmentAdded | ShipmentConflict]:
    """`shipment_add` for many numbers of one store in a constant number of queries (an import batch of a thousand
    rows: one locking read, one insert of the new shipments, one upsert of their lines), with the same outcome as
    calling it for each add in turn: several adds of one number make one shipment (the later ones complete it:
    order linked, carrier switched, their lines' quantities set). Per add: the shipment, or the ShipmentConflict
    (the number is on another order of the store) that shipment_add would have raised. ValueError, for nothing
    written, on what shipment_add refuses as a programming error (a blank number, a line of another order).
    `shipments_changed` is sent once for the shipments created, linked or given lines."""
    now = now or timezone.now()
    priority = tuple(store.carrier_priority or ())
    planned: list[tuple[ShipmentAdd, str, dict[str, object]]] = []  # (add, carrier code, detection fields)
    for add in adds:
        number = normalize(add.tracking_number)
        if not number:
            raise ValueError("tracking number is blank")
        if add.order is not None and add.order.store_id != store.pk:
            raise ValueError(f"order {add.order.pk} belongs to another store")
        for line_item, quantity in add.lines:
            if quantity < 1:
                raise ValueError(f"quantity must be at least 1 (line item {line_item.pk})")
            if add.order is not None and line_item.order_id != add.order.pk:
                raise ValueError(f"line item {line_item.pk} is not on order {add.order.pk}")
        carrier = (add.carrier or "").strip().lower()
        fields = add.detected if add.detected is not None else detection_fields(
            number, carrier=carrier, priority=priority
        )
        planned.append((add, carrier, fields))
    if not planned:
        return []
    results: dict[int, ShipmentAdded | ShipmentConflict] = {}
    with transaction.atomic():
        numbers = sorted({str(fields["tracking_number"]) for _, _, fields in planned})
        existing = {
            shipment.tracking_number: shipment
            for shipment in Shipment.objects.select_for_update()
            .filter(AnyOf(F("tracking_number"), numbers), store=store).order_by("pk")
        }
        # New numbers: one row each, built from the first add and completed by the later ones (in memory).
        rows: dict[str, dict[str, object]] = {}
        first_add: dict[str, int] = {}
        conflicts: dict[int, ShipmentConflict] = {}
        for index, (add, carrier, fields) in enumerate(planned):
            number = str(fields["tracking_number"])
            if number in existing:
                continue
            row = rows.get(number)
            if row is None:
                first_add[number] = index
                rows[number] = {
                    "store_id": store.pk, "order_id": add.order.pk if add.order is not None else None,
                    "tracking_number": number, "source": add.source, "next_poll_at": now,
                    **{name: value for name, value in fields.items() if name != "tracking_number"},
                }
                if add.tracking_url:
                    rows[number]["tracking_url"] = add.tracking_url
                continue
            if add.order is not None and row["order_id"] not in (None, add.order.pk):
                conflicts[index] = ShipmentConflict(
                    f"tracking number {number} is already on order {row['order_id']} of this store"
                )
                continue
            if add.order is not None and row["order_id"] is None:
                row["order_id"] = add.order.pk
            if carrier and carrier != row["carrier"]:
                switched = detection_fields(number, carrier=carrier, priority=priority)
                switched.pop("tracking_number")
                row.update(switched)
            if add.tracking_url:
                row["tracking_url"] = add.tracking_url
        inserted: dict[str, int] = {}
        if rows:
            # In number order: two writers inserting overlapping numbers wait for each other, never deadlock.
            inserted = dict(rows_insert(
                Shipment, [rows[number] for number in sorted(rows)], conflict=("store_id", "tracking_number"),
                returning=("tracking_number", "id"),
            ))
        raced = sorted(set(rows) - set(inserted))
        if raced:  # someone added these numbers between our read and our insert: complete theirs, as shipment_add does
            existing.update(
                (shipment.tracking_number, shipment)
                for shipment in Shipment.objects.select_for_update().filter(store=store, tracking_number__in=raced)
                .order_by("pk")
            )
        for stored in existing.values():
            stored.store = store  # _complete_existing reads its carrier priority
        changed: list[int] = list(inserted.values())
        wanted_lines: dict[tuple[int, int], int] = {}
        for index, (add, carrier, fields) in enumerate(planned):
            number = str(fields["tracking_number"])
            shipment = existing.get(number)
            if shipment is None and index in conflicts:
                results[index] = conflicts[index]
                continue
            if shipment is None:
                shipment_id = inserted[number]
                results[index] = ShipmentAdded(shipment_id=shipment_id, tracking_number=number,
                                               created=first_add[number] == index)
            else:
                try:
                    if _complete_existing(shipment, order=add.order, carrier=carrier, tracking_url=add.tracking_url,
                                          now=now):
                        changed.append(shipment.pk)
                except ShipmentConflict as exc:
                    results[index] = exc
                    continue
                shipment_id = shipment.pk
                results[index] = ShipmentAdded(shipment_id=shipment_id, tracking_number=number, created=False)
            for line_item, quantity in add.lines:
                wanted_lines[(shipment_id, line_item.pk)] = quantity
            if add.lines:
                changed.append(shipment_id)
        if wanted_lines:
            # The quantities the adds name (the last add of a number wins), set whether the line exists or not.
            rows_insert(
                ShipmentLine,
                [{"shipment_id": shipment_id, "line_item_id": line_pk, "quantity": quantity}
                 for (shipment_id, line_pk), quantity in sorted(wanted_lines.items())],
                conflict=("shipment_id", "line_item_id"), update=("quantity",),
            )
        shipments_changed_notify(changed)
    return [results[index] for index in range(len(planned))]


def detection_fields(number: str, *, carrier: str, priority: Sequence[str] = ()) -> dict[str, object]:
    """carrier, carrier_format, carrier_valid, carrier_candidates, tracking_url and the number the carrier tracks
    (`tracking.numbers.canonical` of `number`), for a normalized number; `priority` is the store's carrier list.

    The candidate is `tracking.numbers.choose_candidate`'s (without a carrier, the first valid one: detection orders
    them by check digit, the priority list, then confidence). No valid candidate: the carrier stays blank and
    17TRACK identifies it.
    """
    candidates = detect(number, priority=tuple(priority))
    as_json = [
        {
            "carrier": c.carrier,
            "format": c.format,
            "valid": c.valid,
            "tracking_url": c.tracking_url,
            "confidence": c.confidence,
        }
        for c in candidates
    ]
    chosen = choose_candidate(candidates, carrier)
    tracking_url = chosen.tracking_url if chosen else ""
    if not tracking_url and carrier:
        tracking_url = _spec_tracking_url(carrier, number)
    if chosen is not None:
        valid: bool | None = chosen.valid
    else:
        valid = False if candidates else None
    return {
        "carrier": carrier or (chosen.carrier if chosen else ""),
        "carrier_format": chosen.format if chosen else "",
        "carrier_valid": valid,
        "carrier_candidates": as_json,
        "tracking_url": tracking_url or "",
        "tracking_number": (chosen.tracking_number if chosen and chosen.valid else "") or number,
    }


def _spec_tracking_url(carrier: str, number: str) -> str:
    """The public tracking page from the carrier module, for a carrier given by hand that detection did not see."""
    try:
        return get_spec(carrier).tracking_url(number)
    except UnknownCarrier:
        return ""


# --- applying carrier answers --------------------------------------------------------------------------


def event_key(record: TrackingEventRecord) -> str:
    """The identity of a carrier scan: its UTC time, raw code, raw text and location (not our mapping of it)."""
    occurred_at = _aware(record.occurred_at).astimezone(UTC)
    material = "\x1f".join((occurred_at.isoformat(), record.raw_code, record.raw_text, record.location))
    return hashlib.sha256(material.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ApplyOutcome:
    status_changed: bool
    events_added: int
    expired: bool


def shipment_apply_result(*, shipment: Shipment, result: TrackingResult, now: datetime | None = None) -> bool:
    """Store a carrier answer for one shipment; True when its status changed."""
    return shipments_apply_results(pairs=[(shipment, result)], now=now)[0].status_changed


def shipments_apply_results(
    *, pairs: Sequence[tuple[Shipment, TrackingResult]], now: datetime | None = None
) -> list[ApplyOutcome]:
    """Store carrier answers for many shipments in a constant number of queries.

    New events are inserted once (unique key per shipment; a concurrent writer's copy is ignored). The status
    follows the carrier's current status when the answer is not older than what we have, and never moves
    backwards (tracking.vocabulary.moves_forward): a stale answer or a late scan is kept as an event only.
    The next poll is scheduled adaptively; a shipment with no event for TRACKING_MAX_AGE_DAYS expires.
    """
    if not pairs:
        return []
    now = now or timezone.now()
    shipment_ids = [shipment.pk for shipment, _ in pairs]
    known_keys: dict[int, set[str]] = {pk: set() for pk in shipment_ids}
    for shipment_id, key in TrackingEvent.objects.filter(shipment_id__in=shipment_ids).values_list(
        "shipment_id", "key"
    ):
        known_keys[shipment_id].add(key)

    new_events: list[Row] = []  # TrackingEvent rows, keyed by column
    outcomes: list[ApplyOutcome] = []
    changed_shipments: list[Shipment] = []
    for shipment, result in pairs:
        added = 0
        keys = known_keys.setdefault(shipment.pk, set())
        for record in result.events:
            key = event_key(record)
            if key in keys:
                continue
            keys.add(key)
            added += 1
            new_events.append(
                {
                    "shipment_id": shipment.pk,
                    "occurred_at": _aware(record.occurred_at),
                    "status": str(record.status)[:32],
                    "substatus": str(record.substatus)[:32],
                    "raw_code": record.raw_code[:64],
                    "raw_text": record.raw_text[:1024],
                    "location": record.location[:255],
                    "key": key,
                    "created_at": now,
                }
            )
        previous_status = shipment.status
        expired = _apply_to_shipment(shipment, result, now)
        changed = shipment.status != previous_status
        if changed:
            shipment.status_changed_at = now
            changed_shipments.append(shipment)
        outcomes.append(ApplyOutcome(status_changed=changed, events_added=added, expired=expired))

    # 17TRACK names the carrier of numbers detection could not place: fill it in, never overwrite one.
    identified: dict[str, list[int]] = defaultdict(list)
    for shipment, result in pairs:
        if result.carrier and not shipment.carrier and result.carrier != CarrierCode.SEVENTEENTRACK:
            shipment.carrier = result.carrier[:32]
            identified[shipment.carrier].append(shipment.pk)

    with transaction.atomic():
        # One INSERT for the batch (a poll inserts tens of thousands); a concurrent writer's copy is skipped.
        rows_insert(TrackingEvent, new_events, conflict=("shipment_id", "key"))
        # Only the fields a poll owns: a concurrent shipment_add (order, lines, carrier) is never overwritten.
        objects_update([s for s, _ in pairs], APPLY_FIELDS)
        for carrier, ids in identified.items():
            Shipment.objects.filter(pk__in=ids, carrier="").update(carrier=carrier)
        shipments_changed_notify([shipment.pk for shipment in changed_shipments])
    return outcomes


APPLY_FIELDS = [
    "status",
    "substatus",
    "raw_code",
    "raw_text",
    "status_changed_at",
    "last_event_at",
    "estimated_delivery_date",
    "estimated_delivery_at",
    "delivered_at",
    "signed_by",
    "next_poll_at",
    "last_polled_at",
    "consecutive_failures",
    "last_error",
    "carrier_account",
    "registered_with",
    "poll_claimed_until",
    "poll_claim_token",
    "updated_at",
]


def _apply_to_shipment(shipment: Shipment, result: TrackingResult, now: datetime) -> bool:
    """Update the shipment's fields in memory from one answer; True when it expired."""
    newest = max(result.events, key=lambda record: _aware(record.occurred_at), default=None)
    newest_at = _aware(newest.occurred_at) if newest else None
    stale = newest_at is not None and shipment.last_event_at is not None and newest_at < shipment.last_event_at

    shipment.last_polled_at = now
    shipment.updated_at = now
    shipment.consecutive_failures = 0
    shipment.poll_claimed_until = None
    shipment.poll_claim_token = ""
    shipment.last_error = "" if result.found else (result.error or "not found at the carrier yet")[:2000]

    if result.found and not stale:
        status, substatus = result.status, result.substatus
        raw_code, raw_text = result.raw_code, result.raw_text
        if status == Status.UNKNOWN and newest is not None and newest.status != Status.UNKNOWN:
            status, substatus, raw_code, raw_text = newest.status, newest.substatus, newest.raw_code, newest.raw_text
        if _may_take(shipment, status, substatus):
            shipment.status, shipment.substatus = status, substatus
            shipment.raw_code, shipment.raw_text = raw_code[:64], raw_text[:512]
        if result.estimated_delivery is not None:
            _set_estimated_delivery(shipment, result.estimated_delivery)
        if shipment.status == Status.DELIVERED:
            delivered = result.delivered_at or _newest_time_with_status(result.events, Status.DELIVERED)
            if delivered is not None:
                shipment.delivered_at = _aware(delivered)
        if result.signed_by:
            shipment.signed_by = result.signed_by[:255]
    if newest_at is not None and (shipment.last_event_at is None or newest_at > shipment.last_event_at):
        shipment.last_event_at = newest_at

    expired = False
    if not is_terminal(shipment.status, shipment.substatus) and _past_max_age(shipment, now):
        shipment.status, shipment.substatus = Status.EXPIRED, ""
        shipment.last_error = shipment.last_error or "no carrier event for too long: tracking stopped"
        expired = True
    shipment.next_poll_at = next_poll_at_for(shipment, now)
    return expired


def _may_take(shipment: Shipment, status: str, substatus: str) -> bool:
    current = shipment.status
    if status == current:
        return True
    if is_terminal(current, shipment.substatus):
        # A terminal status only moves on to a later one (delivered -> cancelled), never back to "in transit".
        return moves_forward(current, status) and status != Status.UNKNOWN
    if status == Status.EXCEPTION and substatus in FAILURE_SUBSTATUSES:
        # A parcel lost or damaged after it was out for delivery must show, whatever the rank says.
        return True
    return moves_forward(current, status)


def _set_estimated_delivery(shipment: Shipment, value: datetime | date) -> None:
    if isinstance(value, datetime):
        aware = _aware(value)
        shipment.estimated_delivery_at = aware
        shipment.estimated_delivery_date = aware.date()
    else:
        shipment.estimated_delivery_at = None
        shipment.estimated_delivery_date = value


def _newest_time_with_status(events: Sequence[TrackingEventRecord], status: str) -> datetime | None:
    times = [_aware(record.occurred_at) for record in events if record.status == status]
    return max(times, default=None)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def shipments_record_failure(*, shipments: Sequence[Shipment], error: str, now: datetime | None = None) -> None:
    """The carrier could not answer for these shipments (a permanent error): retry later, with backoff."""
    if not shipments:
        return
    now = now or timezone.now()
    for shipment in shipments:
        shipment.consecutive_failures += 1
        shipment.last_error = error[:2000]
        shipment.last_polled_at = now
        shipment.poll_claimed_until = None
        shipment.poll_claim_token = ""
        shipment.updated_at = now
        shipment.next_poll_at = next_poll_at_for(shipment, now)
    objects_update(
        shipments,
        ["consecutive_failures", "last_error", "last_polled_at", "poll_claimed_until", "poll_claim_token",
         "next_poll_at", "updated_at"],
    )


# --- scheduling ----------------------------------------------------------------------------------------


def max_age() -> timedelta:
    return timedelta(days=settings.TRACKING_MAX_AGE_DAYS)


def _past_max_age(shipment: Shipment, now: datetime) -> bool:
    reference = shipment.last_event_at or shipment.created_at or now
    return now - reference > max_age()


def next_poll_at_for(shipment: Shipment, now: datetime) -> datetime | None:
    """When to ask the carrier again; None when never (terminal status).

    Out for delivery: within the hour. Moving in transit: every 3 h. Quiet for days: every 8 h, then daily.
    Not found yet: soon at first (new labels take a while to appear), then less often. Failures back off
    exponentially. The interval is spread by ±10 % per shipment so that an import does not come due all at once;
    it never goes past the moment the shipment would expire, so expiry happens on time.
    """
    if is_terminal(shipment.status, shipment.substatus):
        return None
    status = shipment.status
    last_move = shipment.last_event_at or shipment.created_at or now
    quiet = max(timedelta(0), now - last_move)
    if status == Status.OUT_FOR_DELIVERY:
        interval = timedelta(minutes=45)
    elif status == Status.ATTEMPT_FAILED:
        interval = timedelta(hours=3)
    elif status == Status.AVAILABLE_FOR_PICKUP:
        interval = timedelta(hours=6)
    elif status in (Status.PENDING, Status.UNKNOWN):
        age = max(timedelta(0), now - (shipment.created_at or now))
        if age < timedelta(hours=6):
            interval = timedelta(minutes=30)
        elif age < timedelta(days=2):
            interval = timedelta(hours=2)
        else:
            interval = timedelta(hours=8)
    elif status == Status.INFO_RECEIVED:
        interval = timedelta(hours=6) if quiet < timedelta(days=3) else timedelta(hours=12)
    else:  # in transit, exception, return to sender
        if quiet < timedelta(days=3):
            interval = timedelta(hours=3)
        elif quiet < timedelta(days=7):
            interval = timedelta(hours=8)
        else:
            interval = timedelta(hours=24)
    if shipment.estimated_delivery_date is not None and shipment.estimated_delivery_date <= now.date():
        interval = min(interval, timedelta(hours=2))
    if shipment.consecutive_failures:
        backoff = timedelta(minutes=15) * 2 ** min(shipment.consecutive_failures - 1, 10)
        interval = max(interval, min(backoff, timedelta(hours=12)))
    interval *= 0.9 + 0.2 * _spread(shipment.pk or 0)
    expires_at = last_move + max_age()
    return max(now, min(now + interval, expires_at))


def _spread(seed: int) -> float:
    """A stable number in [0, 1) per shipment."""
    return (seed * 2654435761 % 2**32) / 2**32


# --- carrier accounts -----------------------------------------------------------------------------------


def carrier_account_add(
    *,
    carrier: str,
    store: Store | None = None,
    client_id: str = "",
    client_secret: str = "",
    api_key: str = "",
    base_url: str = "",
    label: str = "",
    rate_limit: tuple[int, float] | None = None,
) -> CarrierAccount:
    """A new active account; it replaces (deactivates) the active one for the same carrier and store."""
    carrier = carrier.strip().lower()
    if carrier not in CarrierCode.values:
        raise CarrierAccountInvalid(f"unknown carrier {carrier!r}: one of {', '.join(CarrierCode.values)}")
    if carrier in OAUTH_CARRIERS:
        if not (client_id and client_secret):
            raise CarrierAccountInvalid(f"{carrier} uses OAuth: give --client-id and --client-secret")
        if api_key:
            raise CarrierAccountInvalid(f"{carrier} uses OAuth client credentials, not an API key")
    else:
        if not api_key:
            raise CarrierAccountInvalid(f"{carrier} uses an API key: give --api-key")
        if client_id or client_secret:
            raise CarrierAccountInvalid(f"{carrier} uses an API key, not client credentials")
    if rate_limit is not None and (rate_limit[0] < 1 or rate_limit[1] <= 0):
        raise CarrierAccountInvalid("rate limit must be at least 1 request per a positive number of seconds")
    with transaction.atomic():
        CarrierAccount.objects.filter(carrier=carrier, store=store, is_active=True).update(
            is_active=False, updated_at=timezone.now()
        )
        return CarrierAccount.objects.create(
            carrier=carrier,
            store=store,
            client_id=client_id,
            client_secret=client_secret,
            api_key=api_key,
            base_url=base_url.rstrip("/"),
            label=label,
            rate_limit_requests=rate_limit[0] if rate_limit else None,
            rate_limit_per_seconds=rate_limit[1] if rate_limit else None,
        )
