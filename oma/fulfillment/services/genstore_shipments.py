"""Tracking the fulfillments merchants make in Genstore themselves (or another app makes there).

Every live Genstore fulfillment with a tracking number that OMA did not push becomes a shipment of source `genstore`
of its order, detected like any number (tracking.services.detection_fields; the fulfillment's `trackingCompany`
only breaks ties) and polled like any shipment. Its link to the fulfillment is its FulfillmentPush row, born
knowing it: the fulfill_id, `adopted`, state succeeded, Genstore's values as what was pushed and the shipment's own
as the source. So the push machinery (services/push.py) has nothing to create and nothing to read: when the carrier
moves the parcel on, the store's drain sends `update_tracking`, never backwards, and nothing when Genstore already
says as much. That update names the shipmentStatus alone (push.py's `_keep_status_current`): the number, company
and link stay as the merchant wrote them ("DHL Express"), and a push racing a number they just changed never writes
the old one back. A forced push that finds the fulfillment gone creates nothing in its place.

The rules, in one place (`genstore_fulfillments_track`, a constant number of queries for any number of orders):

* Not adopted: a fulfillment that a FulfillmentPush of another shipment holds (OMA created it, or a channel's
  shipment adopted it), one whose number a push of its order is creating right now (create sent, no id yet), one
  that is dead (cancelled, error, failure) or whose number is missing or malformed
  (oma.channels.connectors.base.tracking_number_problem, the channels' rule).
* A number some shipment of the store already has is never a second shipment. With no order (a CSV row that
  matched nothing) it is linked to this order and fulfillment; on this order it is given the fulfillment when its
  push holds none and is not at work (its push skipped "nothing left to fulfil": the merchant fulfilled the items
  by hand with this number), else left as it is; on another order it is left (reconciliation reports the number
  on two orders). Such a shipment then owes its status to the fulfillment, pushed forward only.
* Retired, when Genstore's fulfillment dies or loses its number: the shipment is unlinked from its order and never
  polled again, its push row skipped with the reason. Nothing is sent to Genstore: retiring is not a voided label
  (push.label_voided never takes a `genstore` shipment for one), the merchant's fulfillment is theirs.
* A number Genstore changes: the old shipment is retired and the new number tracked as a new shipment linked to the
  same fulfillment. A new number is a new label: its carrier, events and status start over, while a shipment's
  status never moves backwards and its customer e-mails are recorded once per milestone; renaming in place would
  mean resetting status and deleting history behind the back of both, and the new number may already be a
  shipment of the store (one row per number). The old number's history stays readable on the retired shipment,
  and its push row, still on the order, says why it was retired.
* Never copied from Genstore into the shipment: OMA's own branded /track/<token>/ link (it is not the carrier's
  page; detection's carrier page stands instead). Another http(s) link the merchant set is kept as the shipment's
  carrier link when it names the number; a fulfillment without a link gives a shipment without one.

Sources: `orders_changed` (sweeps, orders/* webhooks, fresh reads by the push: all go through the order mirror)
calls `genstore_fulfillments_track` for the changed orders (receivers.py); `order_fulfillments_record_and_track`
mirrors an `orders/{id}/fulfillments` read and tracks it (push.py calls it for each of its reads); and each
successful sweep ends with
`genstore_fulfillments_catch_up`, which finds live mirrored fulfillments with a number and no shipment (an existing
store's history, a lost hook) and links gone stale, a batch of orders at a time.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from django.conf import settings
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from oma.channels.connectors.base import carrier_code, tracking_number_problem
from oma.core.bulk import rows_insert, rows_update
from oma.core.locking import lost_a_lock_race
from oma.fulfillment.models import LOG_LIMIT, FulfillmentPush
from oma.fulfillment.services.unified_status import orders_unified_status_refresh
from oma.fulfillment.tracking_links import order_id_from_token
from oma.genstore.fulfillment_status import DEAD_FULFILLMENT_STATUSES
from oma.genstore.records import FulfillmentRecord
from oma.orders.models import GenstoreFulfillment, LineItem, Order
from oma.orders.services import order_fulfillment_record
from oma.stores.models import Store
from tracking.models import Shipment, ShipmentLine
from tracking.numbers import normalize
from tracking.services import detection_fields
from tracking.signals import shipments_changed_notify
from tracking.vocabulary import Status, is_terminal

logger = logging.getLogger(__name__)

GENSTORE = Shipment.Source.GENSTORE
State = FulfillmentPush.State

# Orders looked at per batch by the catch-up (each batch: a constant number of queries).
CATCH_UP_BATCH = 500
# Two trackers of one store wait for each other (an advisory lock); a deadlock with another writer (a poll updating
# the same shipments) is retried this many times.
_ATTEMPTS = 4
# The branded tracking page's path (oma/merchant/urls.py under /track/): /track/<signed token>/.
_TRACK_PATH = re.compile(r"/track/(?P<token>[^/]+)/?$")


@dataclass(slots=True)
class TrackOutcome:
    """What one run did. `shipment_ids`: shipments added or linked to an order (shipments_changed was sent for
    them); `order_ids`: orders whose parcels changed (added, linked or retired)."""

    adopted: int = 0  # new `genstore` shipments
    linked: int = 0  # existing shipments linked to the fulfillment's order (a retired one brought back included)
    retired: int = 0
    shipment_ids: list[int] = field(default_factory=list)
    order_ids: set[int] = field(default_factory=set)

    def add(self, other: TrackOutcome) -> None:
        self.adopted += other.adopted
        self.linked += other.linked
        self.retired += other.retired
        self.shipment_ids.extend(other.shipment_ids)
        self.order_ids |= other.order_ids


@dataclass(frozen=True, slots=True)
class _Fulfillment:
    """A mirrored Genstore fulfillment, as read for this."""

    order_pk: int
    order_code: str  # Genstore's orderId
    fulfill_id: str
    status: str
    shipment_status: str
    tracking_number: str  # as Genstore holds it
    tracking_company: str
    tracking_url: str
    line_items: list[dict[str, object]]
    created_at: datetime | None

    @property
    def dead(self) -> bool:
        return self.status in DEAD_FULFILLMENT_STATUSES

    @property
    def number(self) -> str:
        """The normalized number, "" when missing or not a tracking number at all ("N/A", "-")."""
        number = normalize(self.tracking_number)
        return "" if tracking_number_problem(number) else number


@dataclass(frozen=True, slots=True)
class _Link:
    """A `genstore` shipment's push row, linked to its fulfillment (the shipment is on the row's order)."""

    push_pk: int
    shipment_pk: int
    shipment_number: str
    log: list[dict[str, str]]


@dataclass(frozen=True, slots=True)
class _Existing:
    pk: int
    order_pk: int | None
    source: str
    carrier: str
    status: str
    substatus: str
    tracking_url: str
    next_poll_at: datetime | None
    # On an order, and no push of it holds a fulfillment, is creating one or is about to: it may take this one.
    attachable: bool


@dataclass(slots=True)
class _Work:
    """What one run decided, written by `_write` in a constant number of statements."""

    retire: list[tuple[_Link, int, str]] = field(default_factory=list)  # (link, order pk, reason)
    new: list[tuple[_Fulfillment, dict[str, object]]] = field(default_factory=list)  # (fulfillment, detection)
    relink: list[tuple[_Existing, _Fulfillment]] = field(default_factory=list)  # a retired `genstore` shipment
    link: list[tuple[_Existing, _Fulfillment]] = field(default_factory=list)  # another source's, without order
    attach: list[tuple[_Existing, _Fulfillment]] = field(default_factory=list)  # on this order, its push idle
    claimed: set[str] = field(default_factory=set)  # numbers given a shipment by this run


# --- tracking the fulfillments of some orders -----------------------------------------------------------------


def genstore_fulfillments_track(
    *, store: Store, order_ids: Sequence[int], now: datetime | None = None
) -> TrackOutcome:
    """Bring the `genstore` shipments of these orders (pks) in line with their mirrored Genstore fulfillments:
    adopt, link, retire (module docstring). A constant number of queries whatever the number of orders; safe to
    run twice and side by side (one run per store at a time, a transaction-scoped lock). shipments_changed is sent
    after the commit for the shipments added or linked; the orders' unified status is the caller's to refresh."""
    if not order_ids or not store.is_active:
        return TrackOutcome()
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            with transaction.atomic():
                _store_lock(store)
                return _track(store=store, order_ids=sorted(set(order_ids)), now=now or timezone.now())
        except (IntegrityError, OperationalError) as exc:
            if attempt == _ATTEMPTS or not (isinstance(exc, IntegrityError) or lost_a_lock_race(exc)):
                raise
            logger.info("tracking Genstore fulfillments of %s: %s; trying again", store.domain, exc)
            time.sleep(random.uniform(0, 0.05 * attempt))  # out of step with whoever we collided with
    raise AssertionError("unreachable")


def _store_lock(store: Store) -> None:
    """Until the transaction ends, the only run for this store (PostgreSQL; SQLite has one writer anyway)."""
    if connection.vendor != "postgresql":
        return
    key = int.from_bytes(hashlib.sha256(f"genstore-shipments|{store.pk}".encode()).digest()[:8], "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def _track(*, store: Store, order_ids: list[int], now: datetime) -> TrackOutcome:
    fulfillments = _fulfillments_of(store, order_ids)
    if not fulfillments:
        return TrackOutcome()
    links, held = _pushes_holding(store, [f.fulfill_id for f in fulfillments])
    creating = _creates_in_flight(store, order_ids)
    detected: dict[str, dict[str, object]] = {}
    for fulfillment in fulfillments:
        number = fulfillment.number
        link = links.get(fulfillment.fulfill_id)
        if fulfillment.dead or not number or (link is not None and link.shipment_number == number):
            continue  # nothing to detect: not tracked, or tracked under this very spelling
        if link is None and (fulfillment.fulfill_id in held or (fulfillment.order_pk, number) in creating):
            continue
        detected[fulfillment.fulfill_id] = _detect(store, fulfillment, number)
    existing = _shipments_with(store, {str(fields["tracking_number"]) for fields in detected.values()})

    work = _Work()
    for fulfillment in fulfillments:
        _decide(work, fulfillment, link=links.get(fulfillment.fulfill_id), held=held, creating=creating,
                fields=detected.get(fulfillment.fulfill_id), existing=existing)
    return _write(store=store, work=work, now=now)


def _fulfillments_of(store: Store, order_ids: list[int]) -> list[_Fulfillment]:
    rows = (
        GenstoreFulfillment.objects.filter(store=store, order_id__in=order_ids)
        .order_by("order_id", "genstore_created_at", "pk")
        .values_list("order_id", "order__order_id", "fulfill_id", "status", "shipment_status", "tracking_number",
                     "tracking_company", "tracking_url", "line_items", "genstore_created_at")
    )
    return [
        _Fulfillment(order_pk, order_code, fulfill_id, status, shipment_status, number, company, url,
                     items if isinstance(items, list) else [], created_at)
        for order_pk, order_code, fulfill_id, status, shipment_status, number, company, url, items, created_at in rows
    ]


def _pushes_holding(store: Store, fulfill_ids: list[str]) -> tuple[dict[str, _Link], set[str]]:
    """The fulfillments' push rows: links of `genstore` shipments still on their order (fulfill_id -> link), and
    the fulfill_ids held by another shipment's push (OMA pushed it, or a channel shipment adopted it)."""
    links: dict[str, _Link] = {}
    held: set[str] = set()
    for push_pk, fulfill_id, order_pk, shipment_pk, source, shipment_order, number, log in (
        FulfillmentPush.objects.filter(store=store, fulfill_id__in=fulfill_ids).order_by("pk").values_list(
            "pk", "fulfill_id", "order_id", "shipment_id", "shipment__source", "shipment__order_id",
            "shipment__tracking_number", "log",
        )
    ):
        if source != GENSTORE:
            held.add(fulfill_id)  # a deleted shipment's row too: OMA pushed that fulfillment once
        elif shipment_order == order_pk and shipment_pk is not None:
            links[fulfill_id] = _Link(push_pk, shipment_pk, number, list(log or []))
    return links, held


