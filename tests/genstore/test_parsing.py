"""Lenient parsing: every quirk the contract lists, one test each."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from oma.genstore.errors import GenstoreRecordError
from oma.genstore.parsing import (
    parse_datetime,
    parse_fulfillment,
    parse_line_item,
    parse_order,
    parse_rate_limit_header,
    parse_refund,
    parse_shop,
    parse_webhook_subscription,
)
from oma.genstore.records import RateLimitState


def order_payload(**overrides):
    base = {
        "orderId": "1001",
        "id": "300157930096874",
        "name": "#1001",
        "sourceName": "instagram",
        "sourceIdentifier": "IG-555",
        "financialStatus": "paid",
        "fulfillmentStatus": "unfulfilled",
        "cancelledAt": None,
        "cancelReason": None,
        "createdAt": "2024-12-01T10:00:00Z",
        "updatedAt": "2024-12-02T10:00:00Z",
        "email": "buyer@example.com",
        "totalPrice": "409.94",
        "subtotalPrice": "399.94",
        "currency": "USD",
        "lineItems": [
            {
                "id": "77001",
                "productId": "501",
                "variantId": "601",
                "sku": "MUG-1",
                "title": "Mug",
                "variantTitle": "Blue",
                "quantity": 2,
                "fulfillableQuantity": 2,
                "fulfillmentStatus": None,
                "requiresShipping": True,
                "price": "19.99",
                "grams": 350,
            }
        ],
    }
    base.update(overrides)
    return base


# --- the well-formed baseline ---------------------------------------------------------------------------------------


def test_well_formed_order_parses_every_field():
    record = parse_order(order_payload())
    assert record.order_id == "1001"
    assert record.id == "300157930096874"
    assert record.name == "#1001"
    assert (record.source_name, record.source_identifier) == ("instagram", "IG-555")
    assert (record.financial_status, record.fulfillment_status) == ("paid", "unfulfilled")
    assert record.created_at == datetime(2024, 12, 1, 10, 0, tzinfo=UTC)
    assert record.updated_at == datetime(2024, 12, 2, 10, 0, tzinfo=UTC)
    assert record.email == "buyer@example.com"
    assert record.total_price == Decimal("409.94")
    assert record.subtotal_price == Decimal("399.94")
    assert record.currency == "USD"
    assert record.cancelled is False
    assert record.problems == ()
    (item,) = record.line_items
    assert item.id == "77001"
    assert (item.product_id, item.variant_id, item.sku) == ("501", "601", "MUG-1")
    assert (item.title, item.variant_title) == ("Mug", "Blue")
    assert (item.quantity, item.fulfillable_quantity, item.grams) == (2, 2, 350)
    assert item.requires_shipping is True
    assert item.price == Decimal("19.99")
    assert item.fulfillment_status is None


def test_raw_is_the_original_dict():
    payload = order_payload()
    assert parse_order(payload).raw is payload


# --- numbers, money, booleans, null -----------------------------------------------------------------------------


def test_quoted_numbers():
    record = parse_order(
        order_payload(lineItems=[{"id": "1", "quantity": "1", "fulfillableQuantity": " 3 ", "grams": "200"}])
    )
    item = record.line_items[0]
    assert (item.quantity, item.fulfillable_quantity, item.grams) == (1, 3, 200)
    assert record.problems == ()


def test_integral_decimal_text_is_an_integer():
    item = parse_line_item({"id": "1", "quantity": "2.0", "grams": 150.0})
    assert (item.quantity, item.grams) == (2, 150)


def test_money_as_decimal_strings_and_numbers():
    record = parse_order(order_payload(totalPrice="0.10", subtotalPrice=12.3))
    assert record.total_price == Decimal("0.10")
    assert record.subtotal_price == Decimal("12.3")  # a JSON number keeps its shortest decimal form


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("false", False), ("TRUE", True), (" False ", False), (True, True), (False, False), ("1", True)],
)
def test_booleans_quoted_or_real(raw, expected):
    assert parse_line_item({"id": "1", "requiresShipping": raw}).requires_shipping is expected


@pytest.mark.parametrize("null", ["null", "NULL", "Null", None, ""])
def test_string_null_means_no_value_for_any_nullable_field(null):
    record = parse_order(
        order_payload(
            name=null,
            email=null,
            totalPrice=null,
            cancelledAt=null,
            fulfillmentStatus=null,
            lineItems=[{"id": "1", "quantity": null, "price": null, "requiresShipping": null, "sku": null}],
        )
    )
    assert record.name is None and record.email is None and record.total_price is None
    assert record.cancelled_at is None and record.fulfillment_status == "unfulfilled"
    item = record.line_items[0]
    assert item.quantity is None and item.price is None and item.requires_shipping is None and item.sku is None
    assert record.problems == ()


def test_fulfillment_status_null_or_absent_means_unfulfilled():
    # Part B: Genstore writes an unfulfilled order's status as null; the client says what it means.
    assert parse_order(order_payload(fulfillmentStatus=None)).fulfillment_status == "unfulfilled"
    assert parse_order(order_payload(fulfillmentStatus="null")).fulfillment_status == "unfulfilled"
    payload = order_payload()
    del payload["fulfillmentStatus"]
    assert parse_order(payload).fulfillment_status == "unfulfilled"
    odd = parse_order(order_payload(fulfillmentStatus={"status": "partial"}))
    assert odd.fulfillment_status is None and odd.problems[0].startswith("fulfillmentStatus:")


# --- ids ----------------------------------------------------------------------------------------------------------


def test_ids_as_bare_numbers_are_stored_as_strings():
    record = parse_order(
        order_payload(
            orderId=5012345678901,
            id=300157930096874123,
            lineItems=[{"id": 77001, "productId": 501, "variantId": 601}],
        )
    )
    assert record.order_id == "5012345678901"
    assert record.id == "300157930096874123"  # exact: never through a float
    item = record.line_items[0]
    assert (item.id, item.product_id, item.variant_id) == ("77001", "501", "601")


def test_order_without_order_id_falls_back_to_id_and_says_so():
    payload = order_payload()
    del payload["orderId"]
    record = parse_order(payload)
    assert record.order_id == "300157930096874"
    assert record.id == "300157930096874"
    assert any(problem.startswith("orderId:") for problem in record.problems)


def test_order_with_null_order_id_falls_back_to_id():
    assert parse_order(order_payload(orderId="null")).order_id == "300157930096874"


@pytest.mark.parametrize("ids", [{}, {"orderId": "null", "id": None}, {"orderId": "", "id": {"x": 1}}])
def test_order_without_any_usable_id_raises_a_specific_error(ids):
    payload = order_payload()
    del payload["orderId"], payload["id"]
    payload.update(ids)
    with pytest.raises(GenstoreRecordError) as info:
        parse_order(payload)
    assert info.value.raw is payload
    assert info.value.transient is False


def test_non_object_order_raises_record_error():
    with pytest.raises(GenstoreRecordError):
        parse_order(["not", "an", "order"])  # type: ignore[arg-type]


# --- timestamps ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-12-01T10:00:00Z", datetime(2024, 12, 1, 10, 0, tzinfo=UTC)),
        ("2024-12-01T18:00:00+08:00", datetime(2024, 12, 1, 10, 0, tzinfo=UTC)),
        ("2024-10-30T16:19:13-04:00", datetime(2024, 10, 30, 20, 19, 13, tzinfo=UTC)),
        ("2024-12-01T10:00:00.123Z", datetime(2024, 12, 1, 10, 0, 0, 123000, tzinfo=UTC)),
        ("2024-12-01T10:00:00.123456789+00:00", datetime(2024, 12, 1, 10, 0, 0, 123456, tzinfo=UTC)),
        ('2024-12-01T10:00:00Z"', datetime(2024, 12, 1, 10, 0, tzinfo=UTC)),  # the stray trailing quote
        ("2024-12-01T10:00:00", datetime(2024, 12, 1, 10, 0, tzinfo=UTC)),  # naive is UTC
        ("2024-12-01 10:00:00", datetime(2024, 12, 1, 10, 0, tzinfo=UTC)),
        (1733047200, datetime(2024, 12, 1, 10, 0, tzinfo=UTC)),
        (1733047200000, datetime(2024, 12, 1, 10, 0, tzinfo=UTC)),
    ],
)
def test_timestamps_become_aware_utc(text, expected):
    parsed = parse_datetime(text)
    assert parsed == expected
    assert parsed.utcoffset().total_seconds() == 0


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_timestamp_at_the_end_of_the_calendar_is_a_problem_not_a_crash(text):
    record = parse_order(order_payload(updatedAt=text))  # converting it to UTC overflows
    assert record.updated_at is None
    assert record.problems == (f"updatedAt: not a timestamp: {text!r}",)


def test_order_timestamps_with_quirks():
    record = parse_order(order_payload(createdAt='2024-12-01T10:00:00Z"', updatedAt="2024-12-01T18:30:00.5+08:00"))
    assert record.created_at == datetime(2024, 12, 1, 10, 0, tzinfo=UTC)
    assert record.updated_at == datetime(2024, 12, 1, 10, 30, 0, 500000, tzinfo=UTC)
    assert record.problems == ()


def test_documented_create_time_spelling_is_accepted():
    payload = order_payload()
    del payload["createdAt"]
    payload["createTime"] = "2024-10-30T16:19:13-04:00"
    assert parse_order(payload).created_at == datetime(2024, 10, 30, 20, 19, 13, tzinfo=UTC)


# --- one object where a list belongs, tags ------------------------------------------------------------------------


def test_line_items_given_as_a_single_object():
    record = parse_order(order_payload(lineItems={"id": "9", "quantity": "1"}))
    assert [item.id for item in record.line_items] == ["9"]
    assert record.line_items[0].quantity == 1


def test_fulfillments_given_as_a_single_object():
    record = parse_order(
        order_payload(fulfillments={"fulfillId": "F1", "trackingNumber": "1Z999", "status": "success"})
    )
    assert record.has_fulfillments is True
    assert [f.fulfill_id for f in record.fulfillments] == ["F1"]
    assert record.fulfillments[0].tracking_number == "1Z999"


@pytest.mark.parametrize("tags", ["vip, wholesale", " vip ,wholesale,", ["vip", "wholesale"], ["vip", "", "wholesale"]])
def test_tags_as_text_or_list(tags):
    assert parse_order(order_payload(tags=tags)).tags == ("vip", "wholesale")


def test_no_tags_is_empty():
    assert parse_order(order_payload()).tags == ()
    assert parse_order(order_payload(tags="null")).tags == ()


# --- protected fields ---------------------------------------------------------------------------------------------


def test_protected_fields_missing_is_not_a_problem():
    payload = order_payload()
    del payload["email"]
    record = parse_order(payload)  # no customer, no addresses, no email: Genstore filtered them
    assert record.email is None
    assert record.problems == ()


def test_email_from_customer_object_when_not_top_level():
    payload = order_payload(customer={"id": 5, "email": "c@example.com"})
    del payload["email"]
    assert parse_order(payload).email == "c@example.com"


# --- malformed values: field None, problem recorded and logged, order kept ------------------------------------------


def test_malformed_values_leave_the_field_empty_and_keep_the_order(caplog):
    caplog.set_level(logging.WARNING, logger="oma.genstore.parsing")
    record = parse_order(
        order_payload(
            totalPrice="abc",
            createdAt="not a date",
            lineItems=[{"id": "1", "quantity": "two", "price": "9.99", "requiresShipping": "maybe"}],
        )
    )
    assert record.order_id == "1001"
    assert record.total_price is None
    assert record.created_at is None
    assert record.subtotal_price == Decimal("399.94")  # the other fields are untouched
    item = record.line_items[0]
    assert item.quantity is None and item.requires_shipping is None
    assert item.price == Decimal("9.99")
    fields = sorted(problem.split(":")[0] for problem in record.problems)
    assert fields == ["createdAt", "lineItems[0].quantity", "lineItems[0].requiresShipping", "totalPrice"]
    assert "totalPrice: not a decimal: 'abc'" in record.problems
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "1001" in warnings[0].getMessage() and "totalPrice" in warnings[0].getMessage()


def test_line_item_without_id_is_skipped_with_a_problem():
    record = parse_order(order_payload(lineItems=[{"quantity": 1}, {"id": "2", "quantity": 1}, "junk"]))
    assert [item.id for item in record.line_items] == ["2"]
    assert any(problem.startswith("lineItems[0]") for problem in record.problems)
    assert any(problem.startswith("lineItems[2]") for problem in record.problems)


def test_unreadable_line_items_value_is_a_problem():
    record = parse_order(order_payload(lineItems="lots"))
    assert record.line_items == ()
    assert any(problem.startswith("lineItems:") for problem in record.problems)


def test_nested_fulfillment_problems_reach_the_order():
    record = parse_order(order_payload(fulfillments=[{"fulfillId": "F1", "createdAt": "yesterday"}]))
    assert record.fulfillments[0].created_at is None
    assert "fulfillments[0].createdAt: not a timestamp: 'yesterday'" in record.problems


# --- has_line_items, has_fulfillments -----------------------------------------------------------------------------


def test_has_line_items_only_when_the_list_was_read_in_full():
    assert parse_order(order_payload()).has_line_items is True
    assert parse_order(order_payload(lineItems=[])).has_line_items is True  # an order with no lines says so
    assert parse_order(order_payload(lineItems={"id": "9"})).has_line_items is True  # one object for a list
    payload = order_payload()
    del payload["lineItems"]
    assert parse_order(payload).has_line_items is False  # not sent: unknown
    assert parse_order(order_payload(lineItems="null")).has_line_items is False
    assert parse_order(order_payload(lineItems="lots")).has_line_items is False  # unreadable
    partial = parse_order(order_payload(lineItems=[{"id": "1"}, {"quantity": 1}]))
    assert partial.has_line_items is False  # a line without an id may be one we know: it must not look deleted
    assert [item.id for item in partial.line_items] == ["1"]
    assert parse_order(order_payload(lineItems=[{"id": "1"}, "junk"])).has_line_items is False



def test_has_fulfillments_tracks_the_key_not_the_content():
    assert parse_order(order_payload()).has_fulfillments is False
    empty = parse_order(order_payload(fulfillments=[]))
    assert empty.has_fulfillments is True and empty.fulfillments == ()
    assert parse_order(order_payload(fulfillments=None)).has_fulfillments is True
    unreadable = parse_order(order_payload(fulfillments=42))
    assert unreadable.has_fulfillments is False  # present but unusable: unknown, not "none"
    assert any(problem.startswith("fulfillments:") for problem in unreadable.problems)


def test_cancelled_order():
    record = parse_order(order_payload(cancelledAt="2024-12-03T00:00:00Z", cancelReason="customer"))
    assert record.cancelled is True
    assert record.cancel_reason == "customer"


# --- other records ------------------------------------------------------------------------------------------------


def test_parse_fulfillment_full():
    record = parse_fulfillment(
        {
            "fulfillId": 880001,
            "orderId": "1001",
            "status": "success",
            "shipmentStatus": "null",
            "trackingNumber": 1234567890,
            "trackingCompany": "UPS",
            "trackingUrl": "https://ups.example/1234567890",
            "lineItems": {"id": 77001, "quantity": "2"},
            "createdAt": "2024-12-01T10:00:00Z",
            "updatedAt": '2024-12-01T11:00:00Z"',
        }
    )
    assert record.fulfill_id == "880001"
    assert record.order_id == "1001"
    assert record.status == "success"
    assert record.shipment_status is None
    assert record.tracking_number == "1234567890"
    assert record.tracking_company == "UPS"
    assert [(line.id, line.quantity) for line in record.line_items] == [("77001", 2)]
    assert record.updated_at == datetime(2024, 12, 1, 11, 0, tzinfo=UTC)
    assert record.problems == ()


def test_parse_fulfillment_tracking_info_object_is_accepted():
    record = parse_fulfillment({"fulfillId": "F1", "trackingInfo": {"number": "ABC", "company": "DHL", "url": "u"}})
    assert (record.tracking_number, record.tracking_company, record.tracking_url) == ("ABC", "DHL", "u")


def test_parse_fulfillment_without_id_raises():
    with pytest.raises(GenstoreRecordError):
        parse_fulfillment({"orderId": "1", "trackingNumber": "X"})


def test_parse_fulfillment_falls_back_to_id():
    assert parse_fulfillment({"id": "F9"}).fulfill_id == "F9"


def test_parse_line_item_reports_problems_to_the_caller():
    problems: list[str] = []
    item = parse_line_item({"id": "1", "grams": "heavy"}, problems=problems)
    assert item.grams is None
    assert problems == ["grams: not an integer: 'heavy'"]


def test_parse_refund():
    record = parse_refund(
        {"refundId": 42, "orderId": 1001, "amount": "10.50", "currency": "USD", "createTime": "2024-12-01T10:00:00Z"}
    )
    assert (record.refund_id, record.order_id, record.amount, record.currency) == (
        "42",
        "1001",
        Decimal("10.50"),
        "USD",
    )
    assert record.created_at == datetime(2024, 12, 1, 10, 0, tzinfo=UTC)
    bad = parse_refund({"refundId": "7", "amount": "lots"})
    assert bad.amount is None and bad.problems == ("amount: not a decimal: 'lots'",)


def test_parse_shop():
    record = parse_shop(
        {"shopId": 99, "shopName": "Demo", "domain": "demo.genmystore.com", "currency": "EUR", "timezone": "-4"}
    )
    assert (record.id, record.name, record.domain, record.currency, record.timezone) == (
        "99",
        "Demo",
        "demo.genmystore.com",
        "EUR",
        "-4",
    )


def test_parse_webhook_subscription():
    record = parse_webhook_subscription(
        {
            "id": 8589934859,
            "address": "https://oma.example.com/webhooks/genstore/",
            "topic": "orders/create",
            "createTime": "2024-10-30T16:19:13-04:00",
            "updateTime": "null",
        }
    )
    assert record.id == "8589934859"
    assert record.topic == "orders/create"
    assert record.created_at == datetime(2024, 10, 30, 20, 19, 13, tzinfo=UTC)
    assert record.updated_at is None
    with pytest.raises(GenstoreRecordError):
        parse_webhook_subscription({"address": "https://x", "topic": "orders/create"})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30/40", RateLimitState(used=30, capacity=40)),
        (" 0 / 200 ", RateLimitState(used=0, capacity=200)),
        ('"12/40"', RateLimitState(used=12, capacity=40)),
        (None, None),
        ("", None),
        ("lots", None),
        ("3/0", None),
    ],
)
def test_parse_rate_limit_header(value, expected):
    assert parse_rate_limit_header(value) == expected
