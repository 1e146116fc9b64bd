"""`channel add|list|rotate-secret|poll`: manage a store's external channels from the command line.

    channel add --store D --kind csv|webhook|shipstation --name N [--source-names a,b] [--base-url URL]
                [--api-key K --api-secret S]
        prints one JSON line: the channel's slug, its webhook path and, for a webhook channel, its signing secret;
        a ShipStation channel's key and secret come from --api-key/--api-secret, OMA_CHANNEL_API_KEY and
        OMA_CHANNEL_API_SECRET, standard input ('-': one line each, in option order) or a prompt on a terminal
    channel list [--store D]          one JSON line per channel, with its records per state
    channel rotate-secret --slug S    a new signing secret (the old one works 24 h more); prints it as JSON
    channel poll --slug S [--max-orders N]   poll a ShipStation channel now, in the foreground
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.urls import reverse

from oma.channels.connectors import REGISTRY
from oma.channels.models import Channel
from oma.channels.selectors import channel_record_counts
from oma.channels.services import ChannelInvalid, channel_create, channel_poll, channel_rotate_signing_secret
from oma.core.cli import PipeSafeCommand, secret_help, secret_option
from oma.stores.cli import store_for_cli

API_KEY_ENV = "OMA_CHANNEL_API_KEY"
API_SECRET_ENV = "OMA_CHANNEL_API_SECRET"


def _channel(slug: str) -> Channel:
    channel = Channel.objects.select_related("store").filter(slug=slug).first()
    if channel is None:
        known = list(Channel.objects.order_by("slug").values_list("slug", flat=True)[:20])
        hint = f"known channels: {', '.join(known)}" if known else "no channels yet: create one with channel add"
        raise CommandError(f"no channel with slug {slug!r}; {hint}")
    return channel


def channel_json(channel: Channel, *, with_secret: bool = False) -> dict[str, Any]:
    connector = REGISTRY.get(channel.kind)
    data: dict[str, Any] = {
        "slug": channel.slug,
        "name": channel.name,
        "kind": channel.kind,
        "store": channel.store.domain,
        "sourceNames": list(channel.source_names or []),
        "enabled": channel.is_enabled,
    }
    if channel.base_url:
        data["baseUrl"] = channel.base_url
    if connector is not None and connector.accepts_webhooks:
        data["webhookPath"] = reverse("channels:webhook", kwargs={"slug": channel.slug})
        if with_secret:
            data["secret"] = channel.signing_secret
    return data


class Command(PipeSafeCommand):
    help = "Manage external channels (CSV, webhook, ShipStation) of a store."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="add|list|rotate-secret|poll")

        add = actions.add_parser("add", help="create a channel")
        add.add_argument("--store", required=True, help="the store's domain")
        add.add_argument("--kind", required=True, choices=sorted(REGISTRY))
        add.add_argument("--name", required=True)
        add.add_argument("--source-names", default="", help="Genstore sourceName values it covers, comma-separated")
        add.add_argument("--base-url", default="", help="the platform's API base URL (default: its public one)")
        add.add_argument("--api-key", default=None, help=secret_help("the platform's API key", API_KEY_ENV))
        add.add_argument("--api-secret", default=None, help=secret_help("the platform's API secret", API_SECRET_ENV))

        listing = actions.add_parser("list", help="list channels")
        listing.add_argument("--store", default="")

        rotate = actions.add_parser("rotate-secret", help="new webhook signing secret")
        rotate.add_argument("--slug", required=True)
        rotate.add_argument("--keep-previous-hours", type=float, default=24.0)

        poll = actions.add_parser("poll", help="poll a ShipStation channel now")
        poll.add_argument("--slug", required=True)
        poll.add_argument("--max-orders", type=int, default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "add":
            self._add(options)
        elif action == "list":
            self._list(options)
        elif action == "rotate-secret":
            self._rotate(options)
        elif action == "poll":
            self._poll(options)

    def _emit(self, data: dict[str, Any]) -> None:
        self.stdout.write(json.dumps(data, sort_keys=False))

    def _add(self, options: dict[str, Any]) -> None:
        store = store_for_cli(options["store"])
        connector = REGISTRY[options["kind"]]  # argparse's choices: a known kind
        # Only a kind that calls an API reads (or asks for) credentials; given to another kind, they are refused.
        needed = connector.needs_api_credentials
        missing = f"a {connector.label} channel needs --api-key and --api-secret"
        api_key = api_secret = ""
        if needed or options["api_key"]:
            api_key = secret_option(options["api_key"], option="--api-key", env=API_KEY_ENV, label="API key",
                                    required=needed, stdin=self.stdin, missing=missing)
        if needed or options["api_secret"]:
            api_secret = secret_option(options["api_secret"], option="--api-secret", env=API_SECRET_ENV,
                                       label="API secret", required=needed, stdin=self.stdin, missing=missing)
        if bool(api_key) != bool(api_secret):
            raise CommandError("give both --api-key and --api-secret")
        try:
            channel = channel_create(
                store=store,
                kind=options["kind"],
                name=options["name"],
                source_names=[name for name in options["source_names"].split(",") if name.strip()],
                base_url=options["base_url"],
                api_key=api_key,
                api_secret=api_secret,
            )
        except (ChannelInvalid, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        self._emit(channel_json(channel, with_secret=True))

    def _list(self, options: dict[str, Any]) -> None:
        channels = Channel.objects.select_related("store").order_by("store__domain", "name")
        if options["store"]:
            channels = channels.filter(store=store_for_cli(options["store"]))
        for channel in channels:
            data = channel_json(channel)
            data["records"] = channel_record_counts(channel)
            data["lastActivityAt"] = channel.last_activity_at.isoformat() if channel.last_activity_at else None
            if channel.last_error:
                data["lastError"] = channel.last_error
            self._emit(data)

    def _rotate(self, options: dict[str, Any]) -> None:
        channel = _channel(options["slug"])
        try:
            secret = channel_rotate_signing_secret(
                channel=channel, keep_previous_for=timedelta(hours=options["keep_previous_hours"])
            )
        except ChannelInvalid as exc:
            raise CommandError(str(exc)) from exc
        expires = channel.previous_signing_secret_expires_at
        self._emit({"slug": channel.slug, "secret": secret,
                    "previousValidUntil": expires.isoformat() if expires else None})

    def _poll(self, options: dict[str, Any]) -> None:
        channel = _channel(options["slug"])
        try:
            result = channel_poll(channel=channel, max_orders=options["max_orders"])
        except ChannelInvalid as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"{channel.slug}: {result.describe()}")
