"""Carrier detection from a normalized tracking number: OMA's own format table (formats.py), check digits
(checksums.py) and the ranking of candidates (detect.py). Raw input and the stored identity: tracking.numbers.

The submodules import each other only downwards (detect -> formats -> checksums), never this package."""

from tracking.detection.detect import Candidate, best_candidate, detect
from tracking.detection.formats import CARRIER_CODES, FORMATS, FORMATS_BY_ID, TrackingFormat

__all__ = [
    "CARRIER_CODES",
    "FORMATS",
    "FORMATS_BY_ID",
    "Candidate",
    "TrackingFormat",
    "best_candidate",
    "detect",
]
