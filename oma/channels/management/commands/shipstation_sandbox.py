"""`shipstation_sandbox [--port 8300] [--from-store D] [--rate-limit 40/60]`: run the ShipStation API v1 sandbox.

With --from-store, the sandbox is seeded from that store's mirrored orders (most get a shipment, some split in
two parcels, some a voided label and its reissue), so a ShipStation channel pointed at it has something to find:
    channel add --store D --kind shipstation --name ShipStation --base-url http://127.0.0.1:8300 \\
                --api-key sandbox-key --api-secret sandbox-secret
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from oma.channels.models import Channel
from oma.channels.sandbox.server import DemoOrder, ShipStationSandbox, seed_demo
from oma.channels.selectors import external_order_id_for
from oma.orders.models import Order
from oma.stores.cli import store_for_cli


class Command(BaseCommand):
    help = "Run the ShipStation API v1 sandbox on 127.0.0.1."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8300)
        parser.add_argument("--api-key", default="sandbox-key")
        parser.add_argument("--api-secret", default="sandbox-secret")
        parser.add_argument("--rate-limit", default="40/60", help="REQUESTS/SECONDS per window (ShipStation: 40/60)")
        parser.add_argument("--from-store", default="", help="seed shipments for this store's mirrored orders")
        parser.add_argument("--max-orders", type=int, default=500, help="orders seeded from the store (newest)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            requests_text, seconds_text = options["rate_limit"].split("/", 1)
            rate_limit, window = int(requests_text), float(seconds_text)
        except ValueError as exc:
            raise CommandError("--rate-limit looks like 40/60 (requests per seconds)") from exc
        store = store_for_cli(options["from_store"]) if options["from_store"] else None  # before the port is taken
        sandbox = ShipStationSandbox(
            api_key=options["api_key"], api_secret=options["api_secret"], rate_limit=rate_limit,
            rate_window_seconds=window, host=options["host"], port=options["port"],
        )
        if store is not None:
            counts = seed_demo(sandbox, self._orders_of(store.domain, options["max_orders"]))
            self.stdout.write(
                f"seeded {counts['shipments']} shipments ({counts['voided']} voided) for {counts['orders']} orders"
            )
        self.stdout.write(f"ShipStation sandbox on {sandbox.url} (key {options['api_key']!r}); Ctrl-C stops it")
        try:
            sandbox.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            sandbox.stop()

    def _orders_of(self, domain: str, limit: int) -> list[DemoOrder]:
        store = store_for_cli(domain)
        channel = Channel.objects.filter(store=store, kind="shipstation").first() or Channel(store=store)
        orders = (
            Order.objects.filter(store=store, cancelled_at__isnull=True)
            .prefetch_related("line_items")
            .order_by("-genstore_created_at")[:limit]
        )
        return [
            DemoOrder(
                order_number=external_order_id_for(channel, order),
                items=[
                    {"sku": line.sku, "quantity": line.quantity, "lineItemKey": line.line_item_id}
                    for line in order.line_items.all()
                    if line.requires_shipping is not False and line.quantity > 0
                ],
            )
            for order in orders
        ]