def _creates_in_flight(store: Store, order_ids: list[int]) -> set[tuple[int, str]]:
    """(order pk, normalized number) of the pushes whose create was sent and not answered with an id yet."""
    return {
        (order_pk, normalize(number))
        for order_pk, number in FulfillmentPush.objects.filter(
            store=store, order_id__in=order_ids, fulfill_id="", create_sent_at__isnull=False
        ).values_list("order_id", "tracking_number")
    }


def _detect(store: Store, fulfillment: _Fulfillment, number: str) -> dict[str, object]:
    """Detection fields for the number; the carrier Genstore names goes first among the candidates (the merchant
    knows which carrier took the parcel), without forcing one the number does not fit."""
    hint = carrier_code(fulfillment.tracking_company)
    priority = [hint] if hint else []
    return detection_fields(number, carrier="", priority=[*priority, *(store.carrier_priority or ())])


def _shipments_with(store: Store, numbers: set[str]) -> dict[str, _Existing]:
    """The store's shipments with these numbers. One on an order is `attachable` when its push for that order
    holds no fulfillment and is neither creating one nor about to (none yet, or skipped or failed judging the mirror,
    e.g. "nothing left to fulfil" because the merchant fulfilled the items by hand), and its label is not voided."""
    if not numbers:
        return {}
    rows = list(
        Shipment.objects.filter(store=store, tracking_number__in=sorted(numbers)).values_list(
            "pk", "tracking_number", "order_id", "source", "carrier", "status", "substatus", "tracking_url",
            "next_poll_at",
        )
    )
    on_order = [row[0] for row in rows if row[2] is not None and row[5] != Status.CANCELLED]
    busy = set(
        FulfillmentPush.objects.filter(shipment_id__in=on_order, order_id=F("shipment__order_id"))
        .filter(~Q(fulfill_id="") | Q(create_sent_at__isnull=False) | Q(state__in=[State.PENDING, State.IN_PROGRESS]))
        .values_list("shipment_id", flat=True)
    ) if on_order else set()
    return {
        number: _Existing(pk, order_pk, source, carrier, status, substatus, url, next_poll_at,
                          attachable=pk in on_order and pk not in busy)
        for pk, number, order_pk, source, carrier, status, substatus, url, next_poll_at in rows
    }


