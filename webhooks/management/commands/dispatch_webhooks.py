"""`dispatch_webhooks [--max-batches N]`: run the webhook outbox once, now."""

from __future__ import annotations

from django.core.management.base import CommandParser

from oma.core.cli import PipeSafeCommand
from webhooks.dispatch import deliveries_dispatch_due


class Command(PipeSafeCommand):
    help = (
        "Run the webhook outbox once (what beat does every minute): re-enqueue deliveries whose dispatch is due. "
        "Useful right after a broker outage."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--max-batches", type=int, default=200)

    def handle(self, *args: object, max_batches: int = 200, **options: object) -> None:
        result = deliveries_dispatch_due(max_batches=max_batches)
        self.stdout.write(f"{result.dispatched} deliveries enqueued" + (" (broker down)" if result.broker_down else ""))
