"""What "the same tracking number" means: the one definition OMA uses everywhere.

Two functions, both pure:

- `normalize(number)`: what a human or a platform typed -> the stored form. Trimmed, upper case, with every
  whitespace character (unicode included), ASCII hyphen and dot removed: ' 1z 5r8-939.0357567127 ' ->
  '1Z5R89390357567127'. Carriers print and read their numbers in groups ("1Z 5R8 939", "9405-5036-...",
  "1Z.999..."); none uses a space, dash or dot as part of the number.

  Why this rule. Before the redesign there were four: tracking.services and the channel connectors dropped
  whitespace and hyphens; carrier detection dropped whitespace only (and tried a hyphen-free variant); the unified
  status kept letters and digits only. The last is the strictest but cannot be the stored form: a channel must
  still refuse "ABC$%^123456" or "1Z#99" as malformed (`tracking_number_problem`) instead of silently tracking
  "ABC123456", so every character that is not a separator is kept and left for that check to judge. Dots join
  the separators (a number typed as "1Z.999.AA1..." is the same parcel); anything else ('/', '#', '_', letters
  outside A-Z) is kept as typed. The unified status and reconciliation compare numbers with this same rule, so a
  Genstore fulfillment typed "1Z/999..." no longer matches a tracked "1Z999..." (it matched under the
  letters-and-digits rule): the one behaviour this unification gives up, on purpose.

- `canonical(number, carrier=..., priority=...)`: the identity used to say "same parcel": the normalized number,
  or, when carrier detection recognizes a barcode that carries routing data around the number the carrier tracks
  (USPS 420+ZIP[+4] routing prefixes, FedEx 96/SSCC-style Ground barcodes, FedEx 34/32-digit Express barcodes),
  the tracked part. A carrier given by the caller restricts the choice to that carrier's formats; otherwise the
  first valid candidate wins (detection ranks by check digit, the store's priority list, then confidence). A number
  no format validates is its own identity. This is what a shipment row stores as `tracking_number`.

`choose_candidate` is the one choice rule behind `canonical` and `tracking.services`' detection fields.
`tracking.detection.detect` expects a normalized number: this module is the entry point for raw input.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from tracking.detection.detect import Candidate, detect

# Whitespace (any, unicode included), ASCII hyphen-minus and full stop: the separators people and labels put
# between groups of a tracking number.
_SEPARATORS = re.compile(r"[\s\-.]+")


def normalize(number: str) -> str:
    """'1z 5r8-939.0357567127' -> '1Z5R89390357567127' (see the module docstring for why this rule)."""
    return _SEPARATORS.sub("", number or "").upper()


def choose_candidate(candidates: Sequence[Candidate], carrier: str = "") -> Candidate | None:
    """The candidate a shipment follows: with a carrier, that carrier's first valid candidate (or its first one,
    invalid, when none validates); without one, the first valid candidate. None when nothing fits."""
    if carrier:
        matching = [c for c in candidates if c.carrier == carrier]
        return next((c for c in matching if c.valid), matching[0] if matching else None)
    return next((c for c in candidates if c.valid), None)


def canonical(number: str, *, carrier: str = "", priority: Sequence[str] = ()) -> str:
    """The number the tracking engine stores and asks the carrier about, for any spelling of `number`.

    '420 22153 9101026837331000039521' -> '9101026837331000039521' (USPS routing prefix dropped). `carrier` is a
    courier code (ups, fedex, usps...); `priority` the store's carrier priority list.
    """
    return _canonical(normalize(number), carrier.strip().lower(), tuple(priority))


@lru_cache(maxsize=4096)
def _canonical(number: str, carrier: str, priority: tuple[str, ...]) -> str:
    # Cached: a CSV import asks for the same numbers several times (allocation, then matching).
    chosen = choose_candidate(detect(number, priority=priority), carrier)
    return (chosen.tracking_number if chosen is not None and chosen.valid else "") or number
