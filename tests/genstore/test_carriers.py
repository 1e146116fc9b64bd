"""trackingCompany names: one for every carrier code the tracking engine uses."""

from __future__ import annotations

import pytest

from oma.genstore.carriers import (
    AGGREGATOR_CODES,
    CARRIER_DISPLAY_NAMES,
    UNKNOWN_CARRIER_NAME,
    tracking_company_for,
)
from tracking.detection.formats import FORMATS
from tracking.models import CarrierCode


def test_every_tracking_carrier_code_has_a_name():
    codes = {fmt.carrier for fmt in FORMATS} | set(CarrierCode.values)
    # S10 numbers are named from their country suffix; an aggregator names no carrier.
    assert codes - set(CARRIER_DISPLAY_NAMES) - set(AGGREGATOR_CODES) <= {"s10"}
    assert CarrierCode.SEVENTEENTRACK in AGGREGATOR_CODES


@pytest.mark.parametrize(
    ("carrier", "number", "company"),
    [
        ("ups", "1Z999AA10123456784", "UPS"),
        (" FedEx ", "", "FedEx"),
        ("dhl_express", "", "DHL Express"),
        ("17track", "", UNKNOWN_CARRIER_NAME),
        ("", "", UNKNOWN_CARRIER_NAME),
        ("s10", "RA123456785GB", "Royal Mail"),
        ("s10", "RA123456785ZZ", "Postal service"),
        ("bring-cargo_express", "", "Bring Cargo Express"),
    ],
)
def test_tracking_company_for(carrier, number, company):
    assert tracking_company_for(carrier, number) == company