def _decide(
    work: _Work, fulfillment: _Fulfillment, *, link: _Link | None, held: set[str], creating: set[tuple[int, str]],
    fields: dict[str, object] | None, existing: dict[str, _Existing],
) -> None:
    number = fulfillment.number
    if link is not None:
        if fields is None and not fulfillment.dead and number:
            return  # tracked under this very number
        new_number = str(fields["tracking_number"]) if fields is not None else ""
        if new_number == link.shipment_number:
            return  # another spelling of the same number
        work.retire.append((link, fulfillment.order_pk, _retire_reason(fulfillment, new_number)))
    elif fulfillment.fulfill_id in held or (fulfillment.order_pk, number) in creating:
        return  # OMA's own fulfillment, or one it is creating right now
    if fields is None:
        return  # dead, or no number to track
    canonical = str(fields["tracking_number"])
    if canonical in work.claimed:
        return  # two fulfillments with one number: the first one carries it (reconciliation reports the second)
    found = existing.get(canonical)
    if found is None:
        work.new.append((fulfillment, fields))
    elif found.order_pk is None:
        (work.relink if found.source == GENSTORE else work.link).append((found, fulfillment))
    elif found.order_pk == fulfillment.order_pk and found.attachable:
        work.attach.append((found, fulfillment))
    # else: a shipment of the store has the number already, on this order (its push holds a fulfillment or is at
    # work) or on another one (reconciliation reports it): never a second shipment.
    work.claimed.add(canonical)


