"""Finding the events: what changed since it was last compared, recorded with its deliveries in one transaction.

Every detector reads committed state and compares it with what it last recorded, so an event is never lost (the
next comparison still sees the difference, whichever signal went missing) and never sent for a change that was
rolled back (it was never there to see). Changes are found two ways, by the same functions:

* at once: receivers of the lower apps' signals call them for the ids at hand (oma.events.receivers);
* beat, every minute (`events_enqueue_due`): a sweep over everything, which also catches what no signal announces
  (a unified status written after a push, an estimated delivery date that moved, a channel poll's error).

`alert.*`: an alert is raised for an object on its transition into failure (an `OpenAlert` row, inserted once:
two detectors at once raise it once) and stays open through the retries that fail again; it is cleared when the
object recovers (a push succeeds, the channel polls again, the account answers), so the next failure is news
again. What counts as failing is oma.merchant.alerts's definition, the one the digest lists.

`shipment.updated` and `order.status_changed`: from the minute a store subscribes (its `EventWatch` baseline, taken
by beat without sending anything), a shipment whose tracking number, carrier, status, substatus or estimated
delivery date differs from its snapshot, a shipment new since, or an order whose unified status differs, is an
event; the snapshot row is locked while it is compared and updated, so two detectors send it once. A value that
changes twice between two comparisons is sent once, with its latest value.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Exists, Model, OuterRef, Q, QuerySet, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from oma.channels.models import Channel, ExternalOrder
from oma.core.bulk import objects_update, rows_insert
from oma.events import payloads, types
from oma.events.models import (
    NO_DATE,
    EventWatch,
    OpenAlert,
    OrderSnapshot,
    ShipmentSnapshot,
)
from oma.events.services import (
    EVENT_RETENTION,
    NewEvent,
    deliveries_dispatch_due,
    events_prune,
    events_record,
    stores_subscribed,
)
from oma.fulfillment.models import FulfillmentPush
from oma.merchant.alerts import (
    channels_failing_auth,
    failed_external_orders,
    failed_pushes,
    failing_carrier_accounts,
)
from oma.orders.models import Order
from oma.stores.models import Store
from tracking.models import CarrierAccount, Shipment

logger = logging.getLogger(__name__)

BATCH = 500
MAX_BATCHES = 40
BASELINE_CHUNK = 2000
SHIPMENTS = "shipments"
ORDERS = "orders"
WATCHED_TYPES = {SHIPMENTS: (types.SHIPMENT_UPDATED,), ORDERS: (types.ORDER_STATUS_CHANGED,)}


# --- alerts ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertKind:
    name: str
    event_type: str
    model: type[Model]
    failing: Callable[..., QuerySet]  # oma.merchant.alerts's query: (store_ids=...) -> the failing rows
    still_open: Q  # on `model`: its alert stays open (failing, or being retried); anything else clears it
    data: Callable[[Any, Store], dict[str, Any]]
    related: tuple[str, ...] = ()


ALERT_KINDS: tuple[AlertKind, ...] = (
    AlertKind(
        "push_failed", types.ALERT_PUSH_FAILED, FulfillmentPush, failed_pushes,
        Q(state__in=[FulfillmentPush.State.FAILED, FulfillmentPush.State.PENDING, FulfillmentPush.State.IN_PROGRESS]),
        payloads.push_failed_data, ("order",),
    ),
    AlertKind(
        "external_order_failed", types.ALERT_EXTERNAL_ORDER_FAILED, ExternalOrder, failed_external_orders,
        Q(state__in=[ExternalOrder.State.FAILED, ExternalOrder.State.PENDING, ExternalOrder.State.CREATING]),
        payloads.external_order_failed_data, ("channel",),
    ),
    AlertKind(
        "channel_auth_failed", types.ALERT_CHANNEL_AUTH_FAILED, Channel, channels_failing_auth,
        Q(is_enabled=True) & ~Q(last_error=""), payloads.channel_auth_failed_data,
    ),
    AlertKind(
        "carrier_account_failed", types.ALERT_CARRIER_ACCOUNT_FAILED, CarrierAccount, failing_carrier_accounts,
        Q(is_active=True) & ~Q(last_error=""), payloads.carrier_account_failed_data,
    ),
)
ALERT_KIND_BY_MODEL: dict[type[Model], AlertKind] = {kind.model: kind for kind in ALERT_KINDS}


def alerts_raise(*, kind: AlertKind, object_ids: Collection[int] | None = None, now: datetime | None = None) -> int:
    """Raise the alert for every failing object of this kind (of `object_ids`) that has none open; returns how
    many were raised. Runs in its own transaction (a savepoint inside the caller's)."""
    now = now or timezone.now()
    rows = kind.failing(store_ids=None).exclude(
        Exists(OpenAlert.objects.filter(kind=kind.name, object_id=OuterRef("pk")))
    )
    if object_ids is not None:
        rows = rows.filter(pk__in=list(object_ids))
    objects = {obj.pk: obj for obj in rows.select_related("store", *kind.related).order_by("pk")[:BATCH]}
    if not objects:
        return 0
    with transaction.atomic():
        raised = rows_insert(
            OpenAlert,
            [{"kind": kind.name, "object_id": pk, "store_id": obj.store_id, "raised_at": now}
             for pk, obj in objects.items()],
            conflict=("kind", "object_id"),
            returning=("object_id",),
        )
        new = [objects[object_id] for (object_id,) in raised]
        events_record([NewEvent(obj.store_id, kind.event_type, kind.data(obj, obj.store)) for obj in new])
    if new:
        logger.info("%d %s alert(s) raised", len(new), kind.name)
    return len(new)


def alerts_clear() -> int:
    """Close the alerts whose object recovered or is gone."""
    cleared = 0
    for kind in ALERT_KINDS:
        still_failing = kind.model._default_manager.filter(kind.still_open, pk=OuterRef("object_id"))
        cleared += OpenAlert.objects.filter(kind=kind.name).exclude(Exists(still_failing)).delete()[0]
    return cleared


# --- watches: which stores' shipments and orders are compared -----------------------------------------------------


def watches_sync(*, now: datetime | None = None) -> int:
    """A watch for each store subscribed to shipment or order events, baselined silently; none for the others.
    Returns how many watches were started."""
    now = now or timezone.now()
    started = 0
    for kind, event_types in WATCHED_TYPES.items():
        wanted = stores_subscribed(event_types=event_types)
        existing = set(EventWatch.objects.filter(kind=kind).values_list("store_id", flat=True))
        gone = existing - wanted
        if gone:
            with transaction.atomic():
                EventWatch.objects.filter(kind=kind, store_id__in=gone).delete()
                _snapshot_model(kind).objects.filter(store_id__in=gone).delete()
        for store_id in sorted(wanted - existing):
            started += _baseline(kind=kind, store_id=store_id, now=now)
    return started


def _snapshot_model(kind: str) -> type[ShipmentSnapshot] | type[OrderSnapshot]:
    return ShipmentSnapshot if kind == SHIPMENTS else OrderSnapshot


def _baseline(*, kind: str, store_id: int, now: datetime) -> int:
    """Snapshot every shipment (order) of the store as it is now, sending nothing: the changes from here on are
    the events. One transaction, so a detector sees the store either unwatched or with its whole baseline."""
    with transaction.atomic():
        if not rows_insert(EventWatch, [{"store_id": store_id, "kind": kind, "baseline_at": now}],
                           conflict=("store_id", "kind"), returning=("id",)):
            return 0  # another beat took it
        model, target, rows = (
            (ShipmentSnapshot, "shipment_id", _shipment_snapshot_rows(store_id)) if kind == SHIPMENTS
            else (OrderSnapshot, "order_id", _order_snapshot_rows(store_id))
        )
        batch: list[dict[str, Any]] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= BASELINE_CHUNK:
                _upsert_snapshots(model, batch, target)
                batch = []
        _upsert_snapshots(model, batch, target)
    return 1


def _shipment_snapshot_rows(store_id: int) -> Iterator[dict[str, Any]]:
    fields = ("pk", "tracking_number", "carrier", "status", "substatus", "estimated_delivery_date")
    rows = Shipment.objects.filter(store_id=store_id).order_by("pk").values_list(*fields)
    for pk, number, carrier, status, substatus, eta in rows.iterator(chunk_size=BASELINE_CHUNK):
        yield {"shipment_id": pk, "store_id": store_id, "tracking_number": number, "carrier": carrier,
               "status": status, "substatus": substatus, "estimated_delivery_date": eta or NO_DATE}


def _order_snapshot_rows(store_id: int) -> Iterator[dict[str, Any]]:
    rows = Order.objects.filter(store_id=store_id).order_by("pk").values_list("pk", "unified_status")
    for pk, status in rows.iterator(chunk_size=BASELINE_CHUNK):
        yield {"order_id": pk, "store_id": store_id, "status": status}


def _upsert_snapshots(model: type[Model], rows: list[dict[str, Any]], target: str) -> None:
    if rows:
        update = tuple(column for column in rows[0] if column != target)
        rows_insert(model, rows, conflict=(target,), update=update)


def _watched(kind: str, store_ids: Collection[int] | None) -> list[int]:
    rows = EventWatch.objects.filter(kind=kind)
    if store_ids is not None:
        rows = rows.filter(store_id__in=list(store_ids))
    return list(rows.values_list("store_id", flat=True))


# --- shipment.updated ----------------------------------------------------------------------------------------------


def shipments_detect(
    *, shipment_ids: Collection[int] | None = None, store_ids: Collection[int] | None = None
) -> int:
    """Send `shipment.updated` for every shipment of a watched store (of `shipment_ids`) that differs from its
    snapshot or has none; returns how many were sent."""
    watched = _watched(SHIPMENTS, store_ids)
    if not watched:
        return 0
    same = ShipmentSnapshot.objects.filter(
        shipment_id=OuterRef("pk"), tracking_number=OuterRef("tracking_number"), carrier=OuterRef("carrier"),
        status=OuterRef("status"), substatus=OuterRef("substatus"), estimated_delivery_date=OuterRef("eta"),
    )
    candidates = Shipment.objects.filter(store_id__in=watched).annotate(
        eta=Coalesce("estimated_delivery_date", Value(NO_DATE))
    ).exclude(Exists(same))
    if shipment_ids is not None:
        candidates = candidates.filter(pk__in=list(shipment_ids))
    sent = 0
    for _ in range(MAX_BATCHES):  # bounded: a store whose shipments change faster than this is finished next run
        ids = list(candidates.order_by("pk").values_list("pk", flat=True)[:BATCH])
        sent += _shipments_send(ids) if ids else 0
        if len(ids) < BATCH:
            break
    return sent


def _shipments_send(ids: Sequence[int]) -> int:
    with transaction.atomic():
        snapshots = {
            row.shipment_id: row
            # Locked in one order everywhere, so two detectors at once wait for each other instead of deadlocking.
            for row in ShipmentSnapshot.objects.select_for_update().filter(shipment_id__in=ids).order_by("shipment_id")
        }
        shipments = list(Shipment.objects.filter(pk__in=ids).select_related("store", "order").order_by("pk"))
        fresh = [s for s in shipments if s.pk not in snapshots]
        inserted = {
            shipment_id for (shipment_id,) in rows_insert(
                ShipmentSnapshot,
                [{"shipment_id": s.pk, "store_id": s.store_id, **payloads.shipment_values(s)} for s in fresh],
                conflict=("shipment_id",), returning=("shipment_id",),
            )
        }
        changed: list[tuple[Shipment, dict[str, Any] | None]] = [(s, None) for s in fresh if s.pk in inserted]
        moved: list[ShipmentSnapshot] = []
        for shipment in shipments:
            snapshot = snapshots.get(shipment.pk)
            if snapshot is None:
                continue
            before = payloads.snapshot_values(snapshot)
            values = payloads.shipment_values(shipment)
            if before == values:
                continue
            changed.append((shipment, before))
            for name, value in values.items():
                setattr(snapshot, name, value)
            moved.append(snapshot)
        objects_update(moved, list(payloads.WATCHED_SHIPMENT_FIELDS))
        last = payloads.last_events([shipment.pk for shipment, _ in changed])
        events_record([
            NewEvent(shipment.store_id, types.SHIPMENT_UPDATED,
                     payloads.shipment_updated_data(shipment, before=before, last_event=last.get(shipment.pk)))
            for shipment, before in changed
        ])
    return len(changed)


# --- order.status_changed --------------------------------------------------------------------------------------------


def orders_detect(*, order_ids: Collection[int] | None = None, store_ids: Collection[int] | None = None) -> int:
    """Send `order.status_changed` for every order of a watched store (of `order_ids`) whose unified status differs
    from its snapshot. An order first seen, or one without a status before, is recorded silently: getting a first
    status is not a change."""
    watched = _watched(ORDERS, store_ids)
    if not watched:
        return 0
    same = OrderSnapshot.objects.filter(order_id=OuterRef("pk"), status=OuterRef("unified_status"))
    candidates = Order.objects.filter(store_id__in=watched).exclude(Exists(same))
    if order_ids is not None:
        candidates = candidates.filter(pk__in=list(order_ids))
    sent = 0
    for _ in range(MAX_BATCHES):  # bounded: a store whose shipments change faster than this is finished next run
        ids = list(candidates.order_by("pk").values_list("pk", flat=True)[:BATCH])
        sent += _orders_send(ids) if ids else 0
        if len(ids) < BATCH:
            break
    return sent


def _orders_send(ids: Sequence[int]) -> int:
    with transaction.atomic():
        locked = OrderSnapshot.objects.select_for_update().filter(order_id__in=ids).order_by("order_id")
        snapshots = {row.order_id: row for row in locked}
        orders = list(Order.objects.filter(pk__in=ids).select_related("store").order_by("pk"))
        rows_insert(
            OrderSnapshot,
            [{"order_id": o.pk, "store_id": o.store_id, "status": o.unified_status}
             for o in orders if o.pk not in snapshots],
            conflict=("order_id",),
        )
        changed: list[tuple[Order, str]] = []
        moved: list[OrderSnapshot] = []
        for order in orders:
            snapshot = snapshots.get(order.pk)
            if snapshot is None or snapshot.status == order.unified_status:
                continue
            if snapshot.status and order.unified_status:
                changed.append((order, snapshot.status))
            snapshot.status = order.unified_status
            moved.append(snapshot)
        objects_update(moved, ["status"])
        events_record([
            NewEvent(order.store_id, types.ORDER_STATUS_CHANGED,
                     payloads.order_status_changed_data(order, previous=previous))
            for order, previous in changed
        ])
    return len(changed)


def shipment_orders_detect(*, shipment_ids: Collection[int]) -> int:
    """`orders_detect` for the orders of these shipments (their unified status follows their shipments)."""
    watched = _watched(ORDERS, None)
    if not watched:
        return 0
    order_ids = set(
        Shipment.objects.filter(pk__in=list(shipment_ids), store_id__in=watched, order__isnull=False)
        .values_list("order_id", flat=True)
    )
    return orders_detect(order_ids=order_ids, store_ids=watched) if order_ids else 0


# --- beat -----------------------------------------------------------------------------------------------------------


def events_enqueue_due(*, now: datetime | None = None) -> dict[str, int]:
    """Beat, every minute: publish the deliveries that are due, baseline new watches, raise and clear alerts,
    compare every watched shipment and order, forget old events. Each step is safe to run twice or at once, and
    one that fails (logged) does not keep the others from running."""
    now = now or timezone.now()
    steps: dict[str, Callable[[], int]] = {
        "dispatched": lambda: deliveries_dispatch_due(now=now).dispatched,
        "watches": lambda: watches_sync(now=now),
        "alerts": lambda: sum(alerts_raise(kind=kind, now=now) for kind in ALERT_KINDS),
        "cleared": alerts_clear,
        "shipments": shipments_detect,
        "orders": orders_detect,
        "pruned": lambda: events_prune(older_than=EVENT_RETENTION, now=now),
    }
    result: dict[str, int] = {}
    for name, step in steps.items():
        try:
            result[name] = step()
        except Exception:  # the next run tries again; the other steps still run now
            logger.exception("events: %s failed", name)
            result[name] = -1
    return result
