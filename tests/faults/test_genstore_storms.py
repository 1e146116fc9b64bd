"""Genstore answering storms of 429 and 503 while a real worker sweeps 300 orders and pushes 15 fulfillments.

The sandbox's real bucket is small (2 requests, 2 a second during the sweep; 3 and 6 during the pushes) while the
store is configured as if it were huge, so OMA's own pacing does not hold it back and Genstore answers 429 (with
Retry-After) again and again; during the sweep 30% of the other answers are 503. Pushes run under the 429 storm.

Checked: the mirror equals Genstore; each shipment has exactly one fulfillment (429 on a create is retried, it
never doubles); the 429s and 503s were really seen (sandbox counters) and counted by OMA (/metrics).
"""

from __future__ import annotations

import pytest
from django.test import Client

from oma.fulfillment.models import FulfillmentPush
from oma.fulfillment.tasks import push_pending
from oma.ops import metrics
from oma.orders.models import Order, SyncRun
from oma.orders.tasks import sweep_store
from tests.fixtures_celery import wait_until
from tests.genstore_sandbox import connect, mirror_differences, start_sandbox
from tracking.models import Shipment
from tracking.services import shipment_add

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.redis]

State = FulfillmentPush.State


def test_sweep_and_pushes_through_429_and_503_storms_miss_nothing_and_double_nothing(
    transactional_db, broker, counters_in, app_env, celery_worker_factory
):
    genstore = start_sandbox(orders=300, seed=21, rate_limit=(3, 6.0))
    try:
        store = connect(genstore, rate_limit=(1000, 1000.0))
        worker = celery_worker_factory(env={**app_env, "OMA_SWEEP_PAGE_SIZE": "25"}, concurrency=3)

        # --- the sweep: 12 pages through 429s (a 2-token bucket) and 30% 503s ---------------------------------
        genstore.set_rate_limit(2, 2.0)
        genstore.set_faults(error_rate=0.3, status=503)
        sweep_store.delay(store.pk, SyncRun.Kind.FULL)
        wait_until(lambda: SyncRun.objects.filter(store=store).exclude(state=SyncRun.State.RUNNING).exists(),
                   timeout=120, interval=0.5, what=f"the sweep to finish\n{worker.log_tail()}")
        run = SyncRun.objects.get(store=store)
        assert run.state == SyncRun.State.SUCCEEDED, run.error_message
        assert mirror_differences(genstore, store) == []
        during_sweep = genstore.stats("shop1")
        assert during_sweep["faults_injected"] > 0 and during_sweep["rate_limited"] > 0, during_sweep

        # --- 15 pushes through the 429 storm ------------------------------------------------------------------
        genstore.clear_faults()
        genstore.set_rate_limit(3, 6.0)
        orders = [o for o in Order.objects.filter(store=store, cancelled_at__isnull=True, financial_status="paid")
                  .order_by("pk") if all(line.fulfillable_quantity == line.quantity > 0
                                         and line.requires_shipping is not False for line in o.line_items.all())][:15]
        assert len(orders) == 15
        for index, order in enumerate(orders):
            shipment_add(store=store, order=order, carrier="usps", source=Shipment.Source.CSV,
                         tracking_number=f"9400{index:018d}",
                         lines=[(line, line.quantity) for line in order.line_items.all()])

        def pushed() -> bool:
            csv_pushes = FulfillmentPush.objects.filter(shipment__source=Shipment.Source.CSV)  # not `genstore` ones
            if csv_pushes.filter(state=State.SUCCEEDED).count() == 15:
                return True
            push_pending.delay()  # beat's minute (a 429 longer than a worker may sleep waits for it)
            return False

        wait_until(pushed, timeout=120, interval=2, what=f"15 pushes\n{worker.log_tail()}")
        assert not FulfillmentPush.objects.exclude(state=State.SUCCEEDED).exists()
        for shipment in Shipment.objects.filter(store=store).select_related("order"):
            live = [f for f in genstore.fulfillments("shop1", shipment.order.order_id)
                    if f["trackingNumber"] == shipment.tracking_number]
            assert len(live) == 1, f"{shipment.tracking_number}: {len(live)} fulfillments"
        stats = genstore.stats("shop1")
        assert stats["fulfillments_created"] == 15
        assert stats["rate_limited"] > during_sweep["rate_limited"]  # the pushes met 429s too

        # --- OMA saw and counted them (every 429 the sandbox sent reached a client) ---------------------------
        host = f"127.0.0.1:{genstore.port}"
        counted: dict[str, float] = {}

        def all_counted() -> bool:  # the worker adds its counts to Redis within a second
            metrics._cache = None
            text = Client().get("/metrics").content.decode()
            counted["429"] = _sample(text, f'oma_upstream_rate_limited_total{{host="{host}"}}')
            counted["503"] = _sample(text, f'oma_upstream_server_errors_total{{host="{host}",status="503"}}')
            return counted == {"429": stats["rate_limited"], "503": stats["faults_injected"]}

        wait_until(all_counted, timeout=10, interval=0.5, what=f"the counters in /metrics: {counted} vs {stats}")
        print(f"\nsweep of 300 orders and 15 pushes: {stats['requests']} requests, {stats['rate_limited']} answered "
              f"429, {stats['faults_injected']} answered 503; all counted in /metrics; mirror exact, 15 fulfillments")
    finally:
        genstore.stop()


def _sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return -1.0  # not in /metrics (yet)
