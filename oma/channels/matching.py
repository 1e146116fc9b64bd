"""Matching a reported shipment to its Genstore order and line items, without ever shipping more than was ordered.

Order: the platform's order id is looked up as Genstore's `sourceIdentifier` first, then as `orderId`, then as the
order's name (`#1001` or `1001`: what merchants and ShipStation export; admin search finds orders the same way).
When two orders share a sourceIdentifier (two channels reusing ids) or a name, the channel's `source_names` break
the tie; a tie they cannot break is refused rather than guessed.

Items: a record names lines by line item id or SKU, with or without a quantity; no lines means everything still
left to ship. What is left of a line is its quantity minus
- what live shipments of the order already hold (voided ones do not count),
- what Genstore fulfillments with a tracking number we do not track already hold (shipped elsewhere),
- and what Genstore no longer counts as fulfillable for reasons no fulfillment explains (refunds, removals):
  `quantity - fulfillableQuantity` beyond the quantities of the mirrored fulfillments.
Our own pushed shipments appear both as shipments and as Genstore fulfillments; matching by tracking number counts
them once. A channel label voided after its push (its shipment cancelled) still has a live Genstore fulfillment
until OMA's push cancels it: that fulfillment ships nothing any more (it only explains why Genstore's
`fulfillableQuantity` is down), so a replacement label reported with the void (one poll, one delivery, one file)
takes its items at once, and its push runs the cancel first. The merchant's own Genstore fulfillments (source
`genstore`) are never cancelled by OMA: theirs keep counting.
A record repeating what a shipment already holds adds nothing, so replays and re-imports are harmless.
Allocation runs with the order row locked (SELECT ... FOR UPDATE), so two channels reporting at once cannot both
take the last item.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple, TypeVar

from django.db import connection
from django.db.models import F, QuerySet
from django.db.models.functions import Collate

from oma.channels.connectors.base import LineRef
from oma.core.bulk import AnyOf
from oma.genstore.fulfillment_status import DEAD_FULFILLMENT_STATUSES
from oma.orders.models import GenstoreFulfillment, LineItem, Order
from oma.stores.models import Store
from tracking.models import Shipment, ShipmentLine
from tracking.numbers import normalize

CANCELLED = "cancelled"  # tracking.vocabulary.Status.CANCELLED: a voided label; its items are free again


class MatchProblem(Exception):
    """Why a record cannot be matched (said for people: it ends up in reports and in admin)."""


# --- orders --------------------------------------------------------------------------------------------------


class OrderKey(NamedTuple):
    """What matching reads of an order to find it: an import looks up thousands at a time, as tuples, never loading
    the mirrored order itself (its raw payload)."""

    pk: int
    order_id: str
    source_identifier: str
    name: str
    source_name: str


ORDER_KEY_COLUMNS = ("pk", "order_id", "source_identifier", "name", "source_name")


@dataclass(frozen=True, slots=True)
class OrderLookup:
    order: Order | OrderKey | None = None
    problem: str = ""  # set when several orders fit and nothing says which


_Found = TypeVar("_Found", Order, OrderKey)


def _pick(candidates: list[_Found], source_names: Sequence[str], external_id: str, *, field: str) -> OrderLookup:
    if len(candidates) == 1:
        return OrderLookup(order=candidates[0])
    preferred = [order for order in candidates if order.source_name in set(source_names)]
    if len(preferred) == 1:
        return OrderLookup(order=preferred[0])
    names = ", ".join(sorted(order.order_id for order in (preferred or candidates)))
    return OrderLookup(
        problem=(
            f"orders {names} all have {field} {external_id!r}: set the channel's source names "
            "to say which sales channel it covers"
        )
    )


def order_name_forms(external_id: str) -> set[str]:
    """The order names an external id may stand for: `#1001` and `1001` both mean the order named `#1001` (or, in a
    store that names orders without the sign, `1001`)."""
    bare = external_id.strip().lstrip("#").strip()
    return {f"#{bare}", bare} if bare else set()


def orders_for_external_ids(
    *, store: Store, external_ids: Iterable[str], source_names: Sequence[str] = ()
) -> dict[str, OrderLookup]:
    """For each external id that fits a mirrored order: that order (or why it is ambiguous). At most three
    queries: sourceIdentifier, then orderId for the rest, then the order name for what is still left."""
    return _lookup(store=store, external_ids=external_ids, source_names=source_names, load=_orders)


def order_keys_for_external_ids(
    *, store: Store, external_ids: Iterable[str], source_names: Sequence[str] = ()
) -> dict[str, OrderLookup]:
    """orders_for_external_ids with each order found as an OrderKey (a tuple of the columns matching reads)."""
    return _lookup(store=store, external_ids=external_ids, source_names=source_names, load=_order_keys)


def _orders(queryset: QuerySet[Order]) -> Iterable[Order]:
    return queryset


def _order_keys(queryset: QuerySet[Order]) -> Iterable[OrderKey]:
    return map(OrderKey._make, queryset.values_list(*ORDER_KEY_COLUMNS))


def _lookup(
    *, store: Store, external_ids: Iterable[str], source_names: Sequence[str],
    load: Callable[[QuerySet[Order]], Iterable[_Found]],
) -> dict[str, OrderLookup]:
    wanted = {external_id for external_id in external_ids if external_id}
    if not wanted:
        return {}
    by_source: dict[str, list[_Found]] = defaultdict(list)
    for order in load(Order.objects.filter(AnyOf(F("source_identifier"), sorted(wanted)), store=store).order_by("pk")):
        by_source[order.source_identifier].append(order)
    found = {
        external_id: _pick(orders, source_names, external_id, field="sourceIdentifier")
        for external_id, orders in by_source.items()
    }
    rest = wanted - set(found)
    if rest:
        for order in load(Order.objects.filter(AnyOf(F("order_id"), sorted(rest)), store=store)):
            found[order.order_id] = OrderLookup(order=order)
    rest = wanted - set(found)
    if rest:
        forms = {external_id: order_name_forms(external_id) for external_id in rest}
        names = set().union(*forms.values())
        by_name: dict[str, list[_Found]] = defaultdict(list)
        if names:
            for order in load(Order.objects.filter(AnyOf(F("name"), sorted(names)), store=store).order_by("pk")):
                by_name[order.name].append(order)
        for external_id, its_forms in forms.items():
            candidates = [order for name in sorted(its_forms) for order in by_name.get(name, [])]
            if candidates:
                found[external_id] = _pick(candidates, source_names, external_id, field="the name")
    return found


# What waiting_keys_for reads of an order: load at least these (`.only(*ORDER_KEY_FIELDS)`).
ORDER_KEY_FIELDS = ("pk", "order_id", "source_identifier", "name")


def waiting_keys_for(orders: Iterable[Order]) -> set[str]:
    """The external ids under which records may be waiting for these orders: orderId, sourceIdentifier, and the
    name with and without '#'. Orders loaded without their name get it in one query, not one each."""
    orders = list(orders)
    unloaded = {order.pk for order in orders if "name" in order.get_deferred_fields()}
    names = dict(Order.objects.filter(pk__in=unloaded).values_list("pk", "name")) if unloaded else {}
    names.update((order.pk, order.name) for order in orders if order.pk not in unloaded)
    keys: set[str] = set()
    for order in orders:
        keys.add(order.order_id)
        if order.source_identifier:
            keys.add(order.source_identifier)
        if names.get(order.pk):
            keys |= order_name_forms(names[order.pk])
    return keys


# --- line items ----------------------------------------------------------------------------------------------


@dataclass
class Allocation:
    """What one record puts in its shipment: quantities added per line, and the lines' totals afterwards."""

    added: dict[int, int] = field(default_factory=dict)  # line item pk -> quantity this record adds
    totals: dict[int, int] = field(default_factory=dict)  # line item pk -> quantity in the shipment afterwards

    @property
    def adds_anything(self) -> bool:
        return any(self.added.values())


