from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from oma.genstore.errors import GenstoreError
from oma.stores.models import Store
from oma.stores.subscriptions import webhook_subscriptions_register


class Command(BaseCommand):
    help = "Subscribe ADDRESS to every Genstore topic OMA handles, creating only the missing subscriptions."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--store", required=True, metavar="DOMAIN", help="e.g. shop1.genmystore.com")
        parser.add_argument("--address", required=True, metavar="URL", help="https://.../webhooks/genstore/")

    def handle(self, *args: object, **options: object) -> None:
        domain = str(options["store"]).strip().lower()
        store = Store.objects.filter(domain=domain).first()
        if store is None:
            raise CommandError(f"no store {domain!r}; connect it first (connect_store)")
        try:
            result = webhook_subscriptions_register(store=store, address=str(options["address"]))
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        except GenstoreError as exc:
            raise CommandError(f"Genstore refused: {exc}") from exc
        self.stdout.write(json.dumps({"store": store.domain, "created": result.created, "existing": result.existing}))
