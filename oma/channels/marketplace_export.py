"""Tracking back to the marketplace: the shipments of a channel's external orders in the marketplace's own upload
format. Today Amazon's shipping-confirmation flat file (`export_shipments --format amazon-confirm`, and the
download on the channel's admin page).

One row per shipped external line per shipment: the external order (ExternalOrder) became a Genstore order, that
order's shipments (tracking.Shipment) carry line items (ShipmentLine -> LineItem), and each line item is the
external line (ExternalOrderLine) whose `genstore_line_item_id` it is, else the one with its SKU. `order-item-id`
is the channel's own line id (Amazon's order-item-id), `quantity` what that parcel carries of it. A shipment that
names no items carries what the order's other shipments leave of every line. Voided labels are left out.

Rows are read a chunk of shipments at a time (a constant number of queries per chunk), so a channel's whole
history streams in bounded memory.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from django.db.models import F, Min, OuterRef, Prefetch, Q, Subquery
from django.db.models.functions import Coalesce

from oma.channels.models import Channel, ExternalOrder, ExternalOrderLine, ExternalShipment
from oma.core.csv_cells import safe_cell
from oma.genstore.carriers import tracking_company_for
from oma.orders.models import Order
from tracking.models import Shipment, ShipmentLine

FORMATS = ("amazon-confirm",)

AMAZON_CONFIRM_COLUMNS: tuple[str, ...] = (
    "order-id", "order-item-id", "quantity", "ship-date", "carrier-code", "carrier-name", "tracking-number",
    "ship-method",
)
# Amazon's carrier-code list names these by code; any other carrier is "Other" with its name in carrier-name.
AMAZON_CARRIER_CODES: dict[str, str] = {
    "ups": "UPS",
    "fedex": "FedEx",
    "usps": "USPS",
    "dhl": "DHL",
    "dhl_express": "DHL",
    "dhl_ecommerce": "DHL",
}
AMAZON_OTHER_CARRIER = "Other"
VOIDED_STATUS = "cancelled"  # tracking's status of a voided label
SHIPMENTS_PER_CHUNK = 500


Shipped = tuple[ExternalOrderLine, int]  # an external line and how many of it a parcel carries


@dataclass(frozen=True, slots=True)
class ConfirmationRow:
    order_id: str  # the channel's order id
    order_item_id: str  # the channel's line id
    quantity: int
    ship_date: date
    carrier_code: str
    carrier_name: str
    tracking_number: str
    ship_method: str = ""

    def cells(self) -> tuple[str, ...]:
        return (self.order_id, self.order_item_id, str(self.quantity), self.ship_date.isoformat(), self.carrier_code,
                self.carrier_name, self.tracking_number, self.ship_method)


def amazon_carrier(carrier: str, tracking_number: str) -> tuple[str, str]:
    """(carrier-code, carrier-name) for one of our carrier codes; carrier-name only for "Other"."""
    code = AMAZON_CARRIER_CODES.get((carrier or "").strip().lower())
    if code:
        return code, ""
    return AMAZON_OTHER_CARRIER, tracking_company_for(carrier, tracking_number)


def channel_shipments(*, channel: Channel, since: datetime | None = None) -> Iterator[Shipment]:
    """The live shipments of the channel's external orders (those OMA learned of at or after `since`), oldest
    first, with `ship_at` (when it left: the channel's or a platform's shipped time, else when OMA learned of it)."""
    external = ExternalOrder.objects.filter(channel=channel).exclude(genstore_order_id="")
    orders = Order.objects.filter(
        Q(pk__in=external.filter(order__isnull=False).values("order_id"))
        | Q(store_id=channel.store_id, order_id__in=external.values("genstore_order_id"))
    )
    shipped_at = (
        ExternalShipment.objects.filter(shipment=OuterRef("pk"), shipped_at__isnull=False)
        .values("shipment").annotate(first=Min("shipped_at")).values("first")
    )
    shipments = (
        Shipment.objects.filter(store_id=channel.store_id, order__in=orders.values("pk"))
        .exclude(status=VOIDED_STATUS)
        .annotate(ship_at=Coalesce(Subquery(shipped_at), "created_at"))
        .order_by("created_at", "pk")
    )
    if since is not None:
        shipments = shipments.filter(created_at__gte=since)
    last: tuple[datetime, int] | None = None
    while True:  # keyset pages: a shipment arriving meanwhile never shifts one into another page twice
        page = shipments
        if last is not None:
            page = page.filter(Q(created_at__gt=last[0]) | Q(created_at=last[0], pk__gt=last[1]))
        chunk = list(page[:SHIPMENTS_PER_CHUNK])
        yield from chunk
        if len(chunk) < SHIPMENTS_PER_CHUNK:
            return
        last = (chunk[-1].created_at, chunk[-1].pk)


def amazon_confirmation_rows(*, channel: Channel, since: datetime | None = None) -> Iterator[ConfirmationRow]:
    """Every (shipment, external line) pair of the channel's shipped external orders, as Amazon wants them."""
    chunk: list[Shipment] = []
    for shipment in channel_shipments(channel=channel, since=since):
        chunk.append(shipment)
        if len(chunk) == SHIPMENTS_PER_CHUNK:
            yield from _rows_for(channel, chunk)
            chunk = []
    if chunk:
        yield from _rows_for(channel, chunk)


