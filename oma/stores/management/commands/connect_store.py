"""`connect_store --domain D [--access-token T|-] [--client-secret S|-] ...`: connect (create or update) a store.

The domain is checked before anything is sent. The access token and the client secret come from OMA_ACCESS_TOKEN
and OMA_CLIENT_SECRET, from standard input (`--access-token -`: one line per `-`, in the order given), or from a
prompt on a terminal; on the command line they work too, but other users of the machine can read them there.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandError, CommandParser

from oma.core.cli import PipeSafeCommand, secret_help, secret_option
from oma.core.outbound import OutboundURLError, parse_base_url
from oma.genstore.errors import GenstoreError
from oma.stores.cli import genstore_reachable
from oma.stores.domains import store_domain_normalize, store_domain_problem
from oma.stores.models import Store
from oma.stores.services import StoreConnectRefused, parse_rate_limit, store_connect
from oma.stores.subscriptions import subscription_address_error, webhook_subscriptions_register

ACCESS_TOKEN_ENV = "OMA_ACCESS_TOKEN"
CLIENT_SECRET_ENV = "OMA_CLIENT_SECRET"


class Command(PipeSafeCommand):
    help = (
        "Connect (create or update) a Genstore store; verifies the token with GET /shops/info unless --no-verify. "
        f"Secrets: ${ACCESS_TOKEN_ENV} and ${CLIENT_SECRET_ENV}, '-' (standard input) or a prompt."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--domain", required=True, help="the shop's own domain, e.g. shop1.genmystore.com")
        parser.add_argument("--access-token", default=None, help=secret_help("the Admin API token", ACCESS_TOKEN_ENV))
        parser.add_argument(
            "--client-secret", default=None, help=secret_help("the app's client secret", CLIENT_SECRET_ENV)
        )
        parser.add_argument("--api-base-url", default="", help="the part before /api/{version}/ (sandboxes)")
        parser.add_argument("--name", default="")
        parser.add_argument("--rate-limit", default=None, help="CAPACITY/REFILL per second, e.g. 40/2")
        parser.add_argument("--no-verify", action="store_true", help="do not call GET /shops/info")
        parser.add_argument("--register-webhooks", metavar="URL", default=None, help="also subscribe URL to topics")

    def handle(self, *args: Any, **options: Any) -> None:
        # Everything that can be checked without the network is checked first: a typo costs no request.
        domain = store_domain_normalize(str(options["domain"]))
        problem = store_domain_problem(domain)
        if problem:
            raise CommandError(problem)
        api_base_url = str(options["api_base_url"] or "")
        if api_base_url:
            try:
                parse_base_url(api_base_url)
            except OutboundURLError as exc:
                raise CommandError(f"--api-base-url {api_base_url!r}: {exc}") from None
        try:
            rate_limit = parse_rate_limit(str(options["rate_limit"])) if options["rate_limit"] else None
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        webhook_address = str(options["register_webhooks"] or "")
        if webhook_address and (address_problem := subscription_address_error(webhook_address)):
            raise CommandError(f"--register-webhooks: {address_problem}")
        access_token = secret_option(options["access_token"], option="--access-token", env=ACCESS_TOKEN_ENV,
                                     label="access token", stdin=self.stdin)
        client_secret = secret_option(options["client_secret"], option="--client-secret", env=CLIENT_SECRET_ENV,
                                      label="client secret", stdin=self.stdin)
        verify = not options["no_verify"]
        if verify:
            existing = Store.objects.filter(domain=domain).first()
            kept_base_url = existing.api_base_url if existing else ""  # store_connect keeps it when none is given
            genstore_reachable(
                Store(domain=domain, api_base_url=api_base_url.rstrip("/") or kept_base_url, access_token=access_token)
            )
        try:
            result = store_connect(
                domain=domain,
                access_token=access_token,
                client_secret=client_secret,
                api_base_url=api_base_url,
                name=str(options["name"]),
                rate_limit=rate_limit,
                verify=verify,
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
            "verified": verify,
            "apiBaseUrl": store.resolved_api_base_url,
            "rateLimit": store.rate_limit_label,
        }
        if webhook_address:
            try:
                registered = webhook_subscriptions_register(store=store, address=webhook_address)
            except ValueError as exc:
                raise CommandError(f"store saved, but the webhook address is refused: {exc}") from exc
            except GenstoreError as exc:
                raise CommandError(f"store saved, but registering webhooks failed: {exc}") from exc
            output["webhooks"] = {"created": registered.created, "existing": registered.existing}
        self.stdout.write(json.dumps(output))
