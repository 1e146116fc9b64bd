"""Carrier accounts: `carrier_account add|list|deactivate`.

Secrets: an OAuth carrier's client secret comes from --client-secret or OMA_CARRIER_CLIENT_SECRET, an API key from
--api-key or OMA_CARRIER_API_KEY; `-` reads the value from standard input, and on a terminal a missing one is asked
for without echo. Given on the command line they work too, but other users of the machine can read them there.
"""

from __future__ import annotations

from typing import cast

from django.core.management.base import CommandError, CommandParser
from django.utils import timezone

from oma.core.cli import PipeSafeCommand, secret_help, secret_option
from oma.stores.cli import store_for_cli
from tracking.models import CarrierAccount, CarrierCode
from tracking.services import OAUTH_CARRIERS, CarrierAccountInvalid, carrier_account_add

CLIENT_SECRET_ENV = "OMA_CARRIER_CLIENT_SECRET"
API_KEY_ENV = "OMA_CARRIER_API_KEY"


def parse_rate_limit(value: str) -> tuple[int, float]:
    """'60/3600' -> (60, 3600.0): that many requests per that many seconds."""
    try:
        requests_text, seconds_text = value.split("/", 1)
        requests, seconds = int(requests_text), float(seconds_text)
    except ValueError as exc:
        raise CommandError(f"--rate-limit must look like REQUESTS/SECONDS, e.g. 60/3600 (got {value!r})") from exc
    if requests < 1 or seconds <= 0:
        raise CommandError("--rate-limit needs at least 1 request per a positive number of seconds")
    return requests, seconds


class Command(PipeSafeCommand):
    help = "Manage carrier tracking API accounts (per store, or shared by all stores when --store is left out)."

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(dest="action", required=True, metavar="add|list|deactivate")
        add = commands.add_parser("add", help="add an account; prints its id (replaces the active one it overlaps)")
        add.add_argument("--carrier", required=True, choices=CarrierCode.values)
        add.add_argument("--client-id", default="", help="OAuth client id (UPS, FedEx, USPS)")
        add.add_argument(
            "--client-secret", default=None,
            help=secret_help("OAuth client secret (UPS, FedEx, USPS)", CLIENT_SECRET_ENV),
        )
        add.add_argument("--api-key", default=None, help=secret_help("API key (DHL, 17TRACK)", API_KEY_ENV))
        add.add_argument(
            "--base-url", default="", help="stands where the carrier's host would, e.g. https://onlinetools.ups.com"
        )
        add.add_argument("--store", default="", help="store domain, e.g. shop1.genmystore.com (default: shared)")
        add.add_argument("--label", default="")
        add.add_argument("--rate-limit", default="", help="REQUESTS/SECONDS overriding the published limit")

        listing = commands.add_parser("list", help="list accounts (secrets are never shown)")
        listing.add_argument("--all", action="store_true", help="include deactivated accounts")

        deactivate = commands.add_parser("deactivate", help="stop using an account")
        deactivate.add_argument("account_id", type=int)

    def handle(self, *args: object, **options: object) -> None:
        action = options["action"]
        if action == "add":
            self._add(options)
        elif action == "list":
            self._list(include_inactive=bool(options["all"]))
        else:
            updated = CarrierAccount.objects.filter(pk=cast(int, options["account_id"]), is_active=True).update(
                is_active=False, updated_at=timezone.now()
            )
            if not updated:
                raise CommandError(f"no active carrier account {options['account_id']}")
            self.stdout.write(f"carrier account {options['account_id']} deactivated")

    def _add(self, options: dict) -> None:
        store = store_for_cli(options["store"]) if options["store"] else None
        rate_limit = parse_rate_limit(options["rate_limit"]) if options["rate_limit"] else None
        oauth = options["carrier"] in OAUTH_CARRIERS
        # Only the secret the carrier uses is read (or asked for); one given for the other kind is still refused.
        client_secret = api_key = ""
        if oauth or options["client_secret"]:
            client_secret = secret_option(options["client_secret"], option="--client-secret", env=CLIENT_SECRET_ENV,
                                          label=f"{options['carrier']} client secret", required=oauth,
                                          stdin=self.stdin)
        if not oauth or options["api_key"]:
            api_key = secret_option(options["api_key"], option="--api-key", env=API_KEY_ENV,
                                    label=f"{options['carrier']} API key", required=not oauth, stdin=self.stdin)
        try:
            account = carrier_account_add(
                carrier=options["carrier"],
                store=store,
                client_id=options["client_id"],
                client_secret=client_secret,
                api_key=api_key,
                base_url=options["base_url"],
                label=options["label"],
                rate_limit=rate_limit,
            )
        except CarrierAccountInvalid as exc:
            raise CommandError(str(exc)) from exc
        self.stderr.write(f"{account} added for {store.domain if store else 'every store'}")
        self.stdout.write(str(account.pk))

    def _list(self, *, include_inactive: bool) -> None:
        accounts = CarrierAccount.objects.select_related("store").order_by("carrier", "store__domain", "id")
        if not include_inactive:
            accounts = accounts.filter(is_active=True)
        now = timezone.now()
        for account in accounts:
            limit = (
                f"{account.rate_limit_requests}/{account.rate_limit_per_seconds:g}s"
                if account.rate_limit_requests
                else "published"
            )
            state = "active" if account.is_active else "inactive"
            if account.backoff_until and account.backoff_until > now:
                state = f"backed off until {account.backoff_until:%Y-%m-%d %H:%M:%S}Z"
            self.stdout.write(
                f"{account.pk}\t{account.carrier}\t{account.store.domain if account.store else 'shared'}\t"
                f"{account.base_url or 'default URL'}\t{limit}\t{state}"
                + (f"\t{account.last_error[:80]}" if account.last_error else "")
            )
