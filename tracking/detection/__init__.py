"""Carrier detection from a tracking number: OMA's own format table (formats.py), check digits (checksums.py) and
the ranking of candidates (detect.py)."""

from tracking.detection.detect import Candidate, best_candidate, detect, normalize
from tracking.detection.formats import CARRIER_CODES, FORMATS, FORMATS_BY_ID, TrackingFormat

__all__ = [
    "CARRIER_CODES",
    "FORMATS",
    "FORMATS_BY_ID",
    "Candidate",
    "TrackingFormat",
    "best_candidate",
    "detect",
    "normalize",
]
