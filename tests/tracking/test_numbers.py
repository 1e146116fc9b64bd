"""tracking.numbers: the one normalizer and the one identity, checked against every rule the old definitions had.

The table was built from the four definitions before the redesign (outputs recorded by running them):
  S  tracking.services.normalize_tracking_number          strip, drop whitespace and '-', upper
  C  oma.channels.connectors.base.normalize_tracking_number  drop whitespace and '-', upper
  F  oma.fulfillment.status.normalize_tracking_number     upper, keep letters and digits only
  D  tracking.detection.normalize                          drop whitespace, upper (detect() also tried no '-')
and oma.channels.services._canonical_number / tracking.services._detection_fields for the identity.
"""

from __future__ import annotations

import pytest

from tracking.detection import detect
from tracking.numbers import canonical, choose_candidate, normalize

# (typed, S, C, F, D, new normalize). Where the new rule departs from an old one, the row says why.
NORMALIZE_TABLE: list[tuple[str, str, str, str, str, str]] = [
    ("", "", "", "", "", ""),
    ("   ", "", "", "", "", ""),
    (" 1z 5r8-939 0357567127 \n", "1Z5R89390357567127", "1Z5R89390357567127", "1Z5R89390357567127",
     "1Z5R8-9390357567127", "1Z5R89390357567127"),  # D kept the '-' (detect() retried without it)
    ("1z-5r8 939", "1Z5R8939", "1Z5R8939", "1Z5R8939", "1Z-5R8939", "1Z5R8939"),
    ("a\u00a0b\tc", "ABC", "ABC", "ABC", "ABC", "ABC"),  # unicode whitespace counts as a separator everywhere
    ("12-34", "1234", "1234", "1234", "12-34", "1234"),
    ("9400 1000 0000 0000 0000 00", "9400100000000000000000", "9400100000000000000000", "9400100000000000000000",
     "9400100000000000000000", "9400100000000000000000"),
    ("9405-5036-9930-0155-9982-98", "9405503699300155998298", "9405503699300155998298", "9405503699300155998298",
     "9405-5036-9930-0155-9982-98", "9405503699300155998298"),
    ("1LS7119013618127-1", "1LS71190136181271", "1LS71190136181271", "1LS71190136181271", "1LS7119013618127-1",
     "1LS71190136181271"),
    # Dots: only F dropped them; now every caller does (a label printed "1Z.999..." is the same parcel).
    ("1Z.999.AA1", "1Z.999.AA1", "1Z.999.AA1", "1Z999AA1", "1Z.999.AA1", "1Z999AA1"),
    # Other punctuation stays, so a channel still refuses it as malformed (F alone dropped it).
    ("1Z/999#AA1", "1Z/999#AA1", "1Z/999#AA1", "1Z999AA1", "1Z/999#AA1", "1Z/999#AA1"),
    ("ABC$%^123456", "ABC$%^123456", "ABC$%^123456", "ABC123456", "ABC$%^123456", "ABC$%^123456"),
    ("ÄÖÜ123456", "ÄÖÜ123456", "ÄÖÜ123456", "ÄÖÜ123456", "ÄÖÜ123456", "ÄÖÜ123456"),
]


@pytest.mark.parametrize(("typed", "services", "channels", "fulfillment", "detection", "expected"), NORMALIZE_TABLE)
def test_normalize_keeps_every_old_rule_it_can(
    typed: str, services: str, channels: str, fulfillment: str, detection: str, expected: str
) -> None:
    assert normalize(typed) == expected
    # Where S and C agreed (the stored form until now), nothing changes unless a dot was typed.
    if "." not in typed:
        assert services == channels == expected
    # Detection sees the same number its hyphen-free retry saw.
    assert detection.replace("-", "").replace(".", "") == expected


def test_normalize_is_idempotent() -> None:
    for row in NORMALIZE_TABLE:
        assert normalize(normalize(row[0])) == normalize(row[0])


# (typed, carrier, priority, canonical): the identity old _canonical_number / _detection_fields gave.
CANONICAL_TABLE: list[tuple[str, str, tuple[str, ...], str]] = [
    # Not a known format, or not valid: the normalized number is its own identity.
    ("", "", (), ""),
    ("hello world", "", (), "HELLOWORLD"),
    ("1Z5R89390357567128", "", (), "1Z5R89390357567128"),  # bad UPS check digit
    ("4202215391010268373310000395", "", (), "4202215391010268373310000395"),
    # Plain numbers are themselves.
    ("1z 5r8 939 0357567127", "", (), "1Z5R89390357567127"),
    ("1z 5r8 939 0357567127", "ups", (), "1Z5R89390357567127"),
    ("1LS7119013618127-1", "", (), "1LS71190136181271"),
    # USPS 420+ZIP (and ZIP+4) routing prefixes dropped.
    ("420 22153 9101026837331000039521", "", (), "9101026837331000039521"),
    ("420221539101026837331000039521", "", (), "9101026837331000039521"),
    ("420787459400111206206406260787", "", (), "9400111206206406260787"),
    ("4201002334249200190132607600833457", "", (), "9200190132607600833457"),
    ("4201002334249200190132607600833457", "usps", (), "9200190132607600833457"),
    # FedEx barcodes: the tracked part.
    ("1001921334250001000300779017972697", "", (), "779017972697"),
    ("32971514560102447849175802862014", "", (), "784917580286"),
    ("9611020987654312345672", "", (), "987654312345672"),
    ("9622001900000000000000776632517510", "", (), "776632517510"),
    # A carrier that has no valid format for the number: the number as typed (normalized).
    ("4201002334249200190132607600833457", "fedex", (), "4201002334249200190132607600833457"),
    ("420221539101026837331000039521", "dhl", (), "420221539101026837331000039521"),
]


@pytest.mark.parametrize(("typed", "carrier", "priority", "expected"), CANONICAL_TABLE)
def test_canonical(typed: str, carrier: str, priority: tuple[str, ...], expected: str) -> None:
    assert canonical(typed, carrier=carrier, priority=priority) == expected
    assert canonical(canonical(typed, carrier=carrier, priority=priority), carrier=carrier) == expected


def test_canonical_reads_the_carrier_as_a_code() -> None:
    assert canonical("4201002334249200190132607600833457", carrier=" USPS ") == "9200190132607600833457"


def test_choose_candidate_prefers_the_given_carrier_then_the_first_valid() -> None:
    candidates = detect(normalize("4201002334249200190132607600833457"))
    assert [(c.carrier, c.valid) for c in candidates] == [("usps", True), ("fedex", False)]
    assert choose_candidate(candidates).carrier == "usps"  # type: ignore[union-attr]
    fedex = choose_candidate(candidates, "fedex")
    assert fedex is not None and fedex.carrier == "fedex" and not fedex.valid  # its only, invalid, candidate
    assert choose_candidate(candidates, "dhl") is None
    assert choose_candidate([]) is None