def _retire_reason(fulfillment: _Fulfillment, new_number: str) -> str:
    if fulfillment.dead:
        why = f"Genstore fulfillment {fulfillment.fulfill_id} is {fulfillment.status}"
    elif new_number:
        why = f"Genstore fulfillment {fulfillment.fulfill_id} now carries {new_number} (tracked instead)"
    elif fulfillment.tracking_number.strip():
        why = f"Genstore fulfillment {fulfillment.fulfill_id} carries {fulfillment.tracking_number!r}, not a number"
    else:
        why = f"the tracking number was removed from Genstore fulfillment {fulfillment.fulfill_id}"
    return f"{why}: this shipment is no longer tracked (nothing is sent to Genstore)"


# --- writing what was decided ----------------------------------------------------------------------------------


def _write(*, store: Store, work: _Work, now: datetime) -> TrackOutcome:
    outcome = TrackOutcome()
    _write_retired(work, now=now, outcome=outcome)
    new_ids = _insert_shipments(store, work, now=now)
    _write_links(work, now=now)
    adopted = [(pk, fulfillment) for fulfillment, _ in work.new if (pk := new_ids.get(fulfillment.fulfill_id))]
    moved = [(found.pk, fulfillment) for found, fulfillment in [*work.relink, *work.link]]
    attached = [(found.pk, fulfillment) for found, fulfillment in work.attach]
    _write_lines([*adopted, *moved], replaced=[pk for pk, _ in moved])
    _write_push_rows(store, [*adopted, *moved, *attached], owing={pk for pk, _ in [*moved, *attached]}, now=now)
    outcome.adopted = len(adopted)
    outcome.linked = len(moved) + len(attached)
    outcome.shipment_ids = [pk for pk, _ in [*adopted, *moved, *attached]]
    outcome.order_ids |= {fulfillment.order_pk for _, fulfillment in [*adopted, *moved, *attached]}
    shipments_changed_notify(outcome.shipment_ids)
    if outcome.adopted or outcome.linked or outcome.retired:
        logger.info("Genstore fulfillments of %s: %d shipments adopted, %d linked, %d retired", store.domain,
                    outcome.adopted, outcome.linked, outcome.retired)
    return outcome


