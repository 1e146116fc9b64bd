"""`register_webhooks --store D --address URL`: subscribe URL to every topic OMA handles (only the missing ones)."""

from __future__ import annotations

import json

from django.core.management.base import CommandError, CommandParser

from oma.core.cli import PipeSafeCommand
from oma.genstore.errors import GenstoreError
from oma.stores.cli import genstore_reachable, store_for_cli
from oma.stores.subscriptions import subscription_address_error, webhook_subscriptions_register


class Command(PipeSafeCommand):
    help = "Subscribe ADDRESS to every Genstore topic OMA handles, creating only the missing subscriptions."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--store", required=True, metavar="DOMAIN", help="e.g. shop1.genmystore.com")
        parser.add_argument("--address", required=True, metavar="URL", help="https://.../webhooks/genstore/")

    def handle(self, *args: object, **options: object) -> None:
        store = store_for_cli(str(options["store"]))
        address = str(options["address"])
        problem = subscription_address_error(address)
        if problem:
            raise CommandError(problem)
        genstore_reachable(store)
        try:
            result = webhook_subscriptions_register(store=store, address=address)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        except GenstoreError as exc:
            raise CommandError(f"Genstore refused: {exc}") from exc
        self.stdout.write(json.dumps({"store": store.domain, "created": result.created, "existing": result.existing}))
