"""Order files (generic CSV, Amazon's order report, eBay's orders report) read into external orders: pure, no DB."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from oma.channels.connectors.base import AddressInput
from oma.channels.connectors.countries import country_code, province_code
from oma.channels.connectors.order_files import (
    OrderFileError,
    ParsedOrderFile,
    detect_format,
    line_ranges,
    parse_ebay_date,
    parse_money,
    parse_order_file,
)

DATA = Path(__file__).parent / "data"
NOW = datetime(2026, 11, 5, 12, 0, tzinfo=UTC)
GENERIC_HEADER = [
    "order", "created_at", "currency", "email", "phone", "sku", "title", "variant_title", "quantity", "price",
    "shipping_price", "tax", "name", "address1", "address2", "city", "province_code", "zip", "country_code",
]


def sample(name: str) -> bytes:
    return (DATA / name).read_bytes()


def parse(data: bytes, **kwargs) -> ParsedOrderFile:
    return parse_order_file(data, now=NOW, **kwargs)


def generic_row(order: str = "A-1", **values: str) -> dict[str, str]:
    row = {"order": order, "created_at": "2026-11-01T10:00:00Z", "currency": "USD", "sku": "SKU-1",
           "title": "Thing", "quantity": "1", "price": "5.00"}
    row.update(values)
    return row


def generic_file(*rows: dict[str, str], header: list[str] = GENERIC_HEADER) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def reasons(parsed: ParsedOrderFile) -> dict[int, str]:
    return {row.line: row.reason for row in parsed.rejected}


# --- recognising the file ------------------------------------------------------------------------------------


def test_each_format_is_recognised_by_its_header():
    assert detect_format(sample("orders_generic.csv")) == "generic"
    assert detect_format(sample("amazon_orders.txt")) == "amazon"
    assert detect_format(sample("ebay_orders.csv")) == "ebay"
    # A generic file separated by semicolons (a European spreadsheet's CSV) is still generic.
    assert detect_format(sample("orders_generic.csv").replace(b",", b";")) == "generic"


def test_an_unknown_header_or_a_file_that_is_not_text_is_refused_as_a_whole():
    with pytest.raises(OrderFileError, match=r"line 1: not a known order file header \(found 'order', 'tracking'\)"
                                             r".*generic order CSV: order, created_at.*Amazon order report: order-id"
                                             ".*eBay orders report: Order Number"):
        detect_format(b"order,tracking\nA-1,1Z999\n")
    with pytest.raises(OrderFileError, match="empty"):
        parse(b"\n ,,\n")
    with pytest.raises(OrderFileError, match="spreadsheet"):
        parse(b"PK\x03\x04rest-of-a-zip")
    with pytest.raises(OrderFileError, match="unknown order file format 'shopify'"):
        parse(sample("orders_generic.csv"), file_format="shopify")


def test_a_named_format_must_match_the_header():
    with pytest.raises(OrderFileError, match="header of an Amazon order report needs the columns order-id, "
                                             "order-item-id, purchase-date, product-name, quantity-purchased, "
                                             r"item-price \(found 'order', 'created_at'"):
        parse(sample("orders_generic.csv"), file_format="amazon")
    assert parse(sample("amazon_orders.txt"), file_format="amazon").file_format == "amazon"


def test_two_columns_meaning_the_same_are_refused():
    data = generic_file(generic_row(), header=[*GENERIC_HEADER, "qty"])
    with pytest.raises(OrderFileError, match="two columns mean the same \\('quantity' and 'qty'\\)"):
        parse(data)


def test_more_rows_than_allowed_refuses_the_file():
    data = generic_file(*(generic_row(f"A-{n}") for n in range(3)))
    assert parse(data, max_rows=3).rows == 3
    with pytest.raises(OrderFileError, match="more than 2 rows"):
        parse(data, max_rows=2)


# --- the generic CSV -----------------------------------------------------------------------------------------


def test_generic_rows_of_one_order_make_one_order_wherever_they_are():
    parsed = parse(sample("orders_generic.csv"))
    assert (parsed.file_format, parsed.rows, parsed.rejected, parsed.ignored_columns) == ("generic", 3, [], [])
    first, second = parsed.orders
    assert first.external_order_id == "TT-5001" and first.source_ref == "lines 2, 4"
    assert [(line.sku, line.quantity, line.price, line.tax, line.variant_title) for line in first.lines] == [
        ("TEE-BLK-M", 2, Decimal("19.50"), Decimal("3.12"), "Black / M"),
        ("SOCK-3P", 1, Decimal("9.00"), Decimal("0.72"), ""),
    ]
    # shipping_price is the order's (both rows say 4.00); the lines' tax adds up to the order's.
    assert first.shipping_price == Decimal("4.00") and first.total_tax == Decimal("3.84")
    assert (first.created_at, first.currency, first.email, first.phone, first.name) == (
        datetime(2026, 11, 1, 8, tzinfo=UTC), "USD", "mia@example.com", "+1 555 0100", "Mia Chen")
    assert first.shipping_address == AddressInput(name="Mia Chen", address1="10 Market St", city="Denver",
                                                  province_code="CO", zip="80202", country_code="US")
    assert first.raw["rows"][1] == {"line": 4, "values": {
        "order": "TT-5001", "created_at": "2026-11-01T08:00:00Z", "currency": "USD", "email": "mia@example.com",
        "phone": "+1 555 0100", "sku": "SOCK-3P", "title": "Socks, 3 pack", "quantity": "1", "price": "9.00",
        "shipping_price": "4.00", "tax": "0.72", "name": "Mia Chen", "address1": "10 Market St", "city": "Denver",
        "province_code": "CO", "zip": "80202", "country_code": "US"}}
    # A time without an offset is UTC; a country's name becomes its code.
    assert second.created_at == datetime(2026, 11, 1, 9, 30, tzinfo=UTC) and second.currency == "EUR"
    assert second.shipping_address is not None and second.shipping_address.country_code == "DE"
    assert (second.shipping_price, second.total_tax, second.email, second.source_ref) == (None, None, "", "line 3")


def test_bom_crlf_and_windows_1252_files_read_the_same():
    plain = parse(sample("orders_generic.csv"))
    for variant in (
        b"\xef\xbb\xbf" + sample("orders_generic.csv").replace(b"\n", b"\r\n"),
        sample("orders_generic.csv").replace(b"Logo Tee", "Logo Tee café".encode("cp1252")),
    ):
        parsed = parse(variant)
        assert [order.source_ref for order in parsed.orders] == [order.source_ref for order in plain.orders]
        assert parsed.rejected == []
    assert parse(sample("orders_generic.csv").replace(b"Logo Tee", "Logo Tee café".encode("cp1252"))).orders[0] \
        .lines[0].title == "Logo Tee café"


def test_continuation_rows_may_leave_the_order_values_blank():
    parsed = parse(generic_file(
        generic_row(email="a@example.com", shipping_price="3.00", city="Lyon", country_code="France"),
        generic_row(created_at="", currency="", sku="SKU-2"),
    ))
    (order,) = parsed.orders
    assert order.email == "a@example.com" and order.currency == "USD" and order.shipping_price == Decimal("3.00")
    assert order.shipping_address == AddressInput(city="Lyon", country_code="FR")
    assert [line.sku for line in order.lines] == ["SKU-1", "SKU-2"]


REJECTIONS = [
    (dict(order=""), "order is empty (required)"),
    (dict(created_at="yesterday"), "created_at 'yesterday' is not a date: use ISO 8601"),
    (dict(created_at="2026-12-01T00:00:00Z"), "created_at '2026-12-01T00:00:00Z' is in the future"),
    (dict(created_at="1999-12-31"), "created_at '1999-12-31' is before 2000: check the year"),
    (dict(created_at="2026-11-01T10:00:00+15:00"), "has a UTC offset beyond ±14:00"),
    (dict(created_at=""), "created_at is empty (required)"),
    (dict(currency=""), "currency is empty (required)"),
    (dict(currency="DOLLARS"), "currency 'DOLLARS' is not an ISO 4217 currency code (like USD)"),
    (dict(currency="XYZ"), "currency 'XYZ' is not an ISO 4217 currency code"),
    (dict(sku=""), "sku is empty (required)"),
    (dict(sku="S" * 129), "sku is longer than 128 characters"),
    (dict(title=""), "title is empty (required)"),
    (dict(quantity=""), "quantity is empty (required)"),
    (dict(quantity="0"), "quantity '0' is not a whole number of at least 1"),
    (dict(quantity="1.5"), "quantity '1.5' is not a whole number of at least 1"),
    (dict(quantity="١٢"), "quantity '١٢' is not a whole number of at least 1"),
    (dict(quantity="100001"), "quantity '100001' is more than 100,000"),
    (dict(price=""), "price is empty (required)"),
    (dict(price="abc"), "price 'abc' is not an amount (a decimal number like 12.34)"),
    (dict(price="12.345"), "price '12.345' has more than 2 decimal places"),
    (dict(price="-1.00"), "price '-1.00' is negative"),
    (dict(price="12,50"), "price '12,50' has a decimal comma: write amounts with a dot (12.34)"),
    (dict(price="1" * 13), "is too large"),
    (dict(tax="x"), "tax 'x' is not an amount"),
    (dict(shipping_price="-2"), "shipping_price '-2' is negative"),
    (dict(country_code="Narnia"), "country_code 'Narnia' is not a country we know"),
    (dict(title="T" * 1001), "title is longer than 1,000 characters"),
]


@pytest.mark.parametrize(("values", "reason"), REJECTIONS, ids=[reason[:40] for _, reason in REJECTIONS])
def test_a_bad_row_is_reported_by_line_with_its_reason_and_other_orders_are_kept(values, reason):
    parsed = parse(generic_file(generic_row("GOOD-1"), {**generic_row("BAD-1"), **values}, generic_row("GOOD-2")))
    assert [order.external_order_id for order in parsed.orders] == ["GOOD-1", "GOOD-2"]
    (rejected,) = parsed.rejected
    assert rejected.line == 3 and reason in rejected.reason, rejected.reason
    assert rejected.order_ref == ("BAD-1" if values.get("order", "x") else "")
    assert rejected.values.get("order", "") == values.get("order", "BAD-1")


def test_an_order_with_a_bad_row_is_not_created_and_its_good_rows_say_why():
    parsed = parse(generic_file(
        generic_row("A-1"), generic_row("B-1"), generic_row("A-1", sku="SKU-2"),
        generic_row("A-1", sku="SKU-3", quantity="0"), generic_row("A-1", sku="SKU-4", price="x"),
    ))
    assert [order.external_order_id for order in parsed.orders] == ["B-1"]
    assert reasons(parsed) == {
        2: "order A-1 has a rejected row at line 5",
        4: "order A-1 has a rejected row at line 5",
        5: "quantity '0' is not a whole number of at least 1",
        6: "price 'x' is not an amount (a decimal number like 12.34)",
    }
    assert all(row.order_ref == "A-1" for row in parsed.rejected)


def test_rows_of_one_order_that_disagree_reject_it():
    parsed = parse(generic_file(
        generic_row("A-1", currency="USD"), generic_row("A-1", currency="EUR", sku="SKU-2"),
        generic_row("B-1", city="Paris", country_code="FR"), generic_row("B-1", city="Lyon", country_code="FR"),
    ))
    assert parsed.orders == []
    assert reasons(parsed) == {
        2: "order A-1 has a rejected row at line 3",
        3: "the currency 'EUR' differs from 'USD' at line 2, in the same order",
        4: "order B-1 has a rejected row at line 5",
        5: "the shipping address 'Lyon, FR' differs from 'Paris, FR' at line 4, in the same order",
    }


def test_a_row_with_more_fields_than_the_header_is_rejected():
    data = generic_file(generic_row()) + b"A-2,2026-11-01,USD,,,S,T,,1,2.00,,,,,,,,,,surplus\n"
    parsed = parse(data)
    assert reasons(parsed) == {3: "row has 20 fields but the header has 19 (a value containing the delimiter must "
                                  "be quoted)"}
    assert parsed.rejected[0].order_ref == "A-2" and len(parsed.orders) == 1


def test_blank_rows_are_skipped_and_line_numbers_stay_physical():
    data = generic_file(generic_row("A-1")) + b"\n,,,\n" + generic_file(generic_row("B-1", quantity="x")).split(
        b"\n", 1)[1]
    parsed = parse(data)
    assert parsed.rows == 2 and reasons(parsed) == {5: "quantity 'x' is not a whole number of at least 1"}


def test_a_quoted_value_over_several_lines_keeps_the_line_count_right():
    data = generic_file(generic_row("A-1", title="two\nline title"), generic_row("B-1", sku=""))
    parsed = parse(data)
    assert parsed.orders[0].lines[0].title == "two\nline title"
    assert reasons(parsed) == {4: "sku is empty (required)"}


# --- Amazon's order report -----------------------------------------------------------------------------------


def test_amazon_line_totals_become_unit_prices_and_shipping_and_tax_add_up():
    parsed = parse(sample("amazon_orders.txt"))
    assert (parsed.file_format, parsed.rows, parsed.rejected) == ("amazon", 3, [])
    assert {"payments-date", "ship-service-level", "sales-channel", "delivery-Instructions"} <= set(
        parsed.ignored_columns)
    two_items, ruler = parsed.orders
    assert two_items.external_order_id == "113-4820571-2290611" and two_items.source_ref == "lines 2, 4"
    assert [(line.external_line_id, line.sku, line.quantity, line.price, line.tax) for line in two_items.lines] == [
        ("62043183412251", "MUG-BLUE-12", 2, Decimal("12.99"), Decimal("2.34")),  # item-price 25.98 for two
        ("62043183412252", "COASTER-SET", 1, Decimal("8.50"), Decimal("0.77")),
    ]
    assert two_items.shipping_price == Decimal("4.99")  # 4.99 + 0.00
    assert two_items.total_tax == Decimal("3.56")  # item taxes 2.34 + 0.77 and shipping taxes 0.45 + 0.00
    assert (two_items.email, two_items.name, two_items.phone) == (
        "8k2xq1v7d3mfs0p@marketplace.amazon.com", "Ana Souza", "+1 206-555-0142")
    assert two_items.shipping_address == AddressInput(
        name="Ana Souza", address1="1200 Pine St", address2="Apt 4", city="Seattle", province_code="WA",
        zip="98101-1234", country_code="US", phone="+1 206-555-0142")
    assert two_items.created_at == datetime(2026, 11, 1, 10, 12, 13, tzinfo=UTC)
    # 10.00 for three: 3.33 each; the flat file is unquoted, so quotes in a title are just characters.
    assert ruler.lines[0].price == Decimal("3.33") and ruler.lines[0].title == '12" Steel Ruler "Pro"'
    assert ruler.total_tax is None and ruler.shipping_price == Decimal("0.00")
    assert ruler.raw["rows"][0]["values"]["item-price"] == "10.00"


def amazon_file(*rows: dict[str, str]) -> bytes:
    header = sample("amazon_orders.txt").split(b"\r\n", 1)[0].decode().split("\t")
    base = dict(zip(header, sample("amazon_orders.txt").split(b"\r\n")[2].decode().split("\t"), strict=True))
    lines = ["\t".join(header)] + ["\t".join({**base, **row}.get(name, "") for name in header) for row in rows]
    return ("\n".join(lines) + "\n").encode()


def test_amazon_unit_prices_round_half_even_to_the_cent():
    parsed = parse(amazon_file(
        {"order-id": "111-0000001-0000001", "quantity-purchased": "2", "item-price": "0.25"},  # 0.125
        {"order-id": "111-0000002-0000002", "quantity-purchased": "2", "item-price": "0.35"},  # 0.175
    ))
    assert [order.lines[0].price for order in parsed.orders] == [Decimal("0.12"), Decimal("0.18")]


def test_amazon_rejections_name_amazons_columns():
    parsed = parse(amazon_file(
        {"order-id": "111-1", "order-item-id": "1", "item-price": ""},
        {"order-id": "111-2", "order-item-id": "2", "quantity-purchased": "0"},
        {"order-id": "111-3", "order-item-id": "3", "currency": ""},
        {"order-id": "111-4", "order-item-id": "4"},
        {"order-id": "111-4", "order-item-id": "4", "sku": "OTHER"},  # the same order-item-id twice
        {"order-id": "111-5", "order-item-id": "5", "purchase-date": "2026-11-01T10:12:13+00:00"},
        {"order-id": "111-5", "order-item-id": "6", "purchase-date": "2026-11-02T10:12:13+00:00"},
    ))
    assert parsed.orders == []
    assert reasons(parsed) == {
        2: "item-price is empty (required)",
        3: "quantity-purchased '0' is not a whole number of at least 1",
        4: "currency is empty (required)",
        5: "order 111-4 has a rejected row at line 6",
        6: "line item '4' of order 111-4 is also at line 5",
        7: "order 111-5 has a rejected row at line 8",
        8: "the order date '2026-11-02T10:12:13+00:00' differs from '2026-11-01T10:12:13+00:00' at line 7, "
           "in the same order",
    }


# --- eBay's orders report ------------------------------------------------------------------------------------


def test_ebay_report_with_its_blank_first_row_symbols_dates_countries_and_trailer():
    parsed = parse(sample("ebay_orders.csv"))
    # 5 rows: the blank first row, the trailing "record(s) downloaded" and "Seller ID" lines are not rows.
    assert (parsed.file_format, parsed.rows, parsed.rejected) == ("ebay", 5, [])
    compass, napkins, bookends = parsed.orders
    assert compass.external_order_id == "04-12345-67890" and compass.source_ref == "line 3"  # the header is line 2
    assert (compass.currency, compass.created_at, compass.shipping_price) == (
        "USD", datetime(2026, 11, 1, tzinfo=UTC), Decimal("5.95"))
    assert compass.lines[0].external_line_id == "285512340001-2400000001" and compass.lines[0].price == Decimal(
        "34.50")
    assert compass.shipping_address == AddressInput(
        name="Carla Mendes", address1="77 Harbor Way", address2="Suite 210", city="San Francisco",
        province_code="CA", zip="94105", country_code="US", phone="(415) 555-0199")
    assert (compass.email, compass.name, compass.phone) == ("carla.mendes@example.com", "Carla Mendes", "")
    # A multi-item order: the summary row gives the order's values and its shipping, the item rows the lines.
    assert napkins.source_ref == "lines 4-6" and napkins.currency == "CAD"
    assert napkins.created_at == datetime(2026, 11, 2, 17, 15, tzinfo=UTC)  # 09:15 PST
    assert napkins.shipping_price == Decimal("8.00")
    assert [(line.sku, line.quantity, line.price, line.variant_title) for line in napkins.lines] == [
        ("NAPKIN-2", 2, Decimal("15.00"), "Color:Sage"), ("SPOON-OW", 1, Decimal("30.00"), "")]
    assert napkins.shipping_address is not None and (
        napkins.shipping_address.country_code, napkins.shipping_address.province_code) == ("CA", "ON")
    assert (bookends.currency, bookends.lines[0].price, bookends.shipping_price) == (
        "GBP", Decimal("1249.00"), Decimal("0.00"))
    assert bookends.shipping_address is not None and bookends.shipping_address.country_code == "GB"


def ebay_file(*rows: dict[str, str]) -> bytes:
    text = sample("ebay_orders.csv").decode()
    header = next(csv.reader([text.split("\r\n")[1]]))
    out = io.StringIO()
    out.write("\r\n")
    writer = csv.DictWriter(out, fieldnames=header, lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({"Sale Date": "Nov-01-26", "Quantity": "1", "Item Title": "Thing", "Custom Label": "SKU-1",
                         "Sold For": "$5.00", **row})
    out.write('"2 record(s) downloaded","from Nov-01-26 00:00:00 PDT to Nov-07-26 23:59:59 PST"\r\n')
    out.write("Seller ID: someone\r\n")
    return out.getvalue().encode()


def test_ebay_rejections_and_defaults():
    parsed = parse(ebay_file(
        {"Order Number": "01-1", "Sold For": "12.50", "Shipping And Handling": "3"},  # no symbol: USD
        {"Order Number": "01-2", "Custom Label": ""},
        {"Order Number": "01-3", "Sold For": "$5.00", "Shipping And Handling": "£1.00"},
        {"Order Number": "01-4", "Item Title": "", "Custom Label": "", "Shipping And Handling": "$2.00"},
        {"Order Number": "01-5", "Sale Date": "Nov-31-26"},
        {"Order Number": "01-6", "Sold For": "¥500"},
        {"Order Number": "01-7", "Ship To Country": "Atlantis"},
    ))
    (order,) = parsed.orders
    assert (order.external_order_id, order.currency, order.lines[0].price, order.shipping_price) == (
        "01-1", "USD", Decimal("12.50"), Decimal("3.00"))
    assert reasons(parsed) == {
        4: "Custom Label is empty (required)",
        5: "Sold For is in USD but Shipping And Handling in GBP",
        6: "no item on this row (Item Title and Custom Label are empty) and no other row of order 01-4 has one",
        7: "Sale Date 'Nov-31-26' is not a date: use ISO 8601, e.g. 2026-11-01T10:12:13Z",
        8: "Sold For '¥500' has a currency mark '¥' we do not know",
        9: "Ship To Country 'Atlantis' is not a country we know: use its ISO code (like US) or its English name",
    }


@pytest.mark.parametrize(("text", "amount", "currency"), [
    ("$12.34", "12.34", "USD"), ("US $12.34", "12.34", "USD"), ("C $1,234.50", "1234.50", "CAD"),
    ("AU $5", "5.00", "AUD"), ("£3.00", "3.00", "GBP"), ("12,34 €", "12.34", "EUR"), ("EUR 12,34", "12.34", "EUR"),
    ("1.234,56 €", "1234.56", "EUR"), ("1.234.567 EUR", "1234567.00", "EUR"), ("12.34", "12.34", ""),
    ("$0.00", "0.00", "USD"),
])
def test_ebay_money(text, amount, currency):
    assert parse_money(text) == (Decimal(amount), currency)


@pytest.mark.parametrize(("text", "reason"), [
    ("$12.345", "more than 2 decimal places"), ("$-1.00", "negative"), ("free", "not an amount"),
    ("US $12 USD", "not an amount"), ("kr 12", "currency mark 'KR' we do not know"),
])
def test_ebay_money_refused(text, reason):
    with pytest.raises(ValueError, match=reason):
        parse_money(text)


@pytest.mark.parametrize(("text", "expected"), [
    ("Nov-01-26", datetime(2026, 11, 1, tzinfo=UTC)),
    ("Nov-01-26 10:12:13 PST", datetime(2026, 11, 1, 18, 12, 13, tzinfo=UTC)),
    ("Jul-04-26 10:00 PDT", datetime(2026, 7, 4, 17, 0, tzinfo=UTC)),
    ("01-Nov-2026", datetime(2026, 11, 1, tzinfo=UTC)),
    ("2026-11-01T10:12:13Z", datetime(2026, 11, 1, 10, 12, 13, tzinfo=UTC)),
    ("Feb-30-26", None), ("Nov-01-26 10:00:00 XYZ", None), ("Foo-01-26", None), ("soon", None),
])
def test_ebay_dates(text, expected):
    parsed = parse_ebay_date(text)
    assert (parsed.astimezone(UTC) if parsed else None) == expected


# --- values --------------------------------------------------------------------------------------------------


def test_countries_by_code_name_or_alias():
    assert [country_code(value) for value in (
        "US", "us", "USA", "United States", "United States of America", "Korea, South", "UK", "gbr", "Côte d’Ivoire",
        "Bahamas, The", "St. Kitts and Nevis", "Trinidad & Tobago", "Viet Nam", "Vietnam", "Türkiye", "Turkey",
        "Russian Federation", "APO/FPO", "",
    )] == ["US", "US", "US", "US", "US", "KR", "GB", "GB", "CI", "BS", "KN", "TT", "VN", "VN", "TR", "TR", "RU",
           "US", ""]
    # Names two countries share are not guessed.
    assert [country_code(value) for value in ("Korea", "Virgin Islands", "Narnia")] == [None, None, None]
    assert [province_code(value, country=country) for value, country in (
        ("New York", "US"), ("ny", "US"), ("Québec", "CA"), ("New South Wales", "AU"), ("Bavaria", "DE"),
        ("Nowhere", "US"),
    )] == ["NY", "NY", "QC", "NSW", "Bavaria", "Nowhere"]


def test_line_ranges():
    assert line_ranges([7]) == "line 7"
    assert line_ranges([10, 7, 9]) == "lines 7, 9-10"
    assert line_ranges([2, 3, 4, 8, 11, 12]) == "lines 2-4, 8, 11-12"


def test_an_email_that_is_not_one_is_left_out_not_fatal():
    parsed = parse(generic_file(generic_row(email="Invalid Request")))
    assert parsed.orders[0].email == "" and parsed.rejected == []
