"""`detect_carrier` and `parse_tracking`, run as a merchant or operator would (call_command)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_detect_carrier_prints_one_json_line_per_number() -> None:
    output = run("detect_carrier", "1z 5r8 939 0357567127", "RB123456785GB", "not a number")
    lines = [json.loads(line) for line in output.splitlines()]
    assert [line["number"] for line in lines] == ["1z 5r8 939 0357567127", "RB123456785GB", "not a number"]
    assert lines[0]["candidates"] == [
        {
            "carrier": "ups",
            "format": "ups",
            "valid": True,
            "trackingUrl": "https://www.ups.com/track?tracknum=1Z5R89390357567127",
        }
    ]
    assert lines[1]["candidates"][0]["carrier"] == "s10" and lines[1]["candidates"][0]["valid"]
    assert lines[2]["candidates"] == []


def test_detect_carrier_priority_decides_between_two_valid_check_digits() -> None:
    default = json.loads(run("detect_carrier", "287809468872"))
    preferred = json.loads(run("detect_carrier", "287809468872", "--priority", "purolator"))
    assert {c["carrier"] for c in default["candidates"]} == {"fedex", "purolator"}
    assert preferred["candidates"][0]["carrier"] == "purolator"
    assert (
        json.loads(run("detect_carrier", "287809468872", "--priority", "fedex"))["candidates"][0]["carrier"] == "fedex"
    )


def test_detect_carrier_marks_a_wrong_check_digit_invalid() -> None:
    line = json.loads(run("detect_carrier", "1Z5R89390357567128"))
    assert [(c["carrier"], c["valid"]) for c in line["candidates"]] == [("ups", False)]


def test_parse_tracking_single_package() -> None:
    result = json.loads(run("parse_tracking", "--carrier", "ups", str(FIXTURES / "ups" / "delivered.json")))
    assert isinstance(result, dict)
    assert list(result)[:6] == ["trackingNumber", "status", "substatus", "events", "estimatedDelivery", "deliveredAt"]
    assert (result["trackingNumber"], result["status"], result["deliveredAt"]) == (
        "1Z5R89390357567127",
        "delivered",
        "2023-11-30T21:43:40Z",
    )
    assert set(result["events"][0]) == {"occurredAt", "status", "substatus", "rawCode", "rawText", "location"}
    assert result["events"][0] == {
        "occurredAt": "2023-11-30T21:43:40Z",
        "status": "delivered",
        "substatus": "",
        "rawCode": "D/FS/011",
        "rawText": "DELIVERED",
        "location": "DUNLAP, TN, US",
    }


@pytest.mark.parametrize(
    ("carrier", "fixture", "count"),
    [("fedex", "several_packages", 3), ("17track", "gettrackinfo", 4), ("dhl", "in_transit_parcel", 1)],
)
def test_parse_tracking_several_packages_print_a_list(carrier: str, fixture: str, count: int) -> None:
    output = json.loads(run("parse_tracking", "--carrier", carrier, str(FIXTURES / carrier / f"{fixture}.json")))
    results = output if isinstance(output, list) else [output]
    assert len(results) == count
    assert isinstance(output, list) == (count > 1)


def test_parse_tracking_estimated_delivery_as_a_date() -> None:
    result = json.loads(
        run("parse_tracking", "--carrier", "usps", str(FIXTURES / "usps" / "in_transit_local_times.json"))
    )
    assert result["estimatedDelivery"] == "2024-07-12"


def test_parse_tracking_not_found_needs_the_number_asked() -> None:
    path = str(FIXTURES / "dhl" / "not_found.json")
    with pytest.raises(CommandError, match="--number"):
        run("parse_tracking", "--carrier", "dhl", path)
    result = json.loads(run("parse_tracking", "--carrier", "dhl", "--number", "3318810036", path))
    assert (result["trackingNumber"], result["status"], result["found"]) == ("3318810036", "unknown", False)


def test_parse_tracking_rejects_unknown_carrier_and_bad_files(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="unknown carrier"):
        run("parse_tracking", "--carrier", "pigeon", str(FIXTURES / "ups" / "delivered.json"))
    with pytest.raises(CommandError, match="cannot read"):
        run("parse_tracking", "--carrier", "ups", str(tmp_path / "missing.json"))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(CommandError, match="not JSON"):
        run("parse_tracking", "--carrier", "ups", str(broken))
