from __future__ import annotations

from tests.tracking.carriers.helpers import assert_newest_first_and_unique, load, utc
from tracking.carriers import dhl


def test_express_delivered_with_local_times_and_signature() -> None:
    [result] = dhl.parse_response(load("dhl", "delivered_express"), ["3318810025"])
    assert (result.status, result.substatus) == ("delivered", "")
    assert result.signed_by == "J SMITH"
    assert result.delivered_at == utc("2024-02-20T14:21:00Z")
    assert_newest_first_and_unique(result)
    # No offsets: each event in its own country's zone, read from the "CITY - COUNTRY" locality.
    assert [e.occurred_at for e in result.events] == [
        utc("2024-02-20T14:21:00Z"),  # London, GMT
        utc("2024-02-20T08:03:00Z"),
        utc("2024-02-19T21:05:00Z"),  # Leipzig 22:05 CET
        utc("2024-02-19T08:12:00Z"),
        utc("2024-02-18T10:30:00Z"),  # Hong Kong 18:30 HKT
    ]
    assert [(e.status, e.substatus) for e in result.events] == [
        ("delivered", ""),
        ("out_for_delivery", ""),
        ("in_transit", ""),
        ("in_transit", "customs"),
        ("in_transit", "picked_up"),
    ]


def test_parcel_in_transit_picks_the_shipment_that_moves() -> None:
    [result] = dhl.parse_response(load("dhl", "in_transit_parcel"), ["00340434161094015902"])
    assert result.status == "out_for_delivery"  # "transit" refined by "loaded onto the delivery vehicle"
    assert result.estimated_delivery == utc("2024-04-10T16:00:00Z")
    assert [e.raw_code for e in result.events] == ["transit", "transit", "transit", "pre-transit"]
    assert result.events[-1].status == "info_received"
    assert result.events[0].location == "Bonn, 53113, DE"


def test_failure_turns_into_return_and_attempt() -> None:
    [result] = dhl.parse_response(load("dhl", "failure"), ["8487135506"])
    assert result.status == "return_to_sender"
    assert_newest_first_and_unique(result)
    assert len(result.events) == 5  # the repeated clearance event is stored once
    assert (result.events[1].status, result.events[1].substatus) == ("attempt_failed", "recipient_unavailable")
    unknown = result.events[-1]
    assert (unknown.status, unknown.raw_code) == ("unknown", "unknown")
    assert unknown.occurred_at == utc("2024-05-01T07:00:00Z")  # Bonn 09:00 CEST


def test_not_found_problem_body() -> None:
    [result] = dhl.parse_response(load("dhl", "not_found"), ["3318810036"])
    assert not result.found
    assert (result.raw_code, result.error) == ("404", "No shipment with given tracking number found.")


def test_build_calls() -> None:
    [call] = dhl.build_calls(["3318810025"])
    assert (call.method, call.path, call.params) == (
        "GET",
        "/track/shipments",
        {"trackingNumber": "3318810025", "language": "en"},
    )
    assert dhl.SPEC.auth == "api_key_header" and dhl.SPEC.api_key_header == "DHL-API-Key"
