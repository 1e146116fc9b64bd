from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from oma.genstore.errors import GenstoreError
from oma.stores.services import StoreConnectRefused, parse_rate_limit, store_connect
from oma.stores.subscriptions import webhook_subscriptions_register


class Command(BaseCommand):
    help = "Connect (create or update) a Genstore store; verifies the token with GET /shops/info unless --no-verify."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--domain", required=True, help="the shop's own domain, e.g. shop1.genmystore.com")
        parser.add_argument("--access-token", required=True)
        parser.add_argument("--client-secret", required=True)
        parser.add_argument("--api-base-url", default="", help="the part before /api/{version}/ (sandboxes)")
        parser.add_argument("--name", default="")
        parser.add_argument("--rate-limit", default=None, help="CAPACITY/REFILL per second, e.g. 40/2")
        parser.add_argument("--no-verify", action="store_true", help="do not call GET /shops/info")
        parser.add_argument("--register-webhooks", metavar="URL", default=None, help="also subscribe URL to topics")

    def handle(self, *args: object, **options: object) -> None:
        try:
            rate_limit = parse_rate_limit(str(options["rate_limit"])) if options["rate_limit"] else None
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        try:
            result = store_connect(
                domain=str(options["domain"]),
                access_token=str(options["access_token"]),
                client_secret=str(options["client_secret"]),
                api_base_url=str(options["api_base_url"]),
                name=str(options["name"]),
                rate_limit=rate_limit,
                verify=not options["no_verify"],
            )
        except StoreConnectRefused as exc:
            raise CommandError(str(exc)) from exc
        except GenstoreError as exc:
            raise CommandError(f"Genstore refused the connection: {exc}") from exc
        store = result.store
        output: dict[str, object] = {
            "domain": store.domain,
            "name": store.name,
            "created": result.created,
            "verified": not options["no_verify"],
            "apiBaseUrl": store.resolved_api_base_url,
            "rateLimit": store.rate_limit_label,
        }
        if options["register_webhooks"]:
            try:
                registered = webhook_subscriptions_register(store=store, address=str(options["register_webhooks"]))
            except GenstoreError as exc:
                raise CommandError(f"store saved, but registering webhooks failed: {exc}") from exc
            output["webhooks"] = {"created": registered.created, "existing": registered.existing}
        self.stdout.write(json.dumps(output))
