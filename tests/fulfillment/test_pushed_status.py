"""What is pushed as Genstore's shipmentStatus for each OMA tracking status (genstore-contract.md, last table)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from oma.fulfillment.pushed_status import (
    GENSTORE_SHIPMENT_STATUS_AS_TRACKING,
    PUSHED_SHIPMENT_STATUS,
    shipment_status_for,
)
from oma.genstore.shipment_status import SHIPMENT_STATUS_RANK, SHIPMENT_STATUSES
from tracking.vocabulary import FAILURE_SUBSTATUSES, STATUSES, Status

CONTRACT_MD = Path(__file__).resolve().parents[2].parent / "shared" / "genstore-contract.md"


@pytest.mark.skipif(not CONTRACT_MD.exists(), reason="../shared/genstore-contract.md absent")
def test_push_mapping_matches_the_genstore_contract_table() -> None:
    table = CONTRACT_MD.read_text().split("| OMA status | `shipmentStatus` pushed |", 1)[1]
    rows = [line for line in table.splitlines()[2:] if line.startswith("|")]
    checked = 0
    for row in rows:
        statuses_cell, pushed_cell = (cell.strip() for cell in row.strip("|").split("|"))
        for status in re.findall(r"`([a-z_]+)`", statuses_cell):
            pushed = re.findall(r"`([a-z_]+)`", pushed_cell)
            if pushed_cell == "nothing":
                assert shipment_status_for(status) is None, status
            elif status == "exception":
                assert pushed == ["delayed", "failure"]
                assert shipment_status_for(status, "delayed") == "delayed"
                assert shipment_status_for(status, "lost") == "failure"
            else:
                assert shipment_status_for(status) == pushed[0], status
            checked += 1
    assert checked == len(STATUSES)


@pytest.mark.parametrize(
    ("substatus", "pushed"),
    [
        ("", "delayed"),
        ("delayed", "delayed"),
        ("weather", "delayed"),
        ("customs_hold", "delayed"),
        ("held", "delayed"),
        ("address_issue", "delayed"),
        ("lost", "failure"),
        ("destroyed", "failure"),
        ("disposed", "failure"),
        ("damaged", "failure"),
        ("undeliverable", "failure"),
        ("refused", "failure"),
    ],
)
def test_exception_pushes_delayed_while_moving_failure_when_gone(substatus: str, pushed: str) -> None:
    assert shipment_status_for(Status.EXCEPTION, substatus) == pushed


def test_every_status_is_mapped_to_a_genstore_value_or_nothing() -> None:
    assert set(PUSHED_SHIPMENT_STATUS) == set(STATUSES)
    pushed_values = {shipment_status_for(status, sub) for status in STATUSES for sub in ("", *FAILURE_SUBSTATUSES)}
    assert pushed_values - {None} <= set(SHIPMENT_STATUSES) == set(SHIPMENT_STATUS_RANK)


def test_every_genstore_value_reads_back_as_a_tracking_status() -> None:
    # The other direction (oma.fulfillment.status): a fulfillment OMA does not track, read through its shipmentStatus.
    assert set(GENSTORE_SHIPMENT_STATUS_AS_TRACKING) == set(SHIPMENT_STATUSES)
    assert {status for status, _ in GENSTORE_SHIPMENT_STATUS_AS_TRACKING.values()} <= set(STATUSES)