def _write_retired(work: _Work, *, now: datetime, outcome: TrackOutcome) -> None:
    if not work.retire:
        return
    rows_update(
        Shipment,
        [{"id": link.shipment_pk, "order_id": None, "next_poll_at": None, "updated_at": now}
         for link, _, _ in work.retire],
        lock_order=("id",),
    )
    rows_update(
        FulfillmentPush,
        [
            {"id": link.push_pk, "state": State.SKIPPED, "state_reason": reason[:512], "next_attempt_at": None,
             "log": _logged(link.log, f"retired: {reason}", now), "updated_at": now}
            for link, _, reason in work.retire
        ],
        lock_order=("id",),
    )
    outcome.retired = len(work.retire)
    outcome.order_ids |= {order_pk for _, order_pk, _ in work.retire}


def _insert_shipments(store: Store, work: _Work, *, now: datetime) -> dict[str, int]:
    """fulfill_id -> the new shipment's pk. A number someone else inserted meanwhile (a channel's shipment_add,
    which does not take our lock) is theirs: left out."""
    if not work.new:
        return {}
    rows = []
    for fulfillment, fields in work.new:
        created = fulfillment.created_at if fulfillment.created_at and fulfillment.created_at < now else now
        rows.append({
            "store_id": store.pk,
            "order_id": fulfillment.order_pk,
            "tracking_number": fields["tracking_number"],
            "carrier": fields["carrier"],
            "carrier_format": fields["carrier_format"],
            "carrier_valid": fields["carrier_valid"],
            "carrier_candidates": fields["carrier_candidates"],
            "source": GENSTORE,
            "status": Status.PENDING,
            "tracking_url": _shipment_link(fulfillment, str(fields["tracking_url"])),
            "next_poll_at": now,
            # The label is as old as the fulfillment: the shipment's age (expiry, "not picked up", transit time)
            # counts from there, so a fulfillment from long ago does not look like a fresh label.
            "created_at": created,
            "updated_at": now,
        })
    inserted = dict(rows_insert(Shipment, rows, conflict=("store_id", "tracking_number"),
                                returning=("tracking_number", "id")))
    return {
        fulfillment.fulfill_id: inserted[str(fields["tracking_number"])]
        for fulfillment, fields in work.new
        if str(fields["tracking_number"]) in inserted
    }