def _rows_for(channel: Channel, shipments: Sequence[Shipment]) -> Iterator[ConfirmationRow]:
    order_pks = {s.order_id for s in shipments if s.order_id is not None}
    orders = {o.pk: o for o in Order.objects.filter(pk__in=order_pks).only("pk", "order_id")}
    external_by_order = _external_orders_for(channel, orders.values())
    # Every shipment of these orders (not only this chunk's): a shipment naming no items carries what the others
    # leave, and those may be older than `since`.
    lines_by_shipment: dict[int, list[ShipmentLine]] = defaultdict(list)
    shipped_elsewhere: dict[int, list[ShipmentLine]] = defaultdict(list)  # order pk -> lines of all its shipments
    for line in (
        ShipmentLine.objects.filter(shipment__order_id__in=order_pks)
        .exclude(shipment__status=VOIDED_STATUS)
        .select_related("line_item")
        .annotate(order_pk=F("shipment__order_id"))
        .order_by("pk")
    ):
        lines_by_shipment[line.shipment_id].append(line)
        shipped_elsewhere[line.order_pk].append(line)
    for shipment in shipments:
        external = external_by_order.get(shipment.order_id or 0)
        if external is None:
            continue
        code, name = amazon_carrier(shipment.carrier, shipment.tracking_number)
        ship_date = shipment.ship_at.date()  # type: ignore[attr-defined]
        own = lines_by_shipment.get(shipment.pk, [])
        pairs = _pairs_named(external, own) if own else _pairs_left(external, shipped_elsewhere[shipment.order_id or 0])
        for external_line, quantity in pairs:
            yield ConfirmationRow(
                order_id=external.external_order_id,
                order_item_id=external_line.external_line_id,
                quantity=quantity,
                ship_date=ship_date,
                carrier_code=code,
                carrier_name=name,
                tracking_number=shipment.tracking_number,
            )


def _external_orders_for(channel: Channel, orders: Iterable[Order]) -> dict[int, ExternalOrder]:
    """The channel's external order of each order pk (linked by the mirror row, else by the Genstore order id)."""
    by_genstore_id = {order.order_id: order.pk for order in orders}
    found: dict[int, ExternalOrder] = {}
    rows = (
        ExternalOrder.objects.filter(channel=channel)
        .filter(Q(order_id__in=list(by_genstore_id.values())) | Q(genstore_order_id__in=list(by_genstore_id)))
        .only("pk", "external_order_id", "order_id", "genstore_order_id")
        .prefetch_related(Prefetch("lines", queryset=ExternalOrderLine.objects.order_by("position")))
    )
    for external in rows:
        order_pk = external.order_id or by_genstore_id.get(external.genstore_order_id)
        if order_pk is not None:
            found.setdefault(order_pk, external)
    return found


def _line_for(external: ExternalOrder, shipment_line: ShipmentLine) -> ExternalOrderLine | None:
    lines = list(external.lines.all())
    line_item = shipment_line.line_item
    by_id = next((line for line in lines if line.genstore_line_item_id
                  and line.genstore_line_item_id == line_item.line_item_id), None)
    if by_id is not None:
        return by_id
    sku = (line_item.sku or "").casefold()
    return next((line for line in lines if sku and line.sku.casefold() == sku), None)


def _pairs_named(external: ExternalOrder, shipment_lines: Sequence[ShipmentLine]) -> list[Shipped]:
    pairs = []
    for shipment_line in shipment_lines:
        line = _line_for(external, shipment_line)
        if line is not None and shipment_line.quantity > 0:
            pairs.append((line, shipment_line.quantity))
    return pairs


def _pairs_left(external: ExternalOrder, others: Sequence[ShipmentLine]) -> list[Shipped]:
    """A shipment naming no items: every external line, less what the order's other shipments carry of it."""
    shipped: dict[int, int] = defaultdict(int)
    for shipment_line in others:
        line = _line_for(external, shipment_line)
        if line is not None:
            shipped[line.pk] += shipment_line.quantity
    pairs = []
    for line in external.lines.all():
        left = line.quantity - shipped[line.pk]
        if left > 0:
            pairs.append((line, left))
    return pairs


def _cell(value: str) -> str:
    # Tabs and line breaks would shift or split the row; a formula prefix runs in a spreadsheet (oma.core.csv_cells).
    return safe_cell(" ".join(value.replace("\t", " ").splitlines()))


def amazon_confirmation_lines(rows: Iterable[ConfirmationRow]) -> Iterator[str]:
    """Amazon's shipping-confirmation flat file, a line at a time (tab-separated, header first, "\\n" endings)."""
    yield "\t".join(AMAZON_CONFIRM_COLUMNS) + "\n"
    for row in rows:
        yield "\t".join(_cell(cell) for cell in row.cells()) + "\n"
