"""Which carriers a tracking number may belong to: every matching format, valid or not, best first.

Input is a number as `tracking.numbers.normalize` returns it (upper case, no separators): the format table is
written for that form. Raw input goes through `tracking.numbers` (normalize, then detect or canonical)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from tracking.detection.formats import FORMATS, TrackingFormat

# Confidence by what the match proves. A passing check digit is strong evidence (a random string passes 1 time in
# 7 to 36); a distinctive prefix without a check digit is good evidence; a bare run of digits is weak.
CONFIDENCE_CHECK_DIGIT = 0.9
CONFIDENCE_DISTINCTIVE_BONUS = 0.05
CONFIDENCE_PATTERN_DISTINCTIVE = 0.6
CONFIDENCE_PATTERN_GENERIC = 0.3
CONFIDENCE_CHECK_DIGIT_FAILED = 0.05


@dataclass(frozen=True, slots=True)
class Candidate:
    carrier: str  # tracking_number_data courier code: ups, fedex, usps, dhl, canada_post, s10, ...
    format: str  # format id, e.g. "ups", "fedex_12", "usps_impb_c"
    valid: bool  # pattern matches and the check digit (when the format has one) is right
    tracking_url: str  # public page for the customer; "" when the carrier has none we know
    confidence: float  # 0..1, see the CONFIDENCE_* constants
    format_name: str = ""
    has_check_digit: bool = False
    number: str = ""  # the normalized number detection was given
    tracking_number: str = ""  # what to send to the carrier: the number, or the part of a barcode that tracks


def _candidate(fmt: TrackingFormat, match: re.Match[str], number: str) -> Candidate:
    valid = True
    if fmt.checksum is not None:
        serial = match.group("serial")
        if fmt.serial_prefix and not serial.startswith(fmt.serial_prefix):
            serial = fmt.serial_prefix + serial
        valid = fmt.checksum(serial, match.group("check"))
    if valid and fmt.extra_rule is not None:
        valid = fmt.extra_rule(match)

    if not valid:
        confidence = CONFIDENCE_CHECK_DIGIT_FAILED
    elif fmt.has_check_digit:
        confidence = CONFIDENCE_CHECK_DIGIT + (CONFIDENCE_DISTINCTIVE_BONUS if fmt.distinctive else 0.0)
    else:
        confidence = CONFIDENCE_PATTERN_DISTINCTIVE if fmt.distinctive else CONFIDENCE_PATTERN_GENERIC

    tracking_number = match.group(fmt.tracking_group) if fmt.tracking_group else number
    if fmt.url_for is not None:
        url = fmt.url_for(match, tracking_number)
    else:
        url = fmt.tracking_url.format(number=tracking_number) if fmt.tracking_url else ""
    return Candidate(
        carrier=fmt.carrier,
        format=fmt.format,
        valid=valid,
        tracking_url=url,
        confidence=round(confidence, 4),
        format_name=fmt.name,
        has_check_digit=fmt.has_check_digit,
        number=number,
        tracking_number=tracking_number,
    )


def detect(number: str, *, priority: Sequence[str] = ()) -> list[Candidate]:
    """Every carrier format the (normalized) number matches, ordered best first.

    Order: valid before invalid; among valid ones, a passing check digit before a pattern-only match; then the
    store's carrier priority list (earlier = preferred; carriers not listed come after); then confidence; then the
    format table's order. So when a number passes two carriers' check digits, the priority list decides.
    """
    rank_of = {carrier: index for index, carrier in enumerate(priority)}
    unlisted = len(rank_of)
    found: list[tuple[Candidate, int]] = []
    for order, fmt in enumerate(FORMATS):
        match = fmt.pattern.fullmatch(number) if number else None
        if match is not None:
            found.append((_candidate(fmt, match, number), order))

    def sort_key(item: tuple[Candidate, int]) -> tuple[int, int, float, int]:
        candidate, order = item
        tier = 0 if candidate.valid and candidate.has_check_digit else 1 if candidate.valid else 2
        return (tier, rank_of.get(candidate.carrier, unlisted), -candidate.confidence, order)

    return [candidate for candidate, _ in sorted(found, key=sort_key)]


def best_candidate(number: str, *, priority: Sequence[str] = ()) -> Candidate | None:
    """The first valid candidate, or None when no format validates the number."""
    for candidate in detect(number, priority=priority):
        if candidate.valid:
            return candidate
    return None
