from __future__ import annotations

from datetime import datetime

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from oma.stores.models import Store
from webhooks.models import WebhookDelivery
from webhooks.replay import deliveries_for_replay, deliveries_replay


def _parse_since(text: str) -> datetime:
    moment = parse_datetime(text)
    if moment is None:
        day = parse_date(text)
        if day is None:
            raise CommandError(f"--since must be an ISO date or date-time (got {text!r})")
        moment = datetime(day.year, day.month, day.day, tzinfo=timezone.get_default_timezone())
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, timezone.get_default_timezone())
    return moment


class Command(BaseCommand):
    help = "Process stored webhook deliveries again (by default every failed one)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--store", metavar="DOMAIN", help="only this store's deliveries")
        parser.add_argument(
            "--state",
            default=WebhookDelivery.State.FAILED,
            choices=[*WebhookDelivery.State.values, "any"],
            help="only deliveries in this state (default: failed; 'any' for all)",
        )
        parser.add_argument("--since", metavar="ISO", help="only deliveries received at or after this time")
        parser.add_argument("--dry-run", action="store_true", help="count what would be replayed")

    def handle(self, *args: object, **options: object) -> None:
        store = None
        if options["store"]:
            domain = str(options["store"]).strip().lower()
            store = Store.objects.filter(domain=domain).first()
            if store is None:
                raise CommandError(f"no store {domain!r}")
        state = None if options["state"] == "any" else str(options["state"])
        since = _parse_since(str(options["since"])) if options["since"] else None
        deliveries = deliveries_for_replay(store=store, state=state, since=since)
        if options["dry_run"]:
            self.stdout.write(f"{deliveries.count()} deliveries match")
            return
        count = deliveries_replay(deliveries=deliveries)
        self.stdout.write(f"{count} deliveries queued for processing again")
