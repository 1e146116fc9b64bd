"""`replay_webhooks [--store D] [--state S|any] [--since 6h|ISO] [--dry-run]`: process stored deliveries again."""

from __future__ import annotations

from django.core.management.base import CommandParser
from django.template.defaultfilters import pluralize

from oma.core.cli import SINCE_HELP, PipeSafeCommand, parse_since
from oma.stores.cli import store_for_cli
from webhooks.models import WebhookDelivery
from webhooks.replay import deliveries_for_replay, deliveries_replay


class Command(PipeSafeCommand):
    help = "Process stored webhook deliveries again (by default every failed one)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--store", metavar="DOMAIN", help="only this store's deliveries")
        parser.add_argument(
            "--state",
            default=WebhookDelivery.State.FAILED,
            choices=[*WebhookDelivery.State.values, "any"],
            help="only deliveries in this state (default: failed; 'any' for all)",
        )
        parser.add_argument("--since", metavar="WHEN", help=f"only deliveries received at or after: {SINCE_HELP}")
        parser.add_argument("--dry-run", action="store_true", help="count what would be replayed")

    def handle(self, *args: object, **options: object) -> None:
        since = parse_since(str(options["since"])) if options["since"] else None
        store = store_for_cli(str(options["store"])) if options["store"] else None
        state = None if options["state"] == "any" else str(options["state"])
        deliveries = deliveries_for_replay(store=store, state=state, since=since)
        if options["dry_run"]:
            matching = deliveries.count()
            self.stdout.write(f"{matching} deliver{pluralize(matching, 'y matches,ies match')}")
            return
        count = deliveries_replay(deliveries=deliveries)
        self.stdout.write(f"{count} deliver{pluralize(count, 'y,ies')} queued for processing again")
