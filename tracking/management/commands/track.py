"""`track NUMBER [--carrier C] [--json]`: a one-off lookup through the configured carrier account."""

from __future__ import annotations

import json

from django.core.management.base import CommandError, CommandParser

from oma.core.cli import PipeSafeCommand
from oma.stores.cli import store_for_cli
from tracking.carriers.base import TrackingResult
from tracking.carriers.serialize import format_moment, results_to_json
from tracking.carriers.transport import CarrierError
from tracking.polling import NoCarrierAccount, lookup_tracking


class Command(PipeSafeCommand):
    help = (
        "Look a tracking number up now through the configured carrier account and print its timeline "
        "(--json: the same JSON as parse_tracking). Nothing is stored."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("number")
        parser.add_argument("--carrier", default="", help="ups, fedex, usps, dhl, 17track... (default: detected)")
        parser.add_argument("--store", default="", help="use this store's accounts and carrier priority")
        parser.add_argument("--json", action="store_true", help="print the normalized result as JSON")

    def handle(self, *args: object, **options: object) -> None:
        store = store_for_cli(str(options["store"])) if options["store"] else None
        try:
            lookup = lookup_tracking(
                tracking_number=str(options["number"]), carrier=str(options["carrier"]) or None, store=store
            )
        except (NoCarrierAccount, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        except CarrierError as exc:
            raise CommandError(f"the carrier could not answer: {exc}") from exc
        if options["json"]:
            self.stdout.write(json.dumps(results_to_json(lookup.results), indent=2))
            return
        for result in lookup.results:
            self._print_timeline(result, via=lookup.account.get_carrier_display())

    def _print_timeline(self, result: TrackingResult, *, via: str) -> None:
        if not result.found:
            self.stdout.write(f"{result.tracking_number} ({via}): not found — {result.error or 'no information yet'}")
            return
        headline = f"{result.tracking_number} ({via}): {result.status}"
        if result.substatus:
            headline += f" / {result.substatus}"
        if result.raw_text:
            headline += f" — {result.raw_text}"
        self.stdout.write(headline)
        if result.delivered_at:
            signed = f", signed by {result.signed_by}" if result.signed_by else ""
            self.stdout.write(f"delivered at {format_moment(result.delivered_at)}{signed}")
        elif result.estimated_delivery:
            self.stdout.write(f"estimated delivery {format_moment(result.estimated_delivery)}")
        for event in result.events:  # newest first
            status = event.status + (f"/{event.substatus}" if event.substatus else "")
            parts = [format_moment(event.occurred_at) or "", status.ljust(32), event.raw_text]
            if event.location:
                parts.append(f"({event.location})")
            self.stdout.write("  " + "  ".join(parts))
