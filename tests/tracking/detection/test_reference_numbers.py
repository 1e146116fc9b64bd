"""Detection against jkeen/tracking_number_data v2.0.0 (MIT), the labelled test oracle in ../shared.

The reference numbers are read at test time only; the product never reads ../shared. Without it the tests skip.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tracking import detection
from tracking.detection import FORMATS, Candidate
from tracking.detection.formats import FORMATS_BY_ID
from tracking.numbers import normalize

REPO_ROOT = Path(__file__).resolve().parents[3]
DATA_DIR = REPO_ROOT.parent / "shared" / "tracking_number_data" / "couriers"

# tracking_number_data leaves a few formats without an `id`: OMA's ids for them.
UNNAMED_FORMAT_IDS = {
    "UPS Waybill": "ups_waybill",
    "LaserShip 1LS7 (18)": "lasership_1ls7_18",
    "Old Dominion": "old_dominion",
    "Old Dominion Guaranteed Shipment": "old_dominion_guaranteed",
}

def detect(number: str, *, priority: Sequence[str] = ()) -> list[Candidate]:
    """Detection of a reference number as printed (spaces, hyphens): normalized first, as every caller does."""
    return detection.detect(normalize(number), priority=priority)


pytestmark = pytest.mark.skipif(not DATA_DIR.is_dir(), reason=f"reference data absent: {DATA_DIR}")


@dataclass(frozen=True)
class Labelled:
    courier: str
    format: str
    number: str
    has_checksum: bool


def _load() -> tuple[list[Labelled], list[Labelled]]:
    valid: list[Labelled] = []
    invalid: list[Labelled] = []
    if not DATA_DIR.is_dir():
        return valid, invalid
    for path in sorted(DATA_DIR.glob("*.json")):
        data = json.loads(path.read_text())
        for fmt in data["tracking_numbers"]:
            format_id = fmt.get("id") or UNNAMED_FORMAT_IDS[fmt["name"]]
            has_checksum = bool(fmt.get("validation", {}).get("checksum"))
            for number in fmt["test_numbers"].get("valid", []):
                valid.append(Labelled(data["courier_code"], format_id, number, has_checksum))
            for number in fmt["test_numbers"].get("invalid", []):
                invalid.append(Labelled(data["courier_code"], format_id, number, has_checksum))
    return valid, invalid


VALID, INVALID = _load()


def _ids(items: list[Labelled]) -> list[str]:
    return [f"{item.format}:{normalize(item.number)}" for item in items]


def test_counts_match_the_reference() -> None:
    couriers = {item.courier for item in VALID}
    print(f"\nreference: {len(VALID)} valid, {len(INVALID)} invalid numbers, {len(couriers)} couriers")
    assert len(VALID) == 192
    assert len(INVALID) == 88
    assert couriers <= {fmt.carrier for fmt in FORMATS}


def test_every_reference_format_is_in_our_table() -> None:
    reference_formats = {item.format for item in VALID + INVALID}
    assert reference_formats <= set(FORMATS_BY_ID), reference_formats - set(FORMATS_BY_ID)


@pytest.mark.parametrize("item", VALID, ids=_ids(VALID))
def test_valid_number_is_detected_valid_for_its_courier(item: Labelled) -> None:
    candidates = detect(item.number)
    ours = [c for c in candidates if c.carrier == item.courier and c.format == item.format]
    assert ours, [(c.carrier, c.format) for c in candidates]
    assert ours[0].valid


@pytest.mark.parametrize("item", [v for v in VALID if v.has_checksum], ids=_ids([v for v in VALID if v.has_checksum]))
def test_check_digit_formats_come_first_unless_another_courier_checksum_also_passes(item: Labelled) -> None:
    candidates = detect(item.number)
    other_checksums = [c for c in candidates if c.valid and c.has_check_digit and c.carrier != item.courier]
    if not other_checksums:
        assert candidates[0].carrier == item.courier, [(c.carrier, c.format, c.valid) for c in candidates]
    # Either way, naming the courier in the store's priority list puts it first.
    with_priority = detect(item.number, priority=[item.courier])
    assert with_priority[0].carrier == item.courier
    assert with_priority[0].valid


def test_collisions_are_decided_by_the_priority_list() -> None:
    collisions = []
    for item in VALID:
        candidates = detect(item.number)
        valid_checksum_couriers = {c.carrier for c in candidates if c.valid and c.has_check_digit}
        if item.has_checksum and len(valid_checksum_couriers) > 1:
            collisions.append((item, valid_checksum_couriers))
    print(f"\nnumbers passing two couriers' check digits: {len(collisions)}")
    assert collisions, "the reference data has known collisions (Purolator vs FedEx 12, USPS 420 vs FedEx 34)"
    for item, couriers in collisions:
        for courier in couriers:
            others = sorted(couriers - {courier})
            assert detect(item.number, priority=[courier, *others])[0].carrier == courier
            assert detect(item.number, priority=[*others, courier])[0].carrier != courier


def _valid_for_courier(item: Labelled) -> set[str]:
    """Formats of the same courier for which this 'invalid' number is listed valid elsewhere in the data."""
    return {v.format for v in VALID if v.courier == item.courier and normalize(v.number) == normalize(item.number)}


@pytest.mark.parametrize("item", INVALID, ids=_ids(INVALID))
def test_invalid_number_is_rejected_or_marked_invalid(item: Labelled) -> None:
    candidates = detect(item.number)
    same_format = [c for c in candidates if c.format == item.format]
    assert all(not c.valid for c in same_format), same_format
    valid_same_courier = {c.format for c in candidates if c.carrier == item.courier and c.valid}
    # Only a number the data lists as valid for another of the courier's formats may stay valid for the courier
    # (Purolator's 331426749957 is an invalid alpha number and a valid numeric one).
    assert valid_same_courier <= _valid_for_courier(item), valid_same_courier


def test_invalid_numbers_summary() -> None:
    rejected = marked_invalid = valid_elsewhere = 0
    for item in INVALID:
        candidates = detect(item.number)
        mine = [c for c in candidates if c.carrier == item.courier]
        if not mine:
            rejected += 1
        elif not any(c.valid for c in mine):
            marked_invalid += 1
        else:
            valid_elsewhere += 1
    print(
        f"\ninvalid numbers: {rejected} rejected, {marked_invalid} marked invalid, {valid_elsewhere} valid as "
        "another format of the same courier"
    )
    assert rejected + marked_invalid + valid_elsewhere == len(INVALID)
    assert valid_elsewhere <= 1


def _alter_check_digit(number: str, position: int) -> list[str]:
    char = number[position]
    alphabet = "0123456789" if char.isdigit() else "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return [number[:position] + other + number[position + 1 :] for other in alphabet if other != char]


@pytest.mark.parametrize("item", [v for v in VALID if v.has_checksum], ids=_ids([v for v in VALID if v.has_checksum]))
def test_altering_the_check_digit_makes_the_number_invalid(item: Labelled) -> None:
    number = normalize(item.number)
    fmt = FORMATS_BY_ID[item.format]
    match = fmt.pattern.fullmatch(number)
    assert match is not None
    position = match.start("check")
    for altered in _alter_check_digit(number, position):
        for candidate in detect(altered):
            if candidate.format == item.format:
                assert not candidate.valid, f"{altered} still passes {item.format}"


@pytest.mark.parametrize("item", VALID, ids=_ids(VALID))
def test_spacing_and_case_never_matter(item: Labelled) -> None:
    compact = normalize(item.number)
    rng = random.Random(compact)
    spaced = "".join(char + (" " * rng.randint(0, 2)) for char in compact)
    variants = [compact, compact.lower(), f"  {spaced}\t", spaced.lower(), item.number]
    expected = [(c.carrier, c.format, c.valid) for c in detect(compact)]
    for variant in variants:
        assert [(c.carrier, c.format, c.valid) for c in detect(variant)] == expected, variant
