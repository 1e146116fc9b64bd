"""Detection behaviour that does not need the reference data: ranking, URLs, embedded numbers, check digits."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from tracking import detection
from tracking.detection import Candidate
from tracking.detection.checksums import luhn, mod7, mod10, mod_37_36, s10, weighted_sum_mod
from tracking.detection.formats import CARRIER_CODES, FORMATS
from tracking.numbers import normalize


def detect(number: str, *, priority: Sequence[str] = ()) -> list[Candidate]:
    """Detection of a number as people type it: normalized first, as every caller does."""
    return detection.detect(normalize(number), priority=priority)


def best_candidate(number: str, *, priority: Sequence[str] = ()) -> Candidate | None:
    return detection.best_candidate(normalize(number), priority=priority)


def test_ups_number_is_detected_with_url_and_confidence() -> None:
    first = detect("1z 5r8 939 0357567127")[0]
    assert (first.carrier, first.format, first.valid, first.has_check_digit) == ("ups", "ups", True, True)
    assert first.tracking_url == "https://www.ups.com/track?tracknum=1Z5R89390357567127"
    assert first.confidence > 0.9
    assert first.tracking_number == "1Z5R89390357567127"


def test_wrong_check_digit_is_still_a_candidate_but_invalid_and_last() -> None:
    candidates = detect("1Z5R89390357567128")
    assert [(c.carrier, c.valid) for c in candidates] == [("ups", False)]
    assert candidates[0].confidence < 0.1
    assert best_candidate("1Z5R89390357567128") is None


def test_unknown_text_has_no_candidate() -> None:
    assert detect("hello world") == []
    assert detect("") == []
    assert best_candidate("") is None


def test_check_digit_match_ranks_above_pattern_only_match() -> None:
    # 14 digits + a DPD check character: DPD's MOD 37,36 passes; DHL eCommerce (14) cannot, being 15 long.
    candidates = detect("09 9800 0002 0033 F")
    assert candidates[0].carrier == "dpd" and candidates[0].valid
    # A bare 14-digit run only matches formats without a check digit: valid, but weak.
    generic = detect("60120172242323")
    assert generic[0].carrier == "dhl" and generic[0].valid and not generic[0].has_check_digit
    assert generic[0].confidence < 0.5


def test_priority_list_orders_numbers_that_pass_two_check_digits() -> None:
    number = "287809468872"  # a Purolator number that also passes FedEx Express (12)
    default = detect(number)
    assert {c.carrier for c in default if c.valid} == {"purolator", "fedex"}
    assert detect(number, priority=["purolator"])[0].carrier == "purolator"
    assert detect(number, priority=["fedex", "purolator"])[0].carrier == "fedex"
    assert detect(number, priority=["ups", "purolator"])[0].carrier == "purolator"


def test_priority_never_lifts_an_invalid_candidate_above_a_valid_one() -> None:
    candidates = detect("1Z5R89390357567127", priority=["fedex", "usps"])
    assert candidates[0].carrier == "ups" and candidates[0].valid


@pytest.mark.parametrize(
    ("barcode", "format_id", "tracking_number"),
    [
        ("1001921334250001000300779017972697", "fedex_34", "779017972697"),
        ("9622001900000000000000776632517510", "fedex_ground_gsn", "776632517510"),
        ("32971514560102447849175802862014", "fedex_astra_32", "784917580286"),
        ("9611020987654312345672", "fedex_ground_96", "987654312345672"),
        ("420 22153 9101026837331000039521", "usps_legacy", "9101026837331000039521"),
        ("4201002334249200190132607600833457", "usps_impb_c", "9200190132607600833457"),
    ],
)
def test_barcodes_give_the_number_to_track(barcode: str, format_id: str, tracking_number: str) -> None:
    candidate = next(c for c in detect(barcode) if c.format == format_id)
    assert candidate.valid
    assert candidate.tracking_number == tracking_number
    assert tracking_number in candidate.tracking_url
    assert candidate.number == normalize(barcode)


def test_embedded_fedex_express_numbers_are_themselves_valid_fedex_numbers() -> None:
    for barcode in ("1001921334250001000300779017972697", "32971514560102447849175802862014"):
        embedded = best_candidate(barcode).tracking_number
        assert best_candidate(embedded).format == "fedex_12"


def test_s10_url_follows_the_issuing_post_and_the_country_must_exist() -> None:
    assert detect("RB123456785US")[0].tracking_url.startswith("https://tools.usps.com/")
    assert detect("RB123456785GB")[0].tracking_url.startswith("https://www.royalmail.com/")
    assert detect("RB123456785FR")[0].tracking_url == "https://t.17track.net/en#nums=RB123456785FR"
    assert not detect("RB123456785XX")[0].valid


def test_hyphenated_input_is_detected_once_normalized() -> None:
    assert best_candidate("1Z-5R8-939-0357567127").carrier == "ups"
    assert best_candidate("1LS7119013618127-1").format == "lasership_1ls7_18"
    # The stored form (no hyphen) is the same LaserShip number: detection sees what the shipment row holds.
    assert detection.best_candidate("1LS71190136181271").format == "lasership_1ls7_18"


def test_every_format_has_a_courier_code_and_distinct_id() -> None:
    ids = [fmt.format for fmt in FORMATS]
    assert len(ids) == len(set(ids))
    assert {"ups", "fedex", "usps", "dhl", "canada_post", "s10"} <= set(CARRIER_CODES)
    for fmt in FORMATS:
        if fmt.checksum is not None:
            assert "check" in fmt.pattern.groupindex and "serial" in fmt.pattern.groupindex, fmt.format


def test_check_digit_algorithms_on_known_values() -> None:
    assert mod10(evens_multiplier=1, odds_multiplier=2)("5R89390357567", "") is False
    assert mod10(evens_multiplier=1, odds_multiplier=2)("5R8939035756712", "7")  # UPS, letters as (ASCII-3) mod 10
    assert mod10(evens_multiplier=3, odds_multiplier=1)("012345000000002", "7")  # FedEx SSCC-18 00 0123 4500 0000 0027
    assert mod7()("331881002", "5")
    assert luhn()("7992739871", "3")  # the classic Luhn example
    assert not luhn()("7992739871", "4")
    assert s10()("12345678", "5")  # UPU S10 example RB123456785GB
    assert mod_37_36()("008182709980000020033350276", "C")  # DPD parcel number, ISO 7064 MOD 37,36
    assert not mod_37_36()("008182709980000020033350276", "A")
    assert weighted_sum_mod(weights=(3, 1, 7, 3, 1, 7, 3, 1, 7, 3, 1), modulo1=11, modulo2=10)("98657878885", "5")
