from __future__ import annotations

from tests.tracking.carriers.helpers import assert_newest_first_and_unique, load, utc
from tracking.carriers import seventeentrack

NUMBERS = ["RB123456785CN", "YT2229521272164446", "JJD0002257639032011", "GFUS01011884214464"]


def test_several_numbers_accepted_and_rejected() -> None:
    results = seventeentrack.parse_response(load("17track", "gettrackinfo"), NUMBERS)
    assert [r.tracking_number for r in results] == NUMBERS
    delivered, customs, returning, rejected = results

    assert (delivered.status, delivered.substatus, delivered.raw_code) == ("delivered", "", "Delivered_Other")
    assert delivered.delivered_at == utc("2024-03-18T11:02:00Z")
    assert_newest_first_and_unique(delivered)
    assert len(delivered.events) == 4  # the arrival listed by both posts is kept once
    assert delivered.events[-1].substatus == "picked_up"

    assert (customs.status, customs.substatus) == ("in_transit", "customs")
    assert_newest_first_and_unique(customs)
    assert [e.occurred_at for e in customs.events] == [
        utc("2024-05-14T16:20:00Z"),  # time_raw without zone, in California: PDT
        utc("2024-05-11T13:30:00Z"),  # time_iso +08:00 without time_utc
        utc("2024-05-10T00:00:00Z"),
    ]
    assert customs.estimated_delivery == utc("2024-05-24T07:00:00Z")

    assert (returning.status, returning.substatus) == ("return_to_sender", "")
    assert (returning.events[1].status, returning.events[1].substatus) == ("attempt_failed", "address_issue")

    assert not rejected.found
    assert seventeentrack.needs_registration(rejected)
    assert not seventeentrack.needs_registration(delivered)


def test_request_level_error() -> None:
    results = seventeentrack.parse_response(load("17track", "request_error"), ["RB123456785GB"])
    assert [(r.found, r.raw_code, r.error) for r in results] == [(False, "-18010002", "Invalid access key.")]


def test_sub_status_table_covers_every_documented_value() -> None:
    documented = [
        "NotFound_Other",
        "NotFound_InvalidCode",
        "InfoReceived",
        "InTransit_PickedUp",
        "InTransit_Other",
        "InTransit_Departure",
        "InTransit_Arrival",
        "InTransit_CustomsProcessing",
        "InTransit_CustomsReleased",
        "InTransit_CustomsRequiringInformation",
        "Expired_Other",
        "AvailableForPickup_Other",
        "OutForDelivery_Other",
        "DeliveryFailure_Other",
        "DeliveryFailure_NoBody",
        "DeliveryFailure_Security",
        "DeliveryFailure_Rejected",
        "DeliveryFailure_InvalidAddress",
        "Delivered_Other",
        "Exception_Other",
        "Exception_Returning",
        "Exception_Returned",
        "Exception_NoBody",
        "Exception_Security",
        "Exception_Damage",
        "Exception_Rejected",
        "Exception_Delayed",
        "Exception_Lost",
        "Exception_Destroyed",
        "Exception_Cancel",
    ]
    assert len(documented) == 30
    assert set(documented) <= set(seventeentrack.SUB_STATUSES)
    assert seventeentrack.map_status("Exception_Lost") == ("exception", "lost")
    assert seventeentrack.map_status("Exception_Cancel") == ("cancelled", "")
    assert seventeentrack.map_status("InTransit_Something_New", "InTransit") == ("in_transit", "")
    assert seventeentrack.map_status("Brand_New") == ("unknown", "")


def test_register_and_track_calls_batch_forty() -> None:
    numbers = [f"RB{index:08d}5GB" for index in range(85)]
    calls = seventeentrack.build_calls(numbers)
    registers = seventeentrack.build_register_calls(numbers)
    assert [len(c.numbers) for c in calls] == [40, 40, 5]
    assert [c.path for c in calls] == ["/track/v2.2/gettrackinfo"] * 3
    assert [c.path for c in registers] == ["/track/v2.2/register"] * 3
    assert registers[0].json[:2] == [{"number": numbers[0]}, {"number": numbers[1]}]
    assert seventeentrack.SPEC.api_key_header == "17token"
