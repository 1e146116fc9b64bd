"""`parse_tracking --carrier C FILE`: the normalized result of a recorded carrier response, as JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from django.core.management.base import CommandError, CommandParser

from oma.core.cli import PipeSafeCommand
from tracking.carriers.registry import CARRIERS, UnknownCarrier, get_spec
from tracking.carriers.serialize import results_to_json


def _numbers_in(carrier: str, raw: object) -> list[str]:
    """The tracking numbers a recorded response answers for (what the request would have asked)."""
    found: list[str] = []

    def add(value: object) -> None:
        if isinstance(value, str) and value.strip() and value.strip() not in found:
            found.append(value.strip())

    data = raw if isinstance(raw, dict) else {}
    if carrier == "ups":
        for shipment in data.get("trackResponse", {}).get("shipment", []) or []:
            add(shipment.get("inquiryNumber"))
            for package in shipment.get("package", []) or []:
                add(package.get("trackingNumber"))
    elif carrier == "fedex":
        for complete in data.get("output", {}).get("completeTrackResults", []) or []:
            add(complete.get("trackingNumber"))
    elif carrier == "usps":
        add(data.get("trackingNumber"))
    elif carrier == "dhl":
        for shipment in data.get("shipments", []) or []:
            add(shipment.get("id"))
    elif carrier == "17track":
        payload = data.get("data", {}) if isinstance(data.get("data"), dict) else {}
        for item in (payload.get("accepted") or []) + (payload.get("rejected") or []):
            add(item.get("number"))
    return found


class Command(PipeSafeCommand):
    help = (
        "Parse a recorded carrier response (the JSON body as the carrier sent it) and print the normalized result: "
        "{trackingNumber, status, substatus, events, estimatedDelivery, deliveredAt}, or a list when the response "
        "holds several packages. FILE '-' reads standard input."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--carrier", required=True, help=f"one of: {', '.join(CARRIERS)}")
        parser.add_argument("file", metavar="FILE")
        parser.add_argument(
            "--number",
            action="append",
            default=[],
            help="the tracking number(s) asked, when the response does not say (e.g. a 404 body)",
        )

    def handle(self, *args: object, **options: object) -> None:
        try:
            spec = get_spec(str(options["carrier"]))
        except UnknownCarrier as exc:
            raise CommandError(str(exc.args[0])) from exc
        path = str(options["file"])
        try:
            content = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror}") from exc
        try:
            raw = json.loads(content)
        except json.JSONDecodeError as exc:
            raise CommandError(f"{path} is not JSON: {exc}") from exc
        numbers = list(options["number"]) or _numbers_in(spec.code, raw)  # type: ignore[call-overload]
        if not numbers:
            raise CommandError("the response names no tracking number: pass the one asked with --number")
        results = spec.parse(raw, numbers)
        self.stdout.write(json.dumps(results_to_json(results), indent=2, ensure_ascii=False))
