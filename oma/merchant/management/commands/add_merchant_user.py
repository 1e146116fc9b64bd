from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from oma.merchant.services import UnknownStores, merchant_user_upsert


class Command(BaseCommand):
    help = (
        "Create or update a merchant's staff login with access to the given stores (and only their rows) in admin. "
        "Stores are added to the ones the user already has, unless --only."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", required=True)
        parser.add_argument("--password", default=None, help="required for a new user; omitted: keep the password")
        parser.add_argument(
            "--store", action="append", required=True, metavar="DOMAIN", help="a connected store's domain; repeatable"
        )
        parser.add_argument("--only", action="store_true", help="remove access to stores not listed")

    def handle(self, *args: object, **options: object) -> None:
        try:
            result = merchant_user_upsert(
                username=str(options["username"]),
                password=options["password"] or None,  # type: ignore[arg-type]
                store_domains=list(options["store"]),  # type: ignore[call-overload]
                only_these_stores=bool(options["only"]),
            )
        except (UnknownStores, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        stores = sorted(result.user.store_memberships.values_list("store__domain", flat=True))  # type: ignore
        self.stdout.write(
            json.dumps(
                {
                    "username": result.user.get_username(),
                    "created": result.created,
                    "stores": stores,
                    "added": result.stores_added,
                    "removed": result.stores_removed,
                }
            )
        )
