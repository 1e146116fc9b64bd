"""CSV files of tracking numbers: reading the file and checking each row on its own.

Columns (header names are matched case-insensitively; common spellings are accepted):
  order            required: the Genstore orderId, the order's name (#1001 or 1001) or the channel's order id
                   (Genstore's sourceIdentifier)
  tracking_number  required
  carrier          optional: a code (ups, fedex, usps, dhl, ...) or a carrier's name; blank: detected
  sku | line_item_id  optional: which item the row ships; blank: every item still left to ship
  quantity         optional: how many of that item; blank: all of it still left to ship
  shipped_at       optional: ISO 8601 date or date-time (without an offset it is read as UTC)
  status           optional: the label's status; voided, void, cancelled or canceled (any case) withdraws the
                   tracking number (the order may then be blank); any other value, or none, is an ordinary row

Rows sharing an order and a tracking number make one shipment holding several items. This module only reads and
checks rows; whether the order exists and what is left to ship are the import's business (csv_import.py).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from oma.channels.connectors.base import (
    VOIDED_STATUSES,
    Connector,
    ExternalShipmentRecord,
    LineRef,
    carrier_code,
    tracking_number_problem,
)
from tracking.numbers import normalize

COLUMNS: tuple[str, ...] = (
    "order", "tracking_number", "carrier", "sku", "line_item_id", "quantity", "shipped_at", "status",
)
REQUIRED_COLUMNS: tuple[str, ...] = ("order", "tracking_number")

# Header spellings seen in exports from marketplaces, 3PLs and spreadsheets -> our column names.
_HEADER_ALIASES: dict[str, str] = {
    **{name: name for name in COLUMNS},
    "order_id": "order",
    "orderid": "order",
    "order_number": "order",
    "order_no": "order",
    "order_name": "order",
    "source_identifier": "order",
    "external_order_id": "order",
    "tracking": "tracking_number",
    "tracking_no": "tracking_number",
    "trackingnumber": "tracking_number",
    "tracking_code": "tracking_number",
    "tracking_id": "tracking_number",
    "carrier_code": "carrier",
    "carrier_name": "carrier",
    "courier": "carrier",
    "tracking_company": "carrier",
    "shipping_carrier": "carrier",
    "variant_sku": "sku",
    "item_sku": "sku",
    "line_item": "line_item_id",
    "lineitemid": "line_item_id",
    "line_id": "line_item_id",
    "qty": "quantity",
    "quantity_shipped": "quantity",
    "ship_date": "shipped_at",
    "shipped_date": "shipped_at",
    "shipped_on": "shipped_at",
    "shipdate": "shipped_at",
    "date_shipped": "shipped_at",
    "shipment_status": "status",
    "label_status": "status",
    "shipping_status": "status",
}
_HEADER_SEPARATORS = re.compile(r"[\s\-.]+")
_DELIMITERS = (",", ";", "\t", "|")

MAX_FIELD_LENGTHS: dict[str, int] = {
    "order": 128, "sku": 128, "line_item_id": 64, "carrier": 64, "tracking_number": 128, "shipped_at": 64,
    "status": 64,
}
MAX_QUANTITY = 100_000
# ASCII only: int() also reads '١٢', '１２', '+1' and '1_000', and raises past 4300 digits.
_ASCII_DIGITS = re.compile(r"[0-9]+")
# A shipped_at further ahead than this is a typo (a wrong year, day and month swapped).
FUTURE_TOLERANCE = timedelta(days=1)
# Nothing tracked today shipped earlier; older dates are typos (and year 1 leaves the datetime range in UTC).
EARLIEST_SHIPPED_AT = datetime(2000, 1, 1, tzinfo=UTC)
# No place is further from UTC (Kiribati +14:00); PostgreSQL refuses offsets past 15:59.
MAX_UTC_OFFSET = timedelta(hours=14)


class CsvFileError(ValueError):
    """The file as a whole cannot be read as a tracking CSV; nothing of it is imported."""


@dataclass(frozen=True, slots=True)
class CsvRow:
    """One data row: its line number in the file, its values by column, and the record or the reason it is bad."""

    line: int
    values: dict[str, str]
    record: ExternalShipmentRecord | None = None
    problem: str | None = None


@dataclass
class ParsedCsv:
    rows: list[CsvRow] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)  # our names of the columns found
    ignored_columns: list[str] = field(default_factory=list)  # header names we do not use
    encoding: str = "utf-8"
    delimiter: str = ","


def decode_csv(data: bytes) -> tuple[str, str]:
    """The text of an uploaded file and the encoding used: UTF-8 (with or without BOM), else Windows-1252."""
    if data[:4] == b"PK\x03\x04" or data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        raise CsvFileError("this is a spreadsheet file (.xlsx/.xls), not CSV: save it as CSV (comma separated) first")
    if b"\x00" in data[:4096]:
        if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
            try:
                return data.decode("utf-16"), "utf-16"
            except UnicodeDecodeError as exc:
                raise CsvFileError(f"the file is not valid UTF-16 text: {exc}") from exc
        raise CsvFileError("this is not a text file: a CSV file must be plain text")
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        # Excel on Windows saves CSV in the ANSI code page.
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError as exc:
        raise CsvFileError(
            f"the file is neither UTF-8 nor Windows-1252 text (byte {exc.start}): save it as UTF-8"
        ) from exc


def canonical_header(name: str) -> str:
    return _HEADER_SEPARATORS.sub("_", name.strip().strip('"').lower()).strip("_")


def _read_header(text: str) -> tuple[str, list[str]]:
    """Pick the delimiter that yields the required columns in the first line."""
    first_line = next(iter(text.splitlines()), "")
    if not first_line.strip():
        raise CsvFileError("the file is empty: the first line must be the header (order,tracking_number,...)")
    best: tuple[str, list[str]] | None = None
    for delimiter in _DELIMITERS:
        header = next(csv.reader([first_line], delimiter=delimiter))
        names = [_HEADER_ALIASES.get(canonical_header(cell), "") for cell in header]
        if all(column in names for column in REQUIRED_COLUMNS):
            return delimiter, header
        if best is None or len(header) > len(best[1]):
            best = (delimiter, header)
    assert best is not None
    found = ", ".join(repr(cell.strip()) for cell in best[1] if cell.strip()) or "nothing"
    missing = [column for column in REQUIRED_COLUMNS if column not in
               [_HEADER_ALIASES.get(canonical_header(cell), "") for cell in best[1]]]
    raise CsvFileError(
        f"the header must name the columns {' and '.join(missing)} (found {found}); "
        f"columns: {', '.join(COLUMNS)}"
    )


def parse_tracking_csv(data: bytes, *, max_rows: int = 100_000, now: datetime | None = None) -> ParsedCsv:
    """Read the file and check every row on its own. Raises CsvFileError when the file as a whole is unusable."""
    text, encoding = decode_csv(data)
    delimiter, header = _read_header(text)
    positions: dict[str, int] = {}
    ignored: list[str] = []
    for index, cell in enumerate(header):
        column = _HEADER_ALIASES.get(canonical_header(cell))
        if column is None:
            if cell.strip():
                ignored.append(cell.strip())
            continue
        if column in positions:
            raise CsvFileError(
                f"two columns mean {column!r} ({header[positions[column]].strip()!r} and {cell.strip()!r}): keep one"
            )
        positions[column] = index
    parsed = ParsedCsv(
        columns=[c for c in COLUMNS if c in positions], ignored_columns=ignored, encoding=encoding, delimiter=delimiter
    )
    now = now or datetime.now(tz=UTC)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=False)
    try:
        next(reader)  # the header
        next_line = reader.line_num + 1
        for cells in reader:
            line, next_line = next_line, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue  # blank lines (trailing newlines, spacer rows) are not rows
            if len(parsed.rows) >= max_rows:
                raise CsvFileError(f"the file has more than {max_rows:,} rows: split it into smaller files")
            values = {column: (cells[i].strip() if i < len(cells) else "") for column, i in positions.items()}
            extra = [cell for cell in cells[len(header):] if cell.strip()]
            if extra:
                parsed.rows.append(CsvRow(line=line, values=values, problem=(
                    f"row has {len(cells)} fields but the header has {len(header)} "
                    "(a value containing the delimiter must be quoted)"
                )))
                continue
            parsed.rows.append(check_row(line=line, values=values, now=now))
    except csv.Error as exc:
        raise CsvFileError(f"line {reader.line_num}: the file is not valid CSV ({exc})") from exc
    return parsed


def check_row(*, line: int, values: dict[str, str], now: datetime) -> CsvRow:
    """Check one row on its own and build its record; the first problem found is the row's reason."""
    problem = _row_problem(values, now=now)
    if problem:
        return CsvRow(line=line, values=values, problem=problem)
    quantity = _quantity(values["quantity"]) if values.get("quantity") else None
    sku, line_item_id = values.get("sku", ""), values.get("line_item_id", "")
    lines = (LineRef(line_item_id=line_item_id, sku=sku, quantity=quantity),) if (sku or line_item_id) else ()
    status = values.get("status", "")
    record = ExternalShipmentRecord(
        external_order_id=values.get("order", ""),
        tracking_number=normalize(values["tracking_number"]),
        carrier=carrier_code(values.get("carrier", "")),
        lines=lines,
        shipped_at=parse_shipped_at(values.get("shipped_at", "")),
        status=status,
        voided=is_void_status(status),
        source_ref=f"line {line}",
    )
    return CsvRow(line=line, values=values, record=record)


