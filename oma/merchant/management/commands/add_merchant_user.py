"""`add_merchant_user --username U --store D [--store D2] [--password P|-] [--only]`: a merchant's staff login.

The password is checked by Django's password validators (AUTH_PASSWORD_VALIDATORS) before anything is saved. It
comes from OMA_MERCHANT_PASSWORD, from standard input (`--password -`), or from a prompt on a terminal (asked twice)
when the user is new; on the command line it works too, but other users of the machine can read it there.
"""

from __future__ import annotations

import json

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, CommandParser

from oma.core.cli import PipeSafeCommand, secret_help, secret_option
from oma.merchant.services import UnknownStores, merchant_user_upsert
from oma.stores.cli import stores_for_cli

PASSWORD_ENV = "OMA_MERCHANT_PASSWORD"


class Command(PipeSafeCommand):
    help = (
        "Create or update a merchant's staff login with access to the given stores (and only their rows) in admin. "
        f"Stores are added to the ones the user already has, unless --only. Password: ${PASSWORD_ENV}, '-' "
        "(standard input) or a prompt; a new user needs one, an existing user keeps theirs when none is given."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", required=True)
        parser.add_argument(
            "--password", default=None, help=secret_help("the password (required for a new user)", PASSWORD_ENV)
        )
        parser.add_argument(
            "--store", action="append", required=True, metavar="DOMAIN", help="a connected store's domain; repeatable"
        )
        parser.add_argument("--only", action="store_true", help="remove access to stores not listed")

    def handle(self, *args: object, **options: object) -> None:
        username = str(options["username"]).strip()
        if not username:
            raise CommandError("--username must not be empty")
        stores = stores_for_cli(list(options["store"]))  # type: ignore[call-overload]
        user_model = get_user_model()
        user = user_model.objects.filter(username=username).first()
        password = secret_option(
            options["password"],  # type: ignore[arg-type]
            option="--password", env=PASSWORD_ENV, label=f"password for {username}", required=user is None,
            stdin=self.stdin, confirm=True,
        )
        if password:
            try:
                validate_password(password, user=user or user_model(username=username))
            except ValidationError as exc:
                raise CommandError("password refused: " + " ".join(exc.messages)) from None
        try:
            result = merchant_user_upsert(
                username=username,
                password=password or None,
                store_domains=[store.domain for store in stores],
                only_these_stores=bool(options["only"]),
            )
        except (UnknownStores, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        domains = sorted(result.user.store_memberships.values_list("store__domain", flat=True))  # type: ignore
        self.stdout.write(
            json.dumps(
                {
                    "username": result.user.get_username(),
                    "created": result.created,
                    "stores": domains,
                    "added": result.stores_added,
                    "removed": result.stores_removed,
                }
            )
        )
