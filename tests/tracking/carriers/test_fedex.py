from __future__ import annotations

from oma.fulfillment.pushed_status import shipment_status_for
from tests.tracking.carriers.helpers import assert_newest_first_and_unique, load, utc
from tracking.carriers import fedex

NUMBERS = ["799531274483", "477179081230", "986578788855"]


def test_several_packages_in_one_response() -> None:
    results = fedex.parse_response(load("fedex", "several_packages"), NUMBERS)
    assert [r.tracking_number for r in results] == NUMBERS
    delivered, delayed, missing = results

    assert (delivered.status, delivered.substatus) == ("delivered", "")
    assert delivered.delivered_at == utc("2024-04-26T16:26:00Z")  # 09:26 at -07:00
    assert delivered.signed_by == "J.SMITH"
    assert_newest_first_and_unique(delivered)
    # The response lists "Left FedEx origin facility" out of order: sorting by UTC puts it back.
    assert [e.raw_code for e in delivered.events] == ["DL", "OD", "AR", "DP", "PU", "OC"]
    assert delivered.events[-1].occurred_at == utc("2024-04-24T20:30:57Z")  # a -05:00 offset among -07:00 ones
    assert delivered.events[-1].status == "info_received"

    assert (delayed.status, delayed.substatus) == ("exception", "weather")  # in transit, flagged DELAYED by weather
    assert shipment_status_for(delayed.status, delayed.substatus) == "delayed"
    assert delayed.estimated_delivery == utc("2024-05-04T00:00:00Z")  # window end 20:00 at -04:00
    assert [e.raw_code for e in delayed.events] == ["DY", "DP", "PU"]
    assert (delayed.events[0].status, delayed.events[0].substatus) == ("exception", "weather")

    assert not missing.found
    assert missing.raw_code == "TRACKING.TRACKINGNUMBER.NOTFOUND"
    assert missing.error.startswith("Tracking number cannot be found")


def test_number_reused_for_two_shipments_keeps_the_latest() -> None:
    [result] = fedex.parse_response(load("fedex", "duplicate_number"), ["790535312317"])
    assert result.status == "in_transit"
    assert result.events[0].occurred_at == utc("2024-06-11T09:05:00Z")
    assert result.delivered_at is None


def test_delivery_exception_and_shipment_exception() -> None:
    [result] = fedex.parse_response(load("fedex", "exception"), ["974367662710"])
    assert (result.status, result.substatus) == ("attempt_failed", "recipient_unavailable")
    assert shipment_status_for(result.status, result.substatus) == "attempted_delivery"
    damaged = next(e for e in result.events if e.raw_code == "SE")
    assert (damaged.status, damaged.substatus) == ("exception", "damaged")
    assert damaged.raw_text == "Shipment exception: Package damaged - contents being inspected"
    unmapped = result.events[-1]
    assert (unmapped.status, unmapped.raw_code) == ("unknown", "ZX")
    assert result.estimated_delivery == utc("2024-07-09T14:30:00Z")  # standard transit window end


def test_rejected_request_answers_every_number() -> None:
    results = fedex.parse_response(load("fedex", "request_error"), ["111111111111", "222222222222"])
    assert [(r.found, r.raw_code) for r in results] == [(False, "TRACKING.TRACKINGNUMBER.EMPTY")] * 2


def test_numbers_missing_from_the_answer_are_reported_not_found() -> None:
    results = fedex.parse_response(load("fedex", "duplicate_number"), ["790535312317", "123456789012"])
    assert [(r.tracking_number, r.found) for r in results] == [("790535312317", True), ("123456789012", False)]


def test_build_calls_batches_thirty_numbers() -> None:
    numbers = [f"{index:012d}" for index in range(65)]
    calls = fedex.build_calls(numbers)
    assert [len(c.numbers) for c in calls] == [30, 30, 5]
    assert all(c.method == "POST" and c.path == "/track/v1/trackingnumbers" for c in calls)
    assert calls[2].json == {
        "includeDetailedScans": True,
        "trackingInfo": [{"trackingNumberInfo": {"trackingNumber": n}} for n in numbers[60:]],
    }
    assert fedex.SPEC.batch_size == 30 and fedex.SPEC.token_path == "/oauth/token"