def _as_int(value: object) -> int:
    try:
        return max(0, int(str(value)))
    except (TypeError, ValueError):
        return 0


class LedgerLine(NamedTuple):
    """What matching reads of an order's line item (a tuple: a batch reads thousands)."""

    pk: int
    order_id: int
    line_item_id: str
    sku: str
    quantity: int
    fulfillable_quantity: int | None
    requires_shipping: bool | None


LEDGER_LINE_COLUMNS = ("pk", "order_id", "line_item_id", "sku", "quantity", "fulfillable_quantity",
                       "requires_shipping")


class OrderLedger:
    """The items of one (locked) order and what its live shipments already hold, kept current as records match."""

    def __init__(
        self,
        order: Order | LockedOrder,
        lines: Sequence[LedgerLine],
        held: dict[str, dict[int, int]],
        genstore_fulfilled: dict[str, dict[str, int]] | None = None,
        voided: Iterable[str] = (),
    ) -> None:
        self.order = order
        self.lines = list(lines)
        self.held = held  # tracking number -> line item pk -> quantity, live shipments only
        # Genstore's fulfillments: normalized tracking number ("" when none) -> Genstore line item id -> quantity.
        self.genstore_fulfilled = genstore_fulfilled or {}
        # The numbers of the order's voided channel labels: their Genstore fulfillments are going to be cancelled.
        self.voided = set(voided)
        self._by_pk = {line.pk: line for line in self.lines}
        self._by_line_item_id = {line.line_item_id: line for line in self.lines}
        self._by_sku: dict[str, list[LedgerLine]] = defaultdict(list)
        self._by_sku_folded: dict[str, list[LedgerLine]] = defaultdict(list)
        for line in self.lines:
            if line.sku:
                self._by_sku[line.sku].append(line)
                self._by_sku_folded[line.sku.casefold()].append(line)

    @classmethod
    def load(cls, orders: Sequence[Order | LockedOrder]) -> dict[int, OrderLedger]:
        """Ledgers for many orders in four queries, whatever their number."""
        pks = [order.pk for order in orders]
        lines: dict[int, list[LedgerLine]] = defaultdict(list)
        for line in map(LedgerLine._make, LineItem.objects.filter(AnyOf(F("order_id"), pks)).order_by("pk")
                        .values_list(*LEDGER_LINE_COLUMNS)):
            lines[line.order_id].append(line)
        held: dict[int, dict[str, dict[int, int]]] = defaultdict(lambda: defaultdict(dict))
        rows = (
            ShipmentLine.objects.filter(AnyOf(F("line_item__order_id"), pks))
            .exclude(shipment__status=CANCELLED)
            .order_by()
            .values_list("line_item__order_id", "shipment__tracking_number", "line_item_id", "quantity")
        )
        for order_id, number, line_pk, quantity in rows:
            held[order_id][number][line_pk] = quantity
        fulfilled: dict[int, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
        for order_id, number, items in (
            GenstoreFulfillment.objects.filter(AnyOf(F("order_id"), pks))
            .exclude(status__in=DEAD_FULFILLMENT_STATUSES)
            .order_by()
            .values_list("order_id", "tracking_number", "line_items")
        ):
            for item in items if isinstance(items, list) else ():
                if isinstance(item, dict) and item.get("id") is not None:
                    quantity = _as_int(item.get("quantity"))
                    fulfilled[order_id][normalize(number or "")][str(item["id"])] += quantity
        # The same labels fulfillment.services.push.label_voided calls voided: it cancels their fulfillments.
        voided: dict[int, set[str]] = defaultdict(set)
        for order_id, number in (
            Shipment.objects.filter(AnyOf(F("order_id"), pks), status=CANCELLED)
            .exclude(source=Shipment.Source.GENSTORE)
            .order_by()
            .values_list("order_id", "tracking_number")
        ):
            voided[order_id].add(number)
        return {
            order.pk: cls(
                order, lines[order.pk], dict(held[order.pk]), {k: dict(v) for k, v in fulfilled[order.pk].items()},
                voided[order.pk],
            )
            for order in orders
        }

    # -- what is left --

    def _held_elsewhere(self, line: LedgerLine, tracking_number: str) -> int:
        return sum(lines.get(line.pk, 0) for number, lines in self.held.items() if number != tracking_number)

    def held_in(self, tracking_number: str, line: LedgerLine) -> int:
        return self.held.get(tracking_number, {}).get(line.pk, 0)

    def _fulfilled_on_genstore(self, line: LedgerLine) -> tuple[int, int]:
        """(all of this line in live Genstore fulfillments, the part shipped under numbers we do not track).

        A voided label's fulfillment is in the first (it is why fulfillableQuantity is down) but ships nothing:
        its cancel is owed, and runs before the push of whatever takes its items."""
        ours = set(self.held)
        total = outside = 0
        for number, items in self.genstore_fulfilled.items():
            quantity = items.get(line.line_item_id, 0)
            total += quantity
            if number not in ours and number not in self.voided:
                outside += quantity
        return total, outside

    def left_to_ship(self, line: LedgerLine, tracking_number: str) -> int:
        """What another parcel may still take of this line (what `tracking_number` holds already excluded)."""
        fulfilled_total, fulfilled_outside = self._fulfilled_on_genstore(line)
        unexplained = 0
        if line.fulfillable_quantity is not None:
            unexplained = max(0, line.quantity - line.fulfillable_quantity - fulfilled_total)
        left = (
            line.quantity
            - self._held_elsewhere(line, tracking_number)
            - self.held_in(tracking_number, line)
            - fulfilled_outside
            - unexplained
        )
        return max(0, left)

    # -- allocation --

    def _lines_for(self, ref: LineRef) -> list[LedgerLine]:
        if ref.line_item_id and ref.line_item_id in self._by_line_item_id:
            return [self._by_line_item_id[ref.line_item_id]]
        if ref.sku:
            return self._by_sku.get(ref.sku) or self._by_sku_folded.get(ref.sku.casefold()) or []
        return []

    def _describe(self, ref: LineRef) -> str:
        return f"line item {ref.line_item_id}" if ref.line_item_id and not ref.sku else f"sku {ref.sku}"

    def allocate(self, *, tracking_number: str, refs: Sequence[LineRef]) -> Allocation:
        """The items a record puts in the parcel `tracking_number`; MatchProblem when it asks for too much."""
        order_label = self.order.order_id
        allocation = Allocation()

        def holds(line: LedgerLine) -> int:
            return self.held_in(tracking_number, line) + allocation.added.get(line.pk, 0)

        def left(line: LedgerLine) -> int:
            return self.left_to_ship(line, tracking_number) - allocation.added.get(line.pk, 0)

        def add(line: LedgerLine, quantity: int) -> None:
            if quantity > 0:
                allocation.added[line.pk] = allocation.added.get(line.pk, 0) + quantity

        if not refs:
            shippable = [line for line in self.lines if line.requires_shipping is not False]
            if not shippable:
                raise MatchProblem(f"order {order_label} has no items to ship")
            for line in shippable:
                add(line, left(line))
            if not allocation.adds_anything and not any(holds(line) for line in shippable):
                raise MatchProblem(f"nothing left to ship on order {order_label}: every item already has tracking")
        for ref in refs:
            lines = self._lines_for(ref)
            if not lines:
                what = f"line item {ref.line_item_id}" if ref.line_item_id and not ref.sku else f"sku {ref.sku!r}"
                if ref.line_item_id and ref.sku:
                    what = f"line item {ref.line_item_id} or sku {ref.sku!r}"
                raise MatchProblem(f"order {order_label} has no {what}")
            label = self._describe(ref)
            already = sum(holds(line) for line in lines)
            available = sum(left(line) for line in lines)
            if ref.quantity is None:
                if available == 0 and already == 0:
                    raise MatchProblem(f"nothing left to ship of {label} on order {order_label}")
                for line in lines:
                    add(line, left(line))
                continue
            wanted = ref.quantity - already
            if wanted <= 0:
                continue  # the parcel already holds that many: a repeat
            if wanted > available:
                ordered = sum(line.quantity for line in lines)
                in_parcel = f"; {already} already in this parcel" if already else ""
                raise MatchProblem(
                    f"quantity {ref.quantity} of {label} is more than is left to ship on order {order_label} "
                    f"({available} left of {ordered} ordered{in_parcel})"
                )
            for line in lines:
                take = min(wanted, left(line))
                add(line, take)
                wanted -= take
                if wanted == 0:
                    break
        allocation.totals = {
            line.pk: holds(line) for line in self.lines if line.pk in allocation.added
        }
        return allocation

    def commit(self, tracking_number: str, allocation: Allocation) -> None:
        """Count an allocation as held (after its shipment was written)."""
        held = self.held.setdefault(tracking_number, {})
        held.update(allocation.totals)

    def release(self, tracking_number: str) -> None:
        """A parcel was voided: its items are free again (its Genstore fulfillment, if any, is being cancelled)."""
        self.held.pop(tracking_number, None)
        self.voided.add(tracking_number)

    def line(self, pk: int) -> LedgerLine:
        return self._by_pk[pk]


def allotted_json(ledger: OrderLedger, allocation: Allocation) -> list[dict[str, object]]:
    return [
        {"lineItemId": ledger.line(pk).line_item_id, "sku": ledger.line(pk).sku, "added": quantity,
         "inShipment": allocation.totals.get(pk, quantity)}
        for pk, quantity in allocation.added.items()
    ]


class LockedOrder(NamedTuple):
    """What matching reads of an order it holds locked (`lock_orders`): never the mirrored payload."""

    pk: int
    store_id: int
    order_id: str
    cancelled_at: datetime | None

    @property
    def is_cancelled(self) -> bool:
        return self.cancelled_at is not None


def lock_orders(order_pks: Iterable[int]) -> list[LockedOrder]:
    """Lock these orders' rows for the rest of the transaction, in the order every writer of orders locks them
    (store, then orderId in code-point order: the order upsert and the unified status' oma.core.bulk.rows_update),
    so an import waits for a sweep page or a status refresh sharing its orders instead of deadlocking with it.
    FOR NO KEY UPDATE: nothing here changes an order's key, and rows inserted meanwhile that refer to these orders
    (push intents, e-mails, event snapshots: a KEY SHARE each) need not wait for the batch."""
    pks = sorted(set(order_pks))
    if not pks:
        return []
    order_id = Collate("order_id", "C") if connection.vendor == "postgresql" else F("order_id")
    return list(map(LockedOrder._make, (
        Order.objects.select_for_update(of=("self",), no_key=True).filter(AnyOf(F("pk"), pks))
        .order_by("store_id", order_id)
        .values_list(*LockedOrder._fields)
    )))
