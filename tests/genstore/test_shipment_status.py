"""Genstore's shipmentStatus values and their order (a push never moves a fulfillment backwards)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from oma.genstore.shipment_status import SHIPMENT_STATUS_RANK, SHIPMENT_STATUSES, shipment_status_moves_forward

CONTRACT_MD = Path(__file__).resolve().parents[2].parent / "shared" / "genstore-contract.md"


@pytest.mark.skipif(not CONTRACT_MD.exists(), reason="../shared/genstore-contract.md absent")
def test_values_are_the_contracts():
    row = next(line for line in CONTRACT_MD.read_text().splitlines() if line.startswith("| shipmentStatus values |"))
    assert tuple(re.findall(r"`([a-z_]+)`", row)) == SHIPMENT_STATUSES


def test_every_value_has_a_rank():
    assert set(SHIPMENT_STATUS_RANK) == set(SHIPMENT_STATUSES)
    assert len(SHIPMENT_STATUSES) == len(set(SHIPMENT_STATUSES))


def test_pushed_shipment_status_never_moves_backwards():
    assert shipment_status_moves_forward(None, "in_transit")
    assert shipment_status_moves_forward("in_transit", "delivered")
    assert not shipment_status_moves_forward("delivered", "in_transit")
    assert shipment_status_moves_forward("delayed", "in_transit")
    assert not shipment_status_moves_forward("failure", "out_for_delivery")
