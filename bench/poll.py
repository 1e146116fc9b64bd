"""Carrier polling throughput: due shipments across the five carriers, polled against the carrier sandbox.

    python -m bench.poll [--shipments 10000]

The sandbox runs in its own process (its CPU is not counted against OMA's). Limits are set high so that the
figure measures OMA (claims, HTTP, parsing, bulk writes), not the carriers' quotas. Figures:
- shipments processed per second (first poll: every shipment new; second poll: nothing new to store);
- carrier requests per shipment, against the batch-optimal count (FedEx 30 a request, 17TRACK 40 + registration,
  the others 1; one OAuth token per account);
- database queries per 1,000 shipments (bounded: bulk reads and writes, no query per shipment).
"""

from __future__ import annotations

import argparse
import math
import time
from datetime import UTC, datetime, timedelta

from bench.common import figure, peak_rss_mb, setup_django

CARRIERS = ("ups", "fedex", "usps", "dhl", "17track")
DETECTED = {"ups": "ups", "fedex": "fedex", "usps": "usps", "dhl": "dhl", "17track": "s10"}
BATCH = {"ups": 1, "fedex": 30, "usps": 1, "dhl": 1, "17track": 40}
OAUTH = ("ups", "fedex", "usps")


class QueryCounter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shipments", type=int, default=10_000)
    args = parser.parse_args()
    per_carrier = max(1, args.shipments // len(CARRIERS))
    total = per_carrier * len(CARRIERS)

    vendor = setup_django("oma_bench_poll")
    from django.db import connection
    from django.utils import timezone

    from oma.stores.models import Store
    from tracking.models import Shipment, TrackingEvent
    from tracking.polling import poll_due_shipments
    from tracking.sandbox import SandboxProcess, numbers_for
    from tracking.services import carrier_account_add

    now = datetime.now(UTC).replace(microsecond=0)
    epoch = now - timedelta(days=9)
    limits = dict.fromkeys(CARRIERS, (100_000, 1.0))
    with SandboxProcess(epoch=epoch, clock=now, rate_limits=limits) as sandbox:
        store = Store.objects.create(domain="bench.genmystore.com", access_token="t", client_secret="s")
        for carrier in CARRIERS:
            credentials = (
                {"api_key": "bench-key"} if carrier in ("dhl", "17track")
                else {"client_id": "bench-id", "client_secret": "bench-secret"}
            )
            carrier_account_add(carrier=carrier, base_url=sandbox.base_url, rate_limit=limits[carrier], **credentials)
        due = timezone.now()
        for carrier in CARRIERS:
            Shipment.objects.bulk_create(
                (
                    Shipment(store=store, tracking_number=n, carrier=DETECTED[carrier], next_poll_at=due)
                    for n in numbers_for(carrier, per_carrier)
                ),
                batch_size=2000,
            )

        queries = QueryCounter()
        started = time.perf_counter()
        with connection.execute_wrapper(queries):
            first = poll_due_shipments(time_budget=3600)
        first_seconds = time.perf_counter() - started
        requests = sum(sandbox.stats()["requests"].values())
        optimal = sum(math.ceil(per_carrier / BATCH[c]) for c in CARRIERS) + math.ceil(per_carrier / 40) + len(OAUTH)

        Shipment.objects.update(next_poll_at=timezone.now() - timedelta(seconds=1))
        started = time.perf_counter()
        second = poll_due_shipments(time_budget=3600)
        second_seconds = time.perf_counter() - started
        events = TrackingEvent.objects.count()

    print(f"{vendor}: {first.line()}")
    print(f"{vendor}: {second.line()}")
    figure("shipments", total)
    figure("first poll: shipments processed per second", first.polled / first_seconds, "shipments/s", ">= 200")
    figure("first poll: events stored per second", first.events_added / first_seconds, "events/s")
    figure("second poll (nothing new): shipments per second", second.polled / second_seconds, "shipments/s")
    figure("carrier requests per shipment", requests / total, "requests", f"= {optimal / total:.3f} (batch-optimal)")
    figure("carrier requests, first poll", requests, "requests", f"= {optimal}")
    figure("rate-limited answers (429)", first.rate_limited + second.rate_limited, "", "0")
    figure("database queries per 1,000 shipments", queries.count * 1000 / total, "queries", "bounded (no N+1)")
    figure("events stored (second poll added)", f"{events} ({second.events_added})", "", "+0")
    figure("peak RSS", peak_rss_mb(), "MB")


if __name__ == "__main__":
    main()
