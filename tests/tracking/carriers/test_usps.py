from __future__ import annotations

from datetime import date

from tests.tracking.carriers.helpers import assert_newest_first_and_unique, load, utc
from tracking.carriers import usps


def test_delivered_uses_gmt_timestamps_and_the_signer() -> None:
    [result] = usps.parse_response(load("usps", "delivered"), ["9400111206206406260787"])
    assert (result.status, result.substatus, result.raw_code) == ("delivered", "", "Delivered")
    assert result.delivered_at == utc("2024-06-17T16:01:22Z")
    assert result.signed_by == "R LOPEZ"
    assert_newest_first_and_unique(result)
    assert [e.raw_code for e in result.events] == ["01", "OF", "07", "T1", "03", "GX"]
    assert [e.status for e in result.events] == [
        "delivered",
        "out_for_delivery",
        "in_transit",
        "in_transit",
        "in_transit",
        "info_received",
    ]
    assert result.events[4].substatus == "picked_up"


def test_local_times_with_offsets_and_without() -> None:
    [result] = usps.parse_response(load("usps", "in_transit_local_times"), ["9405803699300124287899"])
    assert result.status == "in_transit"
    assert_newest_first_and_unique(result)
    assert [(e.raw_code, e.occurred_at) for e in result.events] == [
        ("NT", utc("2024-07-10T07:00:00Z")),  # no offset, no place: the destination's zone (New York, EDT)
        ("T1", utc("2024-07-09T12:45:00Z")),  # 05:45 with GMTOffset -07:00
        ("10", utc("2024-07-09T05:02:00Z")),  # 22:02 with GMTOffset "-7:00" (one-digit hour)
        ("03", utc("2024-07-08T22:30:00Z")),  # no offset, state CA: Los Angeles (PDT)
        ("GX", utc("2024-07-07T18:00:00Z")),  # an offset inside the timestamp itself
    ]
    assert result.estimated_delivery == date(2024, 7, 12)


def test_failed_attempt_with_reason() -> None:
    [result] = usps.parse_response(load("usps", "attempt_failed"), ["9434611206206406227577"])
    assert (result.status, result.substatus) == ("attempt_failed", "recipient_unavailable")
    assert result.estimated_delivery == date(2024, 2, 7)
    weather = result.events[-1]
    assert (weather.status, weather.substatus, weather.raw_code) == ("exception", "weather", "WX")


def test_return_delivered_to_the_original_sender() -> None:
    [result] = usps.parse_response(load("usps", "returned"), ["9400111206206407628746"])
    assert (result.status, result.substatus) == ("return_to_sender", "returned_completed")
    assert result.delivered_at is None  # delivered back to the merchant is not a delivery to the customer
    assert [(e.status, e.substatus) for e in result.events] == [
        ("return_to_sender", "returned_completed"),
        ("return_to_sender", ""),
        ("exception", "address_issue"),
    ]


def test_not_found() -> None:
    [result] = usps.parse_response(load("usps", "not_found"), ["9400111206206407628845"])
    assert not result.found
    assert result.tracking_number == "9400111206206407628845"
    assert result.raw_code == "404"
    assert "status update is not yet available" in result.error


def test_build_calls() -> None:
    [call] = usps.build_calls(["9400111206206406260787"])
    assert (call.method, call.path, call.params) == (
        "GET",
        "/tracking/v3/tracking/9400111206206406260787",
        {"expand": "DETAIL"},
    )
    assert usps.SPEC.token_path == "/oauth2/v3/token" and usps.SPEC.default_base_url == "https://apis.usps.com"