def _write_links(work: _Work, *, now: datetime) -> None:
    """Existing shipments without an order, linked to the fulfillment's order; a retired `genstore` one is polled
    again (unless its status is final)."""
    polls = {found.pk: None if is_terminal(found.status, found.substatus) else now for found, _ in work.relink}
    polls.update({found.pk: found.next_poll_at for found, _ in work.link})
    orders = {found.pk: fulfillment.order_pk for found, fulfillment in [*work.relink, *work.link]}
    if not orders:
        return
    rows_update(
        Shipment,
        [{"id": pk, "order_id": order_pk, "next_poll_at": polls[pk], "updated_at": now}
         for pk, order_pk in orders.items()],
        lock_order=("id",),
    )


def _write_lines(born: list[tuple[int, _Fulfillment]], *, replaced: list[int]) -> None:
    """The fulfillment's line items travel in the shipment (one linked to this order now: instead of any it had)."""
    if replaced:
        ShipmentLine.objects.filter(shipment_id__in=replaced).delete()
    if not born:
        return
    line_pks = {
        (order_pk, line_item_id): pk
        for pk, order_pk, line_item_id in LineItem.objects.filter(
            order_id__in={fulfillment.order_pk for _, fulfillment in born}
        ).values_list("pk", "order_id", "line_item_id")
    }
    rows: dict[tuple[int, int], int] = {}
    for shipment_pk, fulfillment in born:
        for item in fulfillment.line_items:
            line_pk = line_pks.get((fulfillment.order_pk, str(item.get("id"))))
            quantity = _quantity(item.get("quantity"))
            if line_pk is not None and quantity > 0:
                rows[(shipment_pk, line_pk)] = rows.get((shipment_pk, line_pk), 0) + quantity
    rows_insert(
        ShipmentLine,
        [{"shipment_id": shipment_pk, "line_item_id": line_pk, "quantity": quantity}
         for (shipment_pk, line_pk), quantity in sorted(rows.items())],
        conflict=("shipment_id", "line_item_id"), update=("quantity",),
    )


