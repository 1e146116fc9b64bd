"""Every carrier module's CarrierSpec, by our carrier code."""

from __future__ import annotations

from tracking.carriers import dhl, fedex, seventeentrack, ups, usps
from tracking.carriers.base import CarrierSpec

CARRIERS: dict[str, CarrierSpec] = {
    spec.code: spec for spec in (ups.SPEC, fedex.SPEC, usps.SPEC, dhl.SPEC, seventeentrack.SPEC)
}

# Detection (tracking_number_data courier codes) -> the API that tracks the number. Everything else goes to 17TRACK,
# the aggregator for the long tail.
DETECTED_TO_API: dict[str, str] = {"ups": "ups", "fedex": "fedex", "usps": "usps", "dhl": "dhl"}
LONG_TAIL = seventeentrack.SPEC.code


class UnknownCarrier(KeyError):
    """No carrier module has this code."""


def get_spec(code: str) -> CarrierSpec:
    """The CarrierSpec for ups, fedex, usps, dhl or 17track (case-insensitive); UnknownCarrier otherwise."""
    try:
        return CARRIERS[(code or "").strip().lower()]
    except KeyError:
        raise UnknownCarrier(f"unknown carrier {code!r}; known: {', '.join(sorted(CARRIERS))}") from None


def api_carrier_for(detected_carrier: str) -> str:
    """The carrier module that tracks a number detected as `detected_carrier` (a courier code): its own API when
    OMA has one, else 17TRACK."""
    return DETECTED_TO_API.get((detected_carrier or "").strip().lower(), LONG_TAIL)