def is_void_status(status: str) -> bool:
    """A status saying the label was voided (the words channel webhooks use); anything else is an ordinary row."""
    return status.strip().casefold() in VOIDED_STATUSES


def _row_problem(values: dict[str, str], *, now: datetime) -> str | None:
    for column in REQUIRED_COLUMNS:
        # A void names its label by the number: withdrawing it needs no order.
        if not values.get(column) and not (column == "order" and is_void_status(values.get("status", ""))):
            return f"{column} is empty (required)"
    for column, limit in MAX_FIELD_LENGTHS.items():
        if len(values.get(column, "")) > limit:
            return f"{column} is longer than {limit} characters"
    problem = tracking_number_problem(normalize(values["tracking_number"]))
    if problem:
        return problem
    quantity = values.get("quantity", "")
    if quantity:
        if not _ASCII_DIGITS.fullmatch(quantity) or _quantity(quantity) == 0:
            return f"quantity {_excerpt(quantity)} is not a whole number of at least 1"
        number = _quantity(quantity)
        if number is None or number > MAX_QUANTITY:
            return f"quantity {_excerpt(quantity)} is not plausible"
        if not (values.get("sku") or values.get("line_item_id")):
            return "quantity needs a sku or line_item_id saying which item it counts"
    shipped_at = values.get("shipped_at", "")
    if shipped_at:
        parsed = parse_shipped_at(shipped_at)
        if parsed is None:
            return f"shipped_at {shipped_at!r} is not a date: use ISO 8601, e.g. 2024-05-01 or 2024-05-01T14:30:00Z"
        offset = parsed.utcoffset()
        if offset is not None and abs(offset) > MAX_UTC_OFFSET:
            return f"shipped_at {shipped_at!r} has a UTC offset beyond ±14:00, which no place uses"
        if parsed > now + FUTURE_TOLERANCE:
            return f"shipped_at {shipped_at!r} is in the future"
        if parsed < EARLIEST_SHIPPED_AT:
            return f"shipped_at {shipped_at!r} is before 2000: check the year"
    return None


def _quantity(text: str) -> int | None:
    """The value of a string of ASCII digits; None when it has more digits than any plausible quantity."""
    significant = text.lstrip("0")
    return int(significant or "0") if len(significant) <= len(str(MAX_QUANTITY)) else None


def _excerpt(value: str, limit: int = 20) -> str:
    """A value quoted in a row's reason: a long one is cut (the row's values stay in the report whole)."""
    return repr(value) if len(value) <= limit else f"{value[:limit]!r}… ({len(value)} characters)"


def parse_shipped_at(value: str) -> datetime | None:
    """ISO 8601 date or date-time; a date-time without an offset is UTC, a date is midnight UTC."""
    value = value.strip()
    if not value:
        return None
    candidate = value.replace("/", "-")
    if candidate.endswith(("Z", "z")):
        candidate = candidate[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(candidate)
    except ValueError:
        try:
            parsed = datetime.combine(date.fromisoformat(candidate), time.min)
        except ValueError:
            return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


class CsvConnector(Connector):
    kind = "csv"
    label = "CSV upload"
    accepts_uploads = True


CONNECTOR = CsvConnector()
