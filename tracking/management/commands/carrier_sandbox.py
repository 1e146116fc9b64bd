"""`carrier_sandbox --port 8200`: serve the five carrier tracking APIs locally (see tracking/sandbox/server.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tracking.sandbox import CARRIERS, CarrierSandbox, Limit, numbers_for


class Command(BaseCommand):
    help = (
        "Run the carrier sandbox: UPS, FedEx, USPS, DHL and 17TRACK tracking APIs with scripted parcel journeys. "
        "Point carrier accounts at it with --base-url http://HOST:PORT."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8200)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument(
            "--epoch-hours-ago", type=float, default=48.0,
            help="journeys start within the 48 h after this moment (default: 48 h ago, so all stages show)",
        )
        parser.add_argument(
            "--time-scale", type=float, default=1.0,
            help="simulated seconds per real second (e.g. 3600: a journey's hour passes every second)",
        )
        parser.add_argument(
            "--rate-limit", action="append", default=[], metavar="CARRIER=REQUESTS/SECONDS",
            help="override a carrier's published limit, e.g. usps=1000/1 (repeatable)",
        )
        parser.add_argument("--token-ttl", type=float, default=3600.0, help="OAuth token lifetime in seconds")
        parser.add_argument("--examples", type=int, default=3, help="print this many sample numbers per carrier")

    def handle(self, *args: Any, **options: Any) -> None:
        limits: dict[str, Limit | tuple[int, float]] = {}
        for item in options["rate_limit"]:
            try:
                carrier, spec = item.split("=", 1)
                requests, seconds = spec.split("/", 1)
                limits[carrier.strip()] = Limit(int(requests), float(seconds))
            except ValueError as exc:
                raise CommandError(f"--rate-limit must look like CARRIER=REQUESTS/SECONDS (got {item!r})") from exc
            if carrier.strip() not in CARRIERS:
                raise CommandError(f"unknown carrier {carrier!r}: one of {', '.join(CARRIERS)}")
        epoch = (datetime.now(UTC) - timedelta(hours=float(options["epoch_hours_ago"]))).replace(microsecond=0)
        sandbox = CarrierSandbox(
            port=int(options["port"]), host=str(options["host"]), epoch=epoch, rate_limits=limits,
            token_ttl=float(options["token_ttl"]), time_scale=float(options["time_scale"]),
        )
        self.stdout.write(f"carrier sandbox on http://{options['host']}:{options['port']} (Ctrl-C to stop)")
        for carrier in CARRIERS:
            limit = sandbox.rate_limit(carrier)
            samples = ", ".join(
                f"{number} ({sandbox.scenario(number)})" for number in numbers_for(carrier, int(options["examples"]))
            )
            self.stdout.write(f"  {carrier:8} limit {limit.requests}/{limit.per_seconds:g}s  e.g. {samples}")
        self.stdout.flush()
        try:
            sandbox.serve_forever()
        except KeyboardInterrupt:
            self.stdout.write("stopped")
        finally:
            sandbox.stop()