def _quantity(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


_PUSH_ROW_UPDATE = (
    "fulfill_id", "adopted", "state", "state_reason", "tracking_number", "tracking_company", "tracking_url",
    "shipment_status", "line_items", "held_back_shipment_status", "notify_customer", "source_tracking_number",
    "source_carrier", "source_status", "source_substatus", "source_tracking_url", "succeeded_at",
    "next_attempt_at", "create_sent_at", "last_error", "last_error_status", "queued_at", "log", "updated_at",
)


def _write_push_rows(store: Store, born: list[tuple[int, _Fulfillment]], *, owing: set[int], now: datetime) -> None:
    """Each shipment's push row for its order, knowing its fulfillment: what Genstore holds is what was pushed, the
    shipment as it is now is the source. A new shipment's row is settled (nothing owed until the carrier moves it
    on); an existing shipment (`owing`) owes its status (the row's source status left blank), which the drain
    pushes forward only. A row the shipment had for this order is taken over, its log kept."""
    if not born:
        return
    shipments = {
        pk: (number, carrier, status, substatus, url)
        for pk, number, carrier, status, substatus, url in Shipment.objects.filter(
            pk__in=[pk for pk, _ in born]
        ).values_list("pk", "tracking_number", "carrier", "status", "substatus", "tracking_url")
    }
    keys = {
        pk: FulfillmentPush.key_for(store_id=store.pk, order_id=fulfillment.order_code, shipment_id=pk)
        for pk, fulfillment in born
    }
    logs: dict[str, list[dict[str, str]]] = {}
    if owing:
        logs = dict(FulfillmentPush.objects.filter(key__in=list(keys.values())).values_list("key", "log"))
    rows = []
    for pk, fulfillment in born:
        number, carrier, status, substatus, url = shipments[pk]
        message = (
            f"linked to Genstore fulfillment {fulfillment.fulfill_id}, made in Genstore (not by OMA) with this "
            "number: its shipmentStatus follows the carrier through update_tracking"
        )
        rows.append({
            "key": keys[pk], "store_id": store.pk, "order_id": fulfillment.order_pk, "shipment_id": pk,
            "fulfill_id": fulfillment.fulfill_id, "adopted": True, "state": State.SUCCEEDED, "state_reason": "",
            "tracking_number": fulfillment.tracking_number, "tracking_company": fulfillment.tracking_company,
            "tracking_url": fulfillment.tracking_url, "shipment_status": fulfillment.shipment_status,
            "line_items": fulfillment.line_items, "held_back_shipment_status": "", "notify_customer": False,
            "source_tracking_number": number, "source_carrier": carrier,
            "source_status": "" if pk in owing else status, "source_substatus": substatus,
            "source_tracking_url": url, "succeeded_at": now, "next_attempt_at": None, "create_sent_at": None,
            "last_error": "", "last_error_status": None, "queued_at": None,
            "log": _logged(list(logs.get(keys[pk]) or []), message, now), "created_at": now, "updated_at": now,
        })
    rows_insert(FulfillmentPush, rows, conflict=("key",), update=_PUSH_ROW_UPDATE)


def _logged(log: list[dict[str, str]], message: str, now: datetime) -> list[dict[str, str]]:
    return [*log, {"at": now.isoformat(timespec="seconds"), "message": message[:500]}][-LOG_LIMIT:]


def _shipment_link(fulfillment: _Fulfillment, detected: str) -> str:
    """The shipment's carrier link: the fulfillment's own when it is one (then the push has nothing to change);
    none when it has none (pages and e-mails fall back to the carrier's page, and Genstore is not written to just to
    add a link); detection's carrier page when the one Genstore holds is not this parcel's carrier page."""
    if not fulfillment.tracking_url.strip():
        return ""
    return _carrier_link(fulfillment.tracking_url, fulfillment.number) or detected


def _carrier_link(url: str, number: str) -> str:
    """The fulfillment's own link, kept as the shipment's carrier link when it is an http(s) address that names the
    parcel's number (a link left over from an earlier number is not this parcel's), and not OMA's branded tracking
    page (a signed /track/<token>/ link: where OMA sends customers, not the carrier's page)."""
    url = (url or "").strip()
    if not url.lower().startswith(("https://", "http://")) or len(url) > 1024 or any(c.isspace() for c in url):
        return ""
    if not number or number not in normalize(url):
        return ""
    public = (settings.OMA_PUBLIC_URL or "").strip().rstrip("/")
    if public and url.startswith(public + "/track/"):
        return ""
    match = _TRACK_PATH.search(urlsplit(url).path)
    if match is not None and order_id_from_token(match.group("token")) is not None:
        return ""
    return url


# --- the sources beyond orders_changed -------------------------------------------------------------------------


def order_fulfillments_record_and_track(
    *, store: Store, order: Order, records: Sequence[FulfillmentRecord]
) -> TrackOutcome:
    """An `orders/{id}/fulfillments` read: mirror every fulfillment it returned (an older version never wins),
    then track the order's fulfillments."""
    for record in records:
        order_fulfillment_record(store=store, order=order, record=record)
    outcome = genstore_fulfillments_track(store=store, order_ids=[order.pk])
    if outcome.order_ids:
        orders_unified_status_refresh(order_ids=sorted(outcome.order_ids))
    return outcome


def genstore_fulfillments_catch_up(
    *, store: Store, batch: int = CATCH_UP_BATCH, now: datetime | None = None
) -> TrackOutcome:
    """Track every live mirrored fulfillment with a number and no shipment, and retire links gone stale, a batch
    of orders at a time in a constant number of queries each (a sweep whose orders were all unchanged sends no
    orders_changed: an existing store's history comes in here). Also stops polls that a poll running while its
    shipment was retired wrote back. Refreshes the unified status of the orders it changed."""
    outcome = TrackOutcome()
    if not store.is_active:
        return outcome
    after = 0
    while True:
        order_ids = _orders_to_catch_up(store, after=after, limit=batch)
        if not order_ids:
            break
        outcome.add(genstore_fulfillments_track(store=store, order_ids=order_ids, now=now))
        if len(order_ids) < batch:
            break
        after = order_ids[-1]
    Shipment.objects.filter(store=store, source=GENSTORE, order__isnull=True, next_poll_at__isnull=False).update(
        next_poll_at=None
    )
    if outcome.order_ids:
        orders_unified_status_refresh(order_ids=sorted(outcome.order_ids))
    return outcome


def _orders_to_catch_up(store: Store, *, after: int, limit: int) -> list[int]:
    """The next `limit` order pks (above `after`, in order) with a live fulfillment that has a number and neither
    a linked push row nor a shipment of that number on its order whose push holds a fulfillment, or with a
    `genstore` link whose fulfillment died, lost its number or carries another one. (A number spelled otherwise
    than its shipment, "1z 999...", is looked at again by each catch-up: a few queries, nothing written.)"""
    linked = FulfillmentPush.objects.filter(
        store=store, fulfill_id=OuterRef("fulfill_id"), shipment__order_id=OuterRef("order_id")
    )
    holding = FulfillmentPush.objects.filter(shipment_id=OuterRef("pk"), order_id=OuterRef("order_id")).exclude(
        fulfill_id=""
    )
    same_number = Shipment.objects.filter(
        store=store, order_id=OuterRef("order_id"), tracking_number=OuterRef("tracking_number")
    ).filter(Exists(holding))
    untracked = (
        GenstoreFulfillment.objects.filter(store=store, order_id__gt=after)
        .exclude(status__in=DEAD_FULFILLMENT_STATUSES).exclude(tracking_number="")
        .exclude(Exists(linked)).exclude(Exists(same_number))
        .order_by("order_id").values_list("order_id", flat=True).distinct()[:limit]
    )
    gone_stale = GenstoreFulfillment.objects.filter(store=store, fulfill_id=OuterRef("fulfill_id")).filter(
        Q(status__in=DEAD_FULFILLMENT_STATUSES) | Q(tracking_number="")
        | ~Q(tracking_number=OuterRef("shipment__tracking_number"))
    )
    stale = (
        FulfillmentPush.objects.filter(store=store, order_id__gt=after, shipment__source=GENSTORE,
                                       shipment__order_id=F("order_id"))
        .exclude(fulfill_id="").filter(Exists(gone_stale))
        .order_by("order_id").values_list("order_id", flat=True).distinct()[:limit]
    )
    return sorted({*untracked, *stale})[:limit]
