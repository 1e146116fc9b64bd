"""1,000 fulfillment pushes against a Genstore bucket of 400 refilling 40/s: elapsed time against the theoretical
minimum for that bucket, and the 429s.

    python -m bench.push [--pushes 1000] [--capacity 400] [--refill 40] [--workers 16]

The Genstore sandbox runs in its own process with the store's real bucket (429 when empty). OMA pushes with
`--workers` threads, each its own Genstore client, all drawing tokens from the shared Redis bucket (the one every
Celery worker uses; a per-process bucket when Redis is unreachable). Each push is what production does for a
shipment the carrier already reports in transit: read the order, create the fulfillment, set its shipmentStatus
(3 requests).

The theoretical minimum: a bucket starting full serves `capacity` requests at once and then `refill` a second, so
N accepted requests need at least (N - capacity) / refill seconds. Targets: elapsed within 15% of it, 429s under
1% of the requests. The run also checks the result: exactly one fulfillment per shipment, status in_transit.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time

from bench.common import figure, setup_django


def redis_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pushes", type=int, default=1000)
    parser.add_argument("--capacity", type=int, default=400)
    parser.add_argument("--refill", type=float, default=40.0)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13", help="the shared bucket's Redis ('' for none)")
    args = parser.parse_args()

    if args.redis and redis_reachable():
        os.environ["REDIS_URL"] = args.redis
    os.environ.setdefault("CELERY_BROKER_URL", "memory://")  # nothing is queued: the pushes run right here
    vendor = setup_django("oma_bench_push")

    from django.conf import settings
    from django.db import connection

    from oma.core.redis import get_redis
    from oma.fulfillment.management.commands.push_fulfillments import pushes_run
    from oma.fulfillment.models import FulfillmentPush
    from oma.orders.models import LineItem, Order, SyncRun
    from oma.orders.services import orders_sweep
    from oma.sandbox.control import SandboxProcess
    from oma.stores.models import Store
    from tracking.models import Shipment, ShipmentLine
    from tracking.sandbox.numbers import GENERATORS

    rate = f"{args.capacity}/{args.refill:g}"
    with SandboxProcess(orders=1, seed=1, shops=("bench",), rate_limit=rate) as sandbox:
        control = sandbox.control
        # Open orders, every item left to ship (a few hold only items that need no shipping: 10% spare).
        control.add_orders("bench", args.pushes + args.pushes // 10)
        store = Store.objects.create(
            domain="bench.genmystore.com", api_base_url=sandbox.base_url_for("bench"),
            access_token=sandbox.access_token, client_secret=sandbox.client_secret,
            rate_limit_capacity=args.capacity, rate_limit_refill_per_second=args.refill,
        )
        run = orders_sweep(store=store, kind=SyncRun.Kind.FULL)
        assert run.state == SyncRun.State.SUCCEEDED, run.error_message

        # One shipment per open order, the whole order in it, already in transit at the carrier.
        carriers = ["ups", "fedex", "usps", "dhl"]
        orders = [
            order
            for order in Order.objects.filter(store=store, cancelled_at__isnull=True).prefetch_related("line_items")
            if order.financial_status not in ("refunded", "voided")
            and any(line.requires_shipping is not False and line.fulfillable_quantity
                    for line in order.line_items.all())
        ][: args.pushes]
        shipments = Shipment.objects.bulk_create(
            Shipment(
                store=store, order=order, tracking_number=GENERATORS[carriers[i % 4]](i + 1), carrier=carriers[i % 4],
                status="in_transit", source=Shipment.Source.CSV,
            )
            for i, order in enumerate(orders)
        )
        lines = LineItem.objects.filter(order__in=orders).exclude(requires_shipping=False).values_list(
            "pk", "order_id", "fulfillable_quantity"
        )
        shipment_of = {shipment.order_id: shipment.pk for shipment in shipments}
        ShipmentLine.objects.bulk_create(
            ShipmentLine(shipment_id=shipment_of[order_id], line_item_id=pk, quantity=quantity)
            for pk, order_id, quantity in lines
            if quantity
        )
        ids = [shipment.pk for shipment in shipments]

        # Start from full buckets on both sides: Genstore's (give it a moment to refill after the sweep) and ours.
        redis_client = get_redis()
        if redis_client is not None:
            redis_client.delete(f"oma:genstore:bucket:genstore:{store.domain}")
        time.sleep(args.capacity / args.refill + 0.5)
        control.reset_stats("bench")

        started = time.monotonic()
        summary = pushes_run(shipment_ids=ids, workers=args.workers)
        elapsed = time.monotonic() - started

        stats = control.stats("bench")
        created = stats["fulfillments_created"]
        requests, rate_limited = stats["requests"], stats["rate_limited"]
        accepted = requests - rate_limited
        minimum = max(0.0, (accepted - args.capacity) / args.refill)

        # The result, checked against Genstore itself.
        wrong = 0
        for shipment in Shipment.objects.filter(pk__in=ids).select_related("order")[:: max(1, len(ids) // 100)]:
            fulfillments = [
                f for f in control.order("bench", shipment.order.order_id)["fulfillments"]
                if f["trackingNumber"] == shipment.tracking_number and f["status"] != "cancelled"
            ]
            wrong += len(fulfillments) != 1 or fulfillments[0]["shipmentStatus"] != "in_transit"
        succeeded = FulfillmentPush.objects.filter(pk__isnull=False, state="succeeded").count()

    print(f"database: {vendor}; shared bucket: {'Redis' if settings.REDIS_URL else 'per process'}; "
          f"{args.workers} workers; sandbox bucket {rate}")
    print(f"push run: {summary.line()}")
    print(f"Genstore saw {requests} requests ({rate_limited} answered 429), created {created} fulfillments, "
          f"updated {stats['fulfillments_updated']}; {succeeded} pushes succeeded; "
          f"{wrong} of the sampled shipments not exactly once with in_transit")
    figure("pushes", float(len(ids)), "", f"{args.pushes}")
    figure("fulfillments created", float(created), "", f"{args.pushes} (exactly once)")
    figure("requests per push", accepted / max(1, len(ids)), "")
    figure("elapsed", elapsed, "s")
    figure("theoretical minimum", minimum, "s", f"({accepted} - {args.capacity}) / {args.refill:g}")
    figure("elapsed / minimum", elapsed / minimum if minimum else 0.0, "x", "<= 1.15")
    figure("429 answers", float(rate_limited), "", f"< 1% of {requests}")
    figure("429 share", 100.0 * rate_limited / max(1, requests), "%", "< 1")
    figure("pushes per second", len(ids) / elapsed, "/s")
    connection.close()
    if created != args.pushes or wrong or succeeded != args.pushes:
        sys.exit("the pushes did not all land exactly once")


if __name__ == "__main__":
    main()
