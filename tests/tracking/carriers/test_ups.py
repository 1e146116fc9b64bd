from __future__ import annotations

from datetime import date

from tests.tracking.carriers.helpers import assert_newest_first_and_unique, load, utc
from tracking.carriers import ups


def test_delivered_package_with_gmt_offsets_signature_and_duplicate_scan() -> None:
    [result] = ups.parse_response(load("ups", "delivered"), ["1Z5R89390357567127"])
    assert result.found and result.carrier == "ups"
    assert (result.status, result.substatus) == ("delivered", "")
    assert result.delivered_at == utc("2023-11-30T21:43:40Z")  # 16:43:40 local at -05:00
    assert result.signed_by == "MARTIN"
    assert_newest_first_and_unique(result)
    assert len(result.events) == 6  # the repeated "Arrived at Facility" scan is stored once
    assert [e.status for e in result.events] == [
        "delivered",
        "out_for_delivery",
        "in_transit",
        "in_transit",
        "in_transit",
        "info_received",
    ]
    pickup = result.events[4]
    assert (pickup.substatus, pickup.raw_code, pickup.location) == ("picked_up", "P/PU/038", "LOUISVILLE, KY, US")
    assert result.events[3].occurred_at == utc("2023-11-30T03:10:00Z")  # 22:10 on the 29th in Atlanta


def test_in_transit_events_out_of_order_with_every_time_format() -> None:
    [result] = ups.parse_response(load("ups", "in_transit"), ["1Z879E930346834440"])
    assert (result.status, result.substatus) == ("in_transit", "")
    assert_newest_first_and_unique(result)
    assert [(e.location.split(",")[0], e.occurred_at) for e in result.events] == [
        ("SACRAMENTO", utc("2024-03-14T13:15:00Z")),  # 06:15 local, gmtOffset -07:00
        ("DENVER", utc("2024-03-14T00:00:00Z")),  # 18:00 local, no GMT fields: Colorado's zone (MDT, -06:00)
        ("HODGKINS", utc("2024-03-13T04:30:00Z")),  # 23:30 local on the 12th, -05:00
        ("CHICAGO", utc("2024-03-12T21:00:00Z")),  # gmtDate + gmtTime "21:00:00", no offset
        ("US", utc("2024-03-11T15:15:00Z")),  # gmtTime in the spec's digits-only form "151500"
    ]
    # RDD (rescheduled) wins over SDD; the window's end time at the destination (California, PDT).
    assert result.estimated_delivery == utc("2024-03-15T20:00:00Z")
    assert result.delivered_at is None


def test_weather_exception_and_unmapped_code_kept_raw() -> None:
    [result] = ups.parse_response(load("ups", "exception"), ["1Z410E7W0392751591"])
    assert (result.status, result.substatus) == ("exception", "weather")
    assert result.raw_code == "X/WE/052" and result.raw_text == "Delay: Severe Weather"
    assert result.estimated_delivery == date(2024, 1, 17)
    attempt = result.events[1]
    assert (attempt.status, attempt.substatus) == ("attempt_failed", "recipient_unavailable")
    unmapped = result.events[-1]
    assert (unmapped.status, unmapped.raw_code) == ("unknown", "Q/ZZ/999")
    assert unmapped.raw_text == "Package information updated"
    assert unmapped.occurred_at == utc("2024-01-16T02:00:00Z")  # local time + gmtOffset even without gmtTime


def test_not_found_answers() -> None:
    [result] = ups.parse_response(load("ups", "not_found"), ["1Z8V92A70367203024"])
    assert not result.found
    assert (result.tracking_number, result.raw_code, result.error) == (
        "1Z8V92A70367203024",
        "TW0001",
        "Tracking Information Not Found",
    )
    [warned] = ups.parse_response(load("ups", "warning_not_found"), ["1Z8V92A70367203024"])
    assert not warned.found and warned.raw_code == "TW0001"


def test_status_code_table_covers_the_appendix_landmarks() -> None:
    expect = {
        "011": ("delivered", ""),
        "021": ("out_for_delivery", ""),
        "072": ("out_for_delivery", ""),
        "017": ("available_for_pickup", ""),
        "022": ("attempt_failed", ""),
        "034": ("return_to_sender", "returned_completed"),
        "064": ("exception", "refused"),
        "068": ("exception", "lost"),
        "007": ("cancelled", ""),
        "003": ("info_received", ""),
    }
    for code, mapped in expect.items():
        assert ups.map_status({"statusCode": code, "type": "I", "description": "x"})[:2] == mapped, code
    # Type only: "I" covers out for delivery too, the text tells.
    assert ups.map_status({"type": "I", "description": "Out For Delivery Today"})[:2] == ("out_for_delivery", "")
    assert ups.map_status({"type": "D", "description": "DELIVERED"})[:2] == ("delivered", "")


def test_build_calls_one_get_per_number_with_ups_headers() -> None:
    calls = ups.build_calls(["1Z5R89390357567127", "1Z879E930346834440"])
    assert [c.path for c in calls] == [
        "/api/track/v1/details/1Z5R89390357567127",
        "/api/track/v1/details/1Z879E930346834440",
    ]
    assert all(c.method == "GET" and len(c.numbers) == 1 for c in calls)
    assert calls[0].headers["transactionSrc"] == "oma"
    assert calls[0].headers["transId"] != calls[1].headers["transId"]
    assert ups.SPEC.token_path == "/security/v1/oauth/token" and ups.SPEC.batch_size == 1
