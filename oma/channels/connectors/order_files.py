"""Order files: what a merchant downloads from another channel, read into `ExternalOrderInput`s. Pure (no database).

Three formats, recognised by their header (`detect_format`), one row per line item:
- generic CSV: order, created_at, currency, email, phone, sku, title, variant_title, quantity, price (the unit
  price), shipping_price (the order's), tax (the line's), name, address1, address2, city, province_code, zip,
  country_code; also line_item_id (the channel's own line id). Comma, semicolon, tab or pipe separated.
- Amazon's order report flat file (tab-separated, unquoted; Amazon's other columns are ignored): order-id,
  order-item-id, purchase-date, buyer-email, buyer-name, buyer-phone-number, sku, product-name,
  quantity-purchased, currency, item-price, item-tax, shipping-price, shipping-tax, recipient-name,
  ship-address-1..3, ship-city, ship-state, ship-postal-code, ship-country, ship-phone-number. item-price is the
  LINE's total: the unit price is item-price / quantity rounded half-even to the cent (so price x quantity may
  differ from Amazon's figure by under a cent a unit; Amazon's own figure stays in `raw`). item-tax is kept as
  the line's tax; the lines' shipping-price are summed into the order's shipping price and their item-tax and
  shipping-tax into its total tax.
- eBay's orders report CSV: a blank first row, the header, then Order Number, Sale Date ("Nov-01-26", also with a
  time and a US zone: "Nov-01-26 10:12:13 PST"), Buyer Email, Buyer Name, Ship To Name/Phone/Address 1/Address
  2/City/State/Zip/Country (a name: "United States"), Item Number, Transaction ID, Item Title, Custom Label (the
  SKU), Variation Details, Quantity, Sold For (the unit price) and Shipping And Handling (the order's), money with
  a currency symbol ("$12.34", "£", "€", "US $", "C $", "AU $"; no symbol: USD; eBay reports have no currency
  column). A row without Item Number, Item Title and Custom Label is a multi-item order's summary row: it gives
  the order's values (its Shipping And Handling is the order's), not a line. Blank rows and the trailing
  "N record(s) downloaded" and "Seller ID" lines are skipped.

Rows with the same order id make one order, wherever they are in the file. The order's values (date, currency,
email, phone, name, shipping address; shipping price in generic and eBay files) are the first ones its rows give:
a row may leave them blank, but two rows of one order that give different ones reject it. Required: an order id,
the order's date (ISO 8601 in generic and Amazon files: a time without an offset is UTC) and currency (generic,
Amazon), and on every row a sku, a title, a quantity of at least 1 and a price. Country names become ISO codes;
US, Canadian and Australian region names become their codes; an email that is not one (marketplaces write
placeholders) is left out rather than failing the order.

A bad row is reported with its physical line number (from 1, the header and eBay's blank first row included) and
the first thing wrong with it. An order with any bad row is not created at all (a partial order in Genstore would
be wrong): its good rows are reported too, naming the line that sank it. Everything else is kept.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from oma.channels.connectors.base import AddressInput, ExternalOrderInput, ExternalOrderLineInput
from oma.channels.connectors.countries import CURRENCY_CODES, country_code, province_code
from oma.channels.connectors.csv import CsvFileError, canonical_header, decode_csv, parse_shipped_at

FORMATS: tuple[str, ...] = ("generic", "amazon", "ebay")

MAX_CELL_CHARS = 1_000
MAX_QUANTITY = 100_000
MAX_LINES_PER_ORDER = 1_000
MAX_AMOUNT = Decimal("999999999999.99")  # the database's DECIMAL(14, 2)
CENT = Decimal("0.01")
EBAY_DEFAULT_CURRENCY = "USD"
# An order date further ahead than this is a typo (a wrong year, day and month swapped); older than 2000 too.
FUTURE_TOLERANCE = timedelta(days=1)
EARLIEST_ORDER_AT = datetime(2000, 1, 1, tzinfo=UTC)
MAX_UTC_OFFSET = timedelta(hours=14)  # no place is further from UTC (Kiribati)
# Field limits: the database columns' (oma.channels.models.ExternalOrder / ExternalOrderLine).
LIMITS: dict[str, int] = {
    "order": 128, "sku": 128, "title": 512, "variant_title": 512, "line_id": 128, "email": 254, "phone": 64,
    "name": 255,
}


class OrderFileError(ValueError):
    """The file as a whole cannot be read as an order file (encoding, no known header, too many rows)."""


@dataclass(frozen=True)
class RejectedRow:
    line: int  # physical line in the file, from 1, the header included
    reason: str
    values: dict[str, str]  # the row's non-blank cells by the file's column names
    order_ref: str  # the row's order id ("" when it has none)


@dataclass
class ParsedOrderFile:
    file_format: str
    orders: list[ExternalOrderInput]
    rejected: list[RejectedRow]
    rows: int  # data rows read (blank and trailing summary lines not counted)
    encoding: str = "utf-8"
    ignored_columns: list[str] = field(default_factory=list)  # header names this format does not use


# --- the formats' columns ------------------------------------------------------------------------------------

# Our names of the values a row can hold (a format maps its header names to these).
ORDER, LINE_ID, CREATED_AT, CURRENCY, EMAIL, PHONE, NAME = (
    "order", "line_id", "created_at", "currency", "email", "phone", "name"
)
SKU, TITLE, VARIANT_TITLE, QUANTITY, PRICE, LINE_TOTAL, TAX = (
    "sku", "title", "variant_title", "quantity", "price", "line_total", "tax"
)
SHIPPING_PRICE, LINE_SHIPPING, SHIPPING_TAX = "shipping_price", "line_shipping", "shipping_tax"
SHIP_NAME, ADDRESS1, ADDRESS2, ADDRESS3, CITY, PROVINCE, ZIP, COUNTRY, SHIP_PHONE = (
    "ship_name", "address1", "address2", "address3", "city", "province", "zip", "country", "ship_phone"
)
ITEM_NUMBER, TRANSACTION_ID = "item_number", "transaction_id"


@dataclass(frozen=True)
class _Layout:
    file_format: str
    label: str  # with its article, for sentences
    columns: Mapping[str, str]  # canonical header name (csv.canonical_header) -> our name
    required_headers: tuple[str, ...]  # the columns the header must have, as the format writes them

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(self.columns[canonical_header(name)] for name in self.required_headers)


_GENERIC = _Layout(
    "generic",
    "a generic order CSV",
    {
        "order": ORDER, "order_id": ORDER, "order_number": ORDER, "external_order_id": ORDER,
        "line_item_id": LINE_ID, "created_at": CREATED_AT, "order_date": CREATED_AT, "processed_at": CREATED_AT,
        "currency": CURRENCY, "email": EMAIL, "phone": PHONE, "sku": SKU, "title": TITLE, "product_name": TITLE,
        "variant_title": VARIANT_TITLE, "variant": VARIANT_TITLE, "quantity": QUANTITY, "qty": QUANTITY,
        "price": PRICE, "unit_price": PRICE, "shipping_price": SHIPPING_PRICE, "shipping": SHIPPING_PRICE,
        "tax": TAX, "name": NAME, "address1": ADDRESS1, "address_1": ADDRESS1, "address2": ADDRESS2,
        "address_2": ADDRESS2, "city": CITY, "province_code": PROVINCE, "province": PROVINCE, "state": PROVINCE,
        "zip": ZIP, "postal_code": ZIP, "postcode": ZIP, "country_code": COUNTRY, "country": COUNTRY,
    },
    ("order", "created_at", "currency", "sku", "title", "quantity", "price"),
)
_AMAZON = _Layout(
    "amazon",
    "an Amazon order report",
    {
        "order_id": ORDER, "order_item_id": LINE_ID, "purchase_date": CREATED_AT, "buyer_email": EMAIL,
        "buyer_name": NAME, "buyer_phone_number": PHONE, "sku": SKU, "product_name": TITLE,
        "quantity_purchased": QUANTITY, "currency": CURRENCY, "item_price": LINE_TOTAL, "item_tax": TAX,
        "shipping_price": LINE_SHIPPING, "shipping_tax": SHIPPING_TAX, "recipient_name": SHIP_NAME,
        "ship_address_1": ADDRESS1, "ship_address_2": ADDRESS2, "ship_address_3": ADDRESS3, "ship_city": CITY,
        "ship_state": PROVINCE, "ship_postal_code": ZIP, "ship_country": COUNTRY, "ship_phone_number": SHIP_PHONE,
    },
    ("order-id", "order-item-id", "purchase-date", "sku", "product-name", "quantity-purchased", "currency",
     "item-price"),
)
_EBAY = _Layout(
    "ebay",
    "an eBay orders report",
    {
        "order_number": ORDER, "sale_date": CREATED_AT, "buyer_email": EMAIL, "buyer_name": NAME,
        "ship_to_name": SHIP_NAME, "ship_to_phone": SHIP_PHONE, "ship_to_address_1": ADDRESS1,
        "ship_to_address_2": ADDRESS2, "ship_to_city": CITY, "ship_to_state": PROVINCE, "ship_to_zip": ZIP,
        "ship_to_country": COUNTRY, "item_number": ITEM_NUMBER, "transaction_id": TRANSACTION_ID,
        "item_title": TITLE, "custom_label": SKU, "variation_details": VARIANT_TITLE, "quantity": QUANTITY,
        "sold_for": PRICE, "shipping_and_handling": SHIPPING_PRICE,
    },
    ("Order Number", "Sale Date", "Item Title", "Custom Label", "Quantity", "Sold For"),
)
# Tried in this order: the marketplaces' headers are more specific than the generic one.
_LAYOUTS: dict[str, _Layout] = {"amazon": _AMAZON, "ebay": _EBAY, "generic": _GENERIC}
_DELIMITERS = (",", "\t", ";", "|")
_EBAY_TRAILER = re.compile(r"^\s*(?:[0-9][0-9,]*\s+record\(s\)\s+downloaded|seller\s+id\b)", re.IGNORECASE)


def _expected_headers() -> str:
    return "; ".join(f"{layout.label}: {', '.join(layout.required_headers)}" for layout in (_GENERIC, _AMAZON, _EBAY))


# --- reading the file ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Header:
    layout: _Layout
    line: int
    delimiter: str
    names: list[str]  # as written
    positions: dict[str, int]  # our name -> column index
    ignored: list[str]

    def label(self, column: str) -> str:
        """How this file names one of our columns, for reasons."""
        return self.names[self.positions[column]].strip() if column in self.positions else column


def _decode(data: bytes) -> tuple[str, str]:
    try:
        return decode_csv(data)
    except CsvFileError as exc:
        raise OrderFileError(str(exc)) from exc


def _first_line(text: str) -> tuple[int, str]:
    """The header: the first line with something in it (eBay's report starts with a blank row)."""
    for number, line in enumerate(io.StringIO(text, newline=""), start=1):
        if line.strip(" \t\r\n,;|\""):
            return number, line.rstrip("\r\n")
    raise OrderFileError("the file is empty: it needs a header line naming its columns, then one row per item")


def _read_header(text: str, file_format: str) -> _Header:
    if file_format != "auto" and file_format not in _LAYOUTS:
        raise OrderFileError(f"unknown order file format {file_format!r}: use auto, {', '.join(FORMATS)}")
    number, line = _first_line(text)
    layouts = list(_LAYOUTS.values()) if file_format == "auto" else [_LAYOUTS[file_format]]
    widest: list[str] = []
    for delimiter in _DELIMITERS:
        names = next(csv.reader([line], delimiter=delimiter))
        widest = names if len(names) > len(widest) else widest
        canonical = [canonical_header(name) for name in names]
        for layout in layouts:
            if all(any(layout.columns.get(name) == column for name in canonical) for column in layout.required):
                return _header(layout, number, delimiter, names)
    found = ", ".join(repr(name.strip()) for name in widest[:12] if name.strip()) or "nothing"
    if file_format == "auto":
        raise OrderFileError(f"line {number}: not a known order file header (found {found}); expected "
                             f"the columns of {_expected_headers()}")
    layout = _LAYOUTS[file_format]
    present = {layout.columns.get(canonical_header(name)) for name in widest}
    missing = [name for name, column in zip(layout.required_headers, layout.required, strict=True)
               if column not in present]
    raise OrderFileError(f"line {number}: the header of {layout.label} needs the columns "
                         f"{', '.join(missing)} (found {found})")


def _header(layout: _Layout, line: int, delimiter: str, names: list[str]) -> _Header:
    positions: dict[str, int] = {}
    ignored: list[str] = []
    for index, name in enumerate(names):
        column = layout.columns.get(canonical_header(name))
        if column is None:
            if name.strip():
                ignored.append(name.strip())
        elif column in positions:
            raise OrderFileError(f"line {line}: two columns mean the same ({names[positions[column]].strip()!r} "
                                 f"and {name.strip()!r}): keep one")
        else:
            positions[column] = index
    return _Header(layout, line, delimiter, names, positions, ignored)


def _data_rows(text: str, header: _Header) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of every row after the header that has something in it."""
    # Amazon's flat file is not quoted: a product name may hold a '"' anywhere.
    unquoted = header.layout is _AMAZON and header.delimiter == "\t"
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=header.delimiter, strict=False,
                        quoting=csv.QUOTE_NONE if unquoted else csv.QUOTE_MINIMAL)
    try:
        while reader.line_num < header.line:
            next(reader)
        next_line = reader.line_num + 1
        for cells in reader:
            line, next_line = next_line, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue  # blank lines and spacer rows are not rows
            if header.layout is _EBAY and _EBAY_TRAILER.match(" ".join(cell.strip() for cell in cells if cell.strip())):
                continue  # "12 record(s) downloaded, from ... to ..." (in one cell or two), "Seller ID: ..."
            yield line, cells
    except csv.Error as exc:
        raise OrderFileError(f"line {reader.line_num}: the file is not valid CSV ({exc})") from exc


def detect_format(data: bytes) -> str:
    """Which of FORMATS the file is, by its header; OrderFileError when none fits."""
    text, _ = _decode(data)
    return _read_header(text, "auto").layout.file_format


def parse_order_file(
    data: bytes, *, file_format: str = "auto", max_rows: int = 100_000, now: datetime | None = None
) -> ParsedOrderFile:
    """Read every row and group them into orders. OrderFileError when the file as a whole is unusable."""
    text, encoding = _decode(data)
    header = _read_header(text, file_format)
    now = now or datetime.now(tz=UTC)
    rows: list[_Row] = []
    for line, cells in _data_rows(text, header):
        if len(rows) >= max_rows:
            raise OrderFileError(f"the file has more than {max_rows:,} rows: split it into smaller files")
        rows.append(_read_row(header, line, cells, now=now))
    orders, rejected = _assemble(rows, header)
    return ParsedOrderFile(
        file_format=header.layout.file_format, orders=orders, rejected=rejected, rows=len(rows), encoding=encoding,
        ignored_columns=header.ignored,
    )


# --- one row ---------------------------------------------------------------------------------------------------


class _Reject(Exception):
    """The first thing wrong with a row: its reason."""


@dataclass(frozen=True)
class _OrderFacts:
    """The order-level values one row gives (blank: the row does not say)."""

    created_at: datetime | None
    currency: str
    email: str
    phone: str
    name: str
    shipping_address: AddressInput | None
    shipping_price: Decimal | None  # generic and eBay: the order's


_FACT_LABELS = {
    "created_at": "order date", "currency": "currency", "email": "email", "phone": "phone", "name": "buyer name",
    "shipping_address": "shipping address", "shipping_price": "shipping price",
}


@dataclass
class _Row:
    line: int
    values: dict[str, str]
    order_id: str = ""
    problem: str = ""
    facts: _OrderFacts | None = None
    item: ExternalOrderLineInput | None = None  # None: an eBay summary row (or a bad row)
    line_shipping: Decimal | None = None  # Amazon: summed into the order's shipping price
    shipping_tax: Decimal | None = None  # Amazon: added to the order's total tax


class _Cells:
    """A row's values by our names, and how to name each in a reason (the file's own column name)."""

    def __init__(self, header: _Header, cells: list[str]) -> None:
        self.header = header
        self.values = {name: (cells[i].strip() if i < len(cells) else "") for name, i in header.positions.items()}

    def label(self, name: str) -> str:
        return self.header.label(name)

    def text(self, name: str, *, limit: int | None = None) -> str:
        value = self.values.get(name, "")
        if limit is not None and len(value) > limit:
            raise _Reject(f"{self.label(name)} is longer than {limit} characters")
        return value

    def required(self, name: str, *, limit: int | None = None) -> str:
        value = self.text(name, limit=limit)
        if not value:
            raise _Reject(f"{self.label(name)} is empty (required)")
        return value

    def amount(self, name: str) -> Decimal | None:
        return self.required_amount(name) if self.text(name) else None

    def required_amount(self, name: str) -> Decimal:
        value = self.required(name)
        try:
            return parse_amount(value)
        except ValueError as exc:
            raise _Reject(f"{self.label(name)} {_excerpt(value)} {exc}") from None

    def quantity(self) -> int:
        value = self.required(QUANTITY)
        try:
            return parse_quantity(value)
        except ValueError as exc:
            raise _Reject(f"{self.label(QUANTITY)} {_excerpt(value)} {exc}") from None

    def created_at(self, now: datetime, parse: Callable[[str], datetime | None]) -> datetime | None:
        value = self.text(CREATED_AT)
        if not value:
            return None
        try:
            return check_order_time(parse(value), now=now)
        except ValueError as exc:
            raise _Reject(f"{self.label(CREATED_AT)} {_excerpt(value)} {exc}") from None

    def currency(self) -> str:
        value = self.text(CURRENCY)
        if not value:
            return ""
        try:
            return parse_currency(value)
        except ValueError as exc:
            raise _Reject(f"{self.label(CURRENCY)} {_excerpt(value)} {exc}") from None

    def email(self) -> str:
        value = self.text(EMAIL, limit=LIMITS["email"])
        return value if looks_like_email(value) else ""

    def address(self, *, name: str, phone: str) -> AddressInput | None:
        street = [part for part in (self.text(ADDRESS1), self.text(ADDRESS2), self.text(ADDRESS3)) if part]
        address = AddressInput(
            name=name, address1=street[0] if street else "", address2=", ".join(street[1:]), city=self.text(CITY),
            province_code=self.text(PROVINCE), zip=self.text(ZIP), country_code=self.text(COUNTRY), phone=phone,
        )
        if not address.as_json():
            return None
        try:
            return normalized_address(address)
        except ValueError as exc:
            raise _Reject(f"{self.label(COUNTRY)} {_excerpt(address.country_code)} {exc}") from None


def _read_row(header: _Header, line: int, cells: list[str], *, now: datetime) -> _Row:
    names = header.names
    values = {names[i].strip() or f"column {i + 1}": cell.strip() for i, cell in enumerate(cells[:len(names)])
              if cell.strip()}
    row = _Row(line=line, values=values)
    extra = [cell for cell in cells[len(names):] if cell.strip()]
    if extra:
        row.order_id = _order_ref(header, cells)
        row.problem = (f"row has {len(cells)} fields but the header has {len(names)} "
                       "(a value containing the delimiter must be quoted)")
        return row
    long_cell = next((i for i, cell in enumerate(cells) if len(cell) > MAX_CELL_CHARS), None)
    if long_cell is not None:
        row.order_id = _order_ref(header, cells)
        column = names[long_cell].strip() if long_cell < len(names) else ""
        row.problem = f"{column or f'column {long_cell + 1}'} is longer than {MAX_CELL_CHARS:,} characters"
        return row
    reader = {"generic": _generic_row, "amazon": _amazon_row, "ebay": _ebay_row}[header.layout.file_format]
    cells_ = _Cells(header, cells)
    row.order_id = cells_.text(ORDER)[:LIMITS["order"]]
    try:
        reader(cells_, row, now)
    except _Reject as exc:
        row.problem = str(exc)
        row.item = None
    return row


def _order_ref(header: _Header, cells: list[str]) -> str:
    index = header.positions[ORDER]
    return cells[index].strip()[:LIMITS["order"]] if index < len(cells) else ""


def _item(cells: _Cells, *, price: Decimal, quantity: int, tax: Decimal | None, line_id: str) -> ExternalOrderLineInput:
    variant = cells.text(VARIANT_TITLE, limit=LIMITS["variant_title"])
    if cells.header.layout is _EBAY:
        variant = variant.removeprefix("[").removesuffix("]")  # eBay's Variation Details: "[Color:Sage,Size:M]"
    return ExternalOrderLineInput(
        sku=cells.values[SKU], title=cells.values[TITLE], quantity=quantity, price=price, tax=tax,
        variant_title=variant, external_line_id=line_id,
    )


def _generic_row(cells: _Cells, row: _Row, now: datetime) -> None:
    row.order_id = cells.required(ORDER, limit=LIMITS["order"])
    created_at = cells.created_at(now, parse_shipped_at)
    currency = cells.currency()
    cells.required(SKU, limit=LIMITS["sku"])
    cells.required(TITLE, limit=LIMITS["title"])
    quantity = cells.quantity()
    price = cells.required_amount(PRICE)
    row.item = _item(cells, price=price, quantity=quantity, tax=cells.amount(TAX),
                     line_id=cells.text(LINE_ID, limit=LIMITS["line_id"]))
    name = cells.text(NAME, limit=LIMITS["name"])
    row.facts = _OrderFacts(
        created_at=created_at, currency=currency, email=cells.email(), phone=cells.text(PHONE, limit=LIMITS["phone"]),
        name=name, shipping_address=cells.address(name=name, phone=""), shipping_price=cells.amount(SHIPPING_PRICE),
    )


def _amazon_row(cells: _Cells, row: _Row, now: datetime) -> None:
    row.order_id = cells.required(ORDER, limit=LIMITS["order"])
    line_id = cells.text(LINE_ID, limit=LIMITS["line_id"])
    created_at = cells.created_at(now, parse_shipped_at)
    currency = cells.currency()
    cells.required(SKU, limit=LIMITS["sku"])
    cells.required(TITLE, limit=LIMITS["title"])
    quantity = cells.quantity()
    line_total = cells.required_amount(LINE_TOTAL)
    unit_price = (line_total / quantity).quantize(CENT, rounding=ROUND_HALF_EVEN)
    row.item = _item(cells, price=unit_price, quantity=quantity, tax=cells.amount(TAX), line_id=line_id)
    row.line_shipping = cells.amount(LINE_SHIPPING)
    row.shipping_tax = cells.amount(SHIPPING_TAX)
    ship_name = cells.text(SHIP_NAME, limit=LIMITS["name"])
    row.facts = _OrderFacts(
        created_at=created_at, currency=currency, email=cells.email(), phone=cells.text(PHONE, limit=LIMITS["phone"]),
        name=cells.text(NAME, limit=LIMITS["name"]) or ship_name,
        shipping_address=cells.address(name=ship_name, phone=cells.text(SHIP_PHONE, limit=LIMITS["phone"])),
        shipping_price=None,
    )


def _ebay_row(cells: _Cells, row: _Row, now: datetime) -> None:
    row.order_id = cells.required(ORDER, limit=LIMITS["order"])
    created_at = cells.created_at(now, parse_ebay_date)
    currency = ""
    if cells.text(SKU) or cells.text(TITLE) or cells.text(ITEM_NUMBER):  # else a multi-item order's summary row
        cells.required(SKU, limit=LIMITS["sku"])
        cells.required(TITLE, limit=LIMITS["title"])
        quantity = cells.quantity()
        price, currency = _ebay_money(cells, PRICE)
        item_number, transaction = cells.text(ITEM_NUMBER), cells.text(TRANSACTION_ID)
        # eBay's own line id (the Trading API's OrderLineItemID) is "<item number>-<transaction id>".
        line_id = f"{item_number}-{transaction}" if item_number and transaction else item_number
        if len(line_id) > LIMITS["line_id"]:
            raise _Reject(f"{cells.label(ITEM_NUMBER)} is longer than {LIMITS['line_id']} characters")
        row.item = _item(cells, price=price, quantity=quantity, tax=None, line_id=line_id)
    shipping, shipping_currency = _ebay_money(cells, SHIPPING_PRICE) if cells.text(SHIPPING_PRICE) else (None, "")
    if currency and shipping_currency and currency != shipping_currency:
        raise _Reject(f"{cells.label(PRICE)} is in {currency} but {cells.label(SHIPPING_PRICE)} in {shipping_currency}")
    ship_name = cells.text(SHIP_NAME, limit=LIMITS["name"])
    row.facts = _OrderFacts(
        created_at=created_at, currency=currency or shipping_currency, email=cells.email(), phone="",
        name=cells.text(NAME, limit=LIMITS["name"]) or ship_name,
        shipping_address=cells.address(name=ship_name, phone=cells.text(SHIP_PHONE, limit=LIMITS["phone"])),
        shipping_price=shipping,
    )


def _ebay_money(cells: _Cells, name: str) -> tuple[Decimal, str]:
    value = cells.required(name)
    try:
        return parse_money(value)
    except ValueError as exc:
        raise _Reject(f"{cells.label(name)} {_excerpt(value)} {exc}") from None


# --- rows into orders ------------------------------------------------------------------------------------------


def _assemble(rows: list[_Row], header: _Header) -> tuple[list[ExternalOrderInput], list[RejectedRow]]:
    groups: dict[str, list[_Row]] = {}
    rejected: list[RejectedRow] = []
    for row in rows:
        if not row.order_id:  # no order to join: reported on its own
            rejected.append(RejectedRow(line=row.line, reason=row.problem or "order is empty", values=row.values,
                                        order_ref=""))
            continue
        groups.setdefault(row.order_id, []).append(row)
    orders: list[ExternalOrderInput] = []
    for order_id, group in groups.items():
        blame = _row_problem(group) or _order_problem(order_id, group, header)
        if blame is None:
            orders.append(_build_order(order_id, group, header.layout))
            continue
        bad_line, reason = blame
        for row in group:
            own = row.problem or (reason if row.line == bad_line else "")
            rejected.append(RejectedRow(
                line=row.line, values=row.values, order_ref=order_id,
                reason=own or f"order {order_id} has a rejected row at line {bad_line}",
            ))
    rejected.sort(key=lambda row: row.line)
    return orders, rejected


def _row_problem(group: list[_Row]) -> tuple[int, str] | None:
    bad = next((row for row in group if row.problem), None)
    return (bad.line, bad.problem) if bad else None


def _order_problem(order_id: str, group: list[_Row], header: _Header) -> tuple[int, str] | None:
    """What is wrong with the order as a whole: (the line to blame, the reason), or None."""
    layout = header.layout
    items = [row for row in group if row.item is not None]
    if not items:  # eBay summary rows only
        return group[0].line, (f"no item on this row ({header.label(TITLE)} and {header.label(SKU)} are empty) "
                               f"and no other row of order {order_id} has one")
    if len(items) > MAX_LINES_PER_ORDER:
        return items[MAX_LINES_PER_ORDER].line, f"order {order_id} has more than {MAX_LINES_PER_ORDER:,} line items"
    seen: dict[str, int] = {}
    for row in items:
        assert row.item is not None
        line_id = row.item.external_line_id
        if line_id and line_id in seen:
            return row.line, f"line item {line_id!r} of order {order_id} is also at line {seen[line_id]}"
        seen.setdefault(line_id, row.line)
    disagreement = _disagreement(group, layout)
    if disagreement:
        return disagreement
    first = group[0]
    facts = _merged_facts(group, layout)
    if facts.created_at is None:
        return first.line, f"{header.label(CREATED_AT)} is empty (required)"
    if not facts.currency and layout is not _EBAY:
        return first.line, f"{header.label(CURRENCY)} is empty (required)"
    return None


def _fact_sources(group: list[_Row], layout: _Layout, fact: str) -> list[_Row]:
    if fact == "shipping_price" and layout is _EBAY:
        summaries = [row for row in group if row.item is None]
        if summaries:  # a multi-item order's summary row holds the order's shipping; item rows may hold their own
            return summaries
    return group


def _disagreement(group: list[_Row], layout: _Layout) -> tuple[int, str] | None:
    for fact, label in _FACT_LABELS.items():
        first: tuple[int, object] | None = None
        for row in _fact_sources(group, layout, fact):
            value = getattr(row.facts, fact)
            if value in (None, ""):
                continue
            if first is None:
                first = (row.line, value)
            elif value != first[1]:
                return row.line, (f"the {label} {_shown(value)} differs from {_shown(first[1])} at line {first[0]}, "
                                  "in the same order")
    return None


def _merged_facts(group: list[_Row], layout: _Layout) -> _OrderFacts:
    """Each order-level value from the first row that gives it (_disagreement made sure no row says otherwise)."""
    facts = [row.facts for row in group if row.facts is not None]
    shipping = [row.facts for row in _fact_sources(group, layout, "shipping_price") if row.facts is not None]
    return _OrderFacts(
        created_at=next((f.created_at for f in facts if f.created_at is not None), None),
        currency=next((f.currency for f in facts if f.currency), ""),
        email=next((f.email for f in facts if f.email), ""),
        phone=next((f.phone for f in facts if f.phone), ""),
        name=next((f.name for f in facts if f.name), ""),
        shipping_address=next((f.shipping_address for f in facts if f.shipping_address is not None), None),
        shipping_price=next((f.shipping_price for f in shipping if f.shipping_price is not None), None),
    )


def _sum(values: Iterable[Decimal | None]) -> Decimal | None:
    present = [value for value in values if value is not None]
    return sum(present, Decimal("0.00")) if present else None


def _build_order(order_id: str, group: list[_Row], layout: _Layout) -> ExternalOrderInput:
    facts = _merged_facts(group, layout)
    assert facts.created_at is not None
    items = [row.item for row in group if row.item is not None]
    shipping = facts.shipping_price
    if layout is _AMAZON:
        shipping = _sum(row.line_shipping for row in group)
    total_tax = _sum([*(item.tax for item in items), *(row.shipping_tax for row in group)])
    return ExternalOrderInput(
        external_order_id=order_id,
        created_at=facts.created_at,
        currency=facts.currency or EBAY_DEFAULT_CURRENCY,
        lines=tuple(items),
        email=facts.email,
        phone=facts.phone,
        name=facts.name,
        shipping_address=facts.shipping_address,
        shipping_price=shipping,
        total_tax=total_tax,
        source_ref=line_ranges([row.line for row in group]),
        raw={"fileFormat": layout.file_format, "rows": [{"line": row.line, "values": row.values} for row in group]},
    )


def _shown(value: object) -> str:
    if isinstance(value, datetime):
        return repr(value.isoformat())
    if isinstance(value, AddressInput):
        return _excerpt(", ".join(value.as_json().values()), limit=60)
    return _excerpt(str(value))


def _excerpt(value: str, limit: int = 20) -> str:
    """A value quoted in a reason: a long one is cut (the row's values stay in the report whole)."""
    return repr(value) if len(value) <= limit else f"{value[:limit]!r}… ({len(value)} characters)"


def line_ranges(lines: Iterable[int]) -> str:
    """[7] -> "line 7"; [7, 9, 10] -> "lines 7, 9-10"."""
    numbers = sorted(set(lines))
    parts: list[str] = []
    start = previous = numbers[0]
    for number in [*numbers[1:], None]:
        if number is not None and number == previous + 1:
            previous = number
            continue
        parts.append(str(start) if start == previous else f"{start}-{previous}")
        if number is not None:
            start = previous = number
    return ("line " if len(numbers) == 1 else "lines ") + ", ".join(parts)


# --- values, shared with the channel webhook's order object ----------------------------------------------------

_QUANTITY = re.compile(r"[0-9]{1,18}")  # ASCII only: int() also reads '١٢', '+1' and '1_000'
_AMOUNT = re.compile(r"-?(?:[0-9]{1,18}(?:\.[0-9]{1,18})?|\.[0-9]{1,18})")
_CURRENCY_WORD = re.compile(r"[A-Za-z]{3}")


def parse_quantity(text: str, *, limit: int = MAX_QUANTITY) -> int:
    """A count of items: ASCII digits, at least 1. ValueError's message completes "<column> '<value>' ..."."""
    text = text.strip()
    if not _QUANTITY.fullmatch(text) or int(text) < 1:
        raise ValueError("is not a whole number of at least 1")
    if int(text) > limit:
        raise ValueError(f"is more than {limit:,}")
    return int(text)


def parse_amount(text: str) -> Decimal:
    """A plain decimal amount ("12.34", "12", "0.5"), to the cent. ValueError's message completes the sentence."""
    text = text.strip()
    if not _AMOUNT.fullmatch(text):
        if _AMOUNT.fullmatch(text.replace(",", ".", 1)):
            raise ValueError("has a decimal comma: write amounts with a dot (12.34)")
        raise ValueError("is not an amount (a decimal number like 12.34)")
    try:
        value = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern admits only what Decimal reads
        raise ValueError("is not an amount (a decimal number like 12.34)") from None
    if value < 0:
        raise ValueError("is negative")
    if value != value.quantize(CENT, rounding=ROUND_HALF_EVEN):
        raise ValueError("has more than 2 decimal places")
    if value > MAX_AMOUNT:
        raise ValueError("is too large")
    return value.quantize(CENT)


# Currency marks eBay reports put before or after amounts (upper case, spaces removed) -> ISO 4217; an ISO code
# ("EUR 12,34") is a mark too. Marks several currencies share ("¥", "kr") are not guessed.
_CURRENCY_SYMBOLS: dict[str, str] = {
    "$": "USD", "US$": "USD", "C$": "CAD", "CA$": "CAD", "AU$": "AUD", "A$": "AUD", "NZ$": "NZD", "HK$": "HKD",
    "S$": "SGD", "£": "GBP", "€": "EUR",
}
_MONEY = re.compile(r"(?P<prefix>[^0-9.,-]*?)\s*(?P<amount>-?[0-9][0-9.,]*)\s*(?P<suffix>[^0-9.,]*)")
_THOUSANDS_COMMAS = re.compile(r"[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?")
# "1.234,56" or "1.234.567"; a lone "12.345" stays a decimal point (and is refused for its third decimal).
_THOUSANDS_DOTS = re.compile(r"[0-9]{1,3}(?:(?:\.[0-9]{3})+,[0-9]+|(?:\.[0-9]{3}){2,})")


def parse_money(text: str) -> tuple[Decimal, str]:
    """An amount as marketplaces print it ("$1,234.56", "US $12.34", "£3.00", "12,34 €", "EUR 12,34") and its
    currency ("" when it has no mark). ValueError's message completes "<column> '<value>' ..."."""
    match = _MONEY.fullmatch(text.strip())
    if not match or (match["prefix"].strip() and match["suffix"].strip()):
        raise ValueError("is not an amount (like $12.34)")
    mark = (match["prefix"] + match["suffix"]).replace(" ", "").upper()
    currency = _CURRENCY_SYMBOLS.get(mark) or (mark if mark in CURRENCY_CODES else "")
    if mark and not currency:
        raise ValueError(f"has a currency mark {mark!r} we do not know")
    amount = match["amount"]
    if _THOUSANDS_COMMAS.fullmatch(amount):
        amount = amount.replace(",", "")
    elif _THOUSANDS_DOTS.fullmatch(amount) or ("," in amount and "." not in amount):
        amount = amount.replace(".", "").replace(",", ".")  # "1.234,56" and "12,34": a decimal comma
    return parse_amount(amount), currency


def parse_currency(text: str) -> str:
    code = text.strip().upper()
    if not _CURRENCY_WORD.fullmatch(code) or code not in CURRENCY_CODES:
        raise ValueError("is not an ISO 4217 currency code (like USD)")
    return code


def check_order_time(value: datetime | None, *, now: datetime) -> datetime:
    """The order time in UTC, if plausible. ValueError's message completes "<column> '<value>' ..."."""
    if value is None:
        raise ValueError("is not a date: use ISO 8601, e.g. 2026-11-01T10:12:13Z")
    offset = value.utcoffset()
    if offset is not None and abs(offset) > MAX_UTC_OFFSET:
        raise ValueError("has a UTC offset beyond ±14:00, which no place uses")
    if value > now + FUTURE_TOLERANCE:
        raise ValueError("is in the future")
    if value < EARLIEST_ORDER_AT:
        raise ValueError("is before 2000: check the year")
    return value.astimezone(UTC)  # one form for one instant: a later copy of the order compares equal


_MONTHS = {name: number for number, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}
# The zones eBay prints after a time (its US reports use Pacific time).
_ZONES: dict[str, int] = {
    "UTC": 0, "GMT": 0, "Z": 0, "PST": -8, "PDT": -7, "MST": -7, "MDT": -6, "CST": -6, "CDT": -5, "EST": -5,
    "EDT": -4, "AKST": -9, "AKDT": -8, "HST": -10, "BST": 1, "CET": 1, "CEST": 2, "AEST": 10, "AEDT": 11,
}
_EBAY_DATE = re.compile(
    r"(?:(?P<month>[A-Za-z]{3})-(?P<day>[0-9]{1,2})|(?P<day2>[0-9]{1,2})-(?P<month2>[A-Za-z]{3}))"
    r"-(?P<year>[0-9]{2}|[0-9]{4})"
    r"(?:\s+(?P<hour>[0-9]{1,2}):(?P<minute>[0-9]{2})(?::(?P<second>[0-9]{2}))?(?:\s*(?P<zone>[A-Za-z]{1,5}))?)?"
)


def parse_ebay_date(text: str) -> datetime | None:
    """eBay's "Nov-01-26" or "Nov-01-26 10:12:13 PST" (also "01-Nov-26", four-digit years, or ISO 8601);
    a date or a time without a zone is UTC. None when it is not a date."""
    match = _EBAY_DATE.fullmatch(text.strip())
    if not match:
        return parse_shipped_at(text)
    month = _MONTHS.get((match["month"] or match["month2"]).lower())
    zone = _ZONES.get((match["zone"] or "UTC").upper())
    if month is None or zone is None:
        return None
    year = int(match["year"]) + (2000 if len(match["year"]) == 2 else 0)
    try:
        return datetime(
            year, month, int(match["day"] or match["day2"]), int(match["hour"] or 0), int(match["minute"] or 0),
            int(match["second"] or 0), tzinfo=timezone(timedelta(hours=zone)),
        )
    except ValueError:  # Feb-30, 25:00
        return None


_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def looks_like_email(value: str) -> bool:
    """Something@somewhere.tld: enough to tell an address from a marketplace's placeholder."""
    return bool(_EMAIL.fullmatch(value))


def normalized_address(address: AddressInput) -> AddressInput:
    """The address with its country as an ISO code and a US/CA/AU region as its code; ValueError (completing
    "<country> '<value>' ...") when the country is not one we know."""
    country = country_code(address.country_code)
    if country is None:
        raise ValueError("is not a country we know: use its ISO code (like US) or its English name")
    return AddressInput(
        name=address.name, company=address.company, address1=address.address1, address2=address.address2,
        city=address.city, province_code=province_code(address.province_code, country=country), zip=address.zip,
        country_code=country, phone=address.phone,
    )
