"""`detect_carrier NUMBER...`: which carriers each tracking number may belong to, one JSON line per number."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandParser

from oma.core.cli import PipeSafeCommand
from tracking.detection import detect
from tracking.numbers import normalize


class Command(PipeSafeCommand):
    help = (
        "Print one JSON line per number: {number, candidates: [{carrier, format, valid, trackingUrl}]}, best "
        "candidate first (valid check digit first, then the --priority carriers)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("numbers", nargs="+", metavar="NUMBER", help="tracking numbers, any spacing or case")
        parser.add_argument(
            "--priority",
            default="",
            help="comma-separated courier codes the store prefers when a number fits several (e.g. purolator,fedex)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        priority = [code.strip().lower() for code in str(options["priority"]).split(",") if code.strip()]
        for number in options["numbers"]:
            candidates = detect(normalize(str(number)), priority=priority)
            line = {
                "number": str(number),
                "candidates": [
                    {
                        "carrier": candidate.carrier,
                        "format": candidate.format,
                        "valid": candidate.valid,
                        "trackingUrl": candidate.tracking_url,
                    }
                    for candidate in candidates
                ],
            }
            self.stdout.write(json.dumps(line))
