from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from tracking.carriers.base import CarrierSpec, TrackingEventRecord, TrackingResult
from tracking.carriers.parsing import finalize_events, localize, parse_offset, roll_up, zone_for
from tracking.carriers.registry import CARRIERS, UnknownCarrier, api_carrier_for, get_spec
from tracking.carriers.serialize import format_moment, result_to_json, results_to_json


def test_registry_has_the_five_carriers() -> None:
    assert set(CARRIERS) == {"ups", "fedex", "usps", "dhl", "17track"}
    assert all(isinstance(spec, CarrierSpec) for spec in CARRIERS.values())
    assert get_spec(" UPS ").code == "ups"
    assert {code: spec.batch_size for code, spec in CARRIERS.items()} == {
        "ups": 1,
        "fedex": 30,
        "usps": 1,
        "dhl": 1,
        "17track": 40,
    }
    assert get_spec("17track").build_register_calls is not None
    assert all(spec.tracking_url("X1") for spec in CARRIERS.values())
    with pytest.raises(UnknownCarrier):
        get_spec("pigeon")


def test_detected_couriers_route_to_their_api_or_17track() -> None:
    assert api_carrier_for("ups") == "ups"
    assert api_carrier_for("usps") == "usps"
    assert api_carrier_for("canada_post") == "17track"
    assert api_carrier_for("s10") == "17track"


def test_offsets_and_zones() -> None:
    assert parse_offset("-05:00") == timezone(timedelta(hours=-5))
    assert parse_offset("-7:00") == timezone(timedelta(hours=-7))
    assert parse_offset("+0530") == timezone(timedelta(hours=5, minutes=30))
    assert parse_offset("Z") == UTC
    assert parse_offset("soon") is None
    assert str(zone_for(country="US", region="AZ")) == "America/Phoenix"
    assert str(zone_for(region="BC")) == "America/Vancouver"
    assert str(zone_for(country="HONG KONG SAR, CHINA")) == "Asia/Hong_Kong"
    assert zone_for(country="ZZ") is None


def test_local_time_is_never_stamped_as_utc() -> None:
    naive = datetime(2024, 7, 1, 12, 0)
    # Daylight saving applies: New York is -04:00 in July.
    assert localize(naive, country="US", region="NY", home_zone="UTC") == datetime(2024, 7, 1, 16, tzinfo=UTC)
    # No location: the fallback location, then the carrier's home zone.
    assert localize(naive, fallback_locations=[("DE", "")], home_zone="UTC") == datetime(2024, 7, 1, 10, tzinfo=UTC)
    assert localize(naive, home_zone="Asia/Tokyo") == datetime(2024, 7, 1, 3, tzinfo=UTC)
    # An explicit offset wins over the place.
    assert localize(naive, offset="+01:00", country="US", home_zone="UTC") == datetime(2024, 7, 1, 11, tzinfo=UTC)


def _event(minute: int, status: str = "in_transit", code: str = "AR") -> TrackingEventRecord:
    return TrackingEventRecord(
        occurred_at=datetime(2024, 1, 1, 12, minute, tzinfo=UTC), status=status, raw_code=code, raw_text="x"
    )


def test_events_newest_first_and_deduplicated() -> None:
    events = finalize_events([_event(1), _event(5), _event(1), _event(3, "unknown", "ZZ")])
    assert [event.occurred_at.minute for event in events] == [5, 3, 1]


def test_roll_up_status_from_the_newest_known_event_when_the_carrier_gives_none() -> None:
    result = roll_up(
        tracking_number="N1",
        carrier="ups",
        events=[_event(1, "in_transit"), _event(9, "delivered", "DL"), _event(20, "unknown", "ZZ")],
    )
    assert (result.status, result.raw_code) == ("delivered", "DL")
    assert result.delivered_at == datetime(2024, 1, 1, 12, 9, tzinfo=UTC)
    empty = roll_up(tracking_number="N2", carrier="ups", events=[])
    assert empty.status == "pending" and empty.found


def test_result_json_shape() -> None:
    result = TrackingResult(
        tracking_number="N1",
        carrier="usps",
        status="in_transit",
        events=(_event(4),),
        estimated_delivery=date(2024, 1, 3),
        delivered_at=None,
    )
    payload = result_to_json(result)
    assert payload["estimatedDelivery"] == "2024-01-03"
    assert payload["events"][0]["occurredAt"] == "2024-01-01T12:04:00Z"
    assert results_to_json([result]) == payload
    assert results_to_json([result, result]) == [payload, payload]
    assert format_moment(datetime(2024, 1, 1, 7, tzinfo=timezone(timedelta(hours=-5)))) == "2024-01-01T12:00:00Z"
    assert format_moment(None) is None


def test_every_mapping_table_speaks_the_vocabulary() -> None:
    from tracking.carriers import dhl, fedex, seventeentrack, ups, usps
    from tracking.vocabulary import STATUSES, SUBSTATUSES

    tables = [
        ups.STATUS_CODES,
        ups.ACTIVITY_TYPES,
        fedex.EVENT_TYPES,
        fedex.DERIVED_CODES,
        usps.EVENT_CODES,
        usps.STATUS_CATEGORIES,
        dhl.STATUS_CODES,
        seventeentrack.SUB_STATUSES,
        seventeentrack.MAIN_STATUSES,
        seventeentrack.STAGES,
    ]
    for module in (ups, fedex, usps, dhl, seventeentrack):
        assert module.STATUS_MAP
    for table in tables:
        for raw_code, (status, substatus) in table.items():
            assert status in STATUSES, raw_code
            assert substatus == "" or substatus in SUBSTATUSES, raw_code
