"""GET /metrics: Prometheus text with webhook counters, processing lag, sweep drift, polling per carrier,
pushes, upstream 429s and queue depth, computed from the database and Redis at scrape time."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import redis
from django.utils import timezone

from oma.fulfillment.models import FulfillmentPush
from oma.orders.models import Order, SyncRun
from oma.stores.models import Store
from oma.stores.services import genstore_client_for
from tests.fixtures_celery import wait_until
from tests.genstore_sandbox import connect, start_sandbox
from tests.webhooks.payloads import SECRET, SHOP, encode, order_json, sign
from tracking.models import CarrierAccount, Shipment
from webhooks.models import WebhookDelivery

pytestmark = [pytest.mark.django_db, pytest.mark.redis]

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (\S+)$')


def scrape(client) -> dict[str, float]:
    """Every sample as `name{labels}` -> value; fails on any line that is not valid exposition format."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: dict[str, float] = {}
    for line in response.content.decode().splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        match = _SAMPLE.match(line)
        assert match, f"not exposition format: {line!r}"
        samples[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return samples


def post(client, *, shop: str = SHOP, secret: str = SECRET, body: bytes | None = None, signature: str | None = None):
    raw = body if body is not None else encode(order_json("1001"))
    return client.post("/webhooks/genstore/", data=raw, content_type="application/json", headers={
        "X-Genstore-Shop-Domain": shop, "X-Genstore-Topic": "orders/update",
        "X-Genstore-Hmac-Sha256": signature if signature is not None else sign(raw, secret),
    })


def test_webhook_answers_are_counted_by_outcome_and_rejection_reason(client, ops_redis) -> None:
    Store.objects.create(domain=SHOP, access_token="token-1", client_secret=SECRET, api_base_url="http://127.0.0.1:9")
    assert post(client).status_code == 200
    assert post(client).status_code == 200  # the same body again: a duplicate
    assert post(client, shop="nobody.genmystore.com").status_code == 401
    assert post(client, signature="forged").status_code == 401
    assert post(client, signature="forged").status_code == 401
    assert post(client, body=b"{not json", signature=sign(b"{not json", SECRET)).status_code == 400
    samples = scrape(client)
    assert samples['oma_webhook_requests_total{outcome="accepted"}'] == 1
    assert samples['oma_webhook_requests_total{outcome="duplicate"}'] == 1
    assert samples['oma_webhook_requests_total{outcome="rejected"}'] == 4
    assert samples['oma_webhooks_rejected_total{reason="unknown shop",status="401"}'] == 1
    assert samples['oma_webhooks_rejected_total{reason="invalid signature",status="401"}'] == 2
    assert samples['oma_webhooks_rejected_total{reason="body is not valid JSON",status="400"}'] == 1
    assert samples['oma_metrics_collector_up{collector="counters"}'] == 1


def test_counting_survives_a_redis_outage(client, ops_redis) -> None:
    from oma.ops.metrics import count, counters

    count("oma_upstream_rate_limited_total", host="a")
    counters.flush()  # what the timer thread does within a second
    assert redis.Redis.from_url(ops_redis.url()).hgetall("oma:ops:counters")
    ops_redis.stop()
    count("oma_upstream_rate_limited_total", host="a")  # kept in memory, no exception, no wait
    counters.flush()  # fails: kept in memory, Redis left alone for a while
    ops_redis.start()  # empty: a restarted Redis without persistence
    counters._redis_down_until = 0  # the retry pause is over
    count("oma_upstream_rate_limited_total", host="a")
    assert samples_of(counters.read()) == {("oma_upstream_rate_limited_total", (("host", "a"),)): 2}
    counters.flush()  # the two counted since the restart reach Redis
    assert samples_of(counters.read()) == {("oma_upstream_rate_limited_total", (("host", "a"),)): 2}


def test_counts_reach_redis_within_a_second_without_a_call_per_event(client, ops_redis) -> None:
    from oma.ops.metrics import count

    shared = redis.Redis.from_url(ops_redis.url())
    for _ in range(50):
        count("oma_upstream_rate_limited_total", host="b")
    assert not shared.hgetall("oma:ops:counters")  # nothing sent yet: no Redis call per event
    wait_until(lambda: shared.hgetall("oma:ops:counters"), timeout=5, interval=0.1)
    assert list(shared.hgetall("oma:ops:counters").values()) == [b"50"]


def samples_of(data: dict) -> dict:
    return dict(data)


def test_database_gauges(client, ops_redis) -> None:
    now = timezone.now()
    store = Store.objects.create(domain="shop9.genmystore.com", access_token="t", client_secret="s")
    order = Order.objects.create(store=store, order_id="1001")
    # Webhooks: two waiting (the oldest 120 s), one processed 3 s after receipt, one failed.
    State = WebhookDelivery.State
    for index, (state, age, lag) in enumerate(
        [(State.RECEIVED, 120, None), (State.RETRYING, 30, None), (State.PROCESSED, 60, 3), (State.FAILED, 50, None)]
    ):
        received = now - timedelta(seconds=age)
        WebhookDelivery.objects.create(
            store=store, shop_domain=store.domain, topic="orders/update", dedupe_key=f"k{index}", body="{}",
            state=state, received_at=received, processed_at=received + timedelta(seconds=lag) if lag else None,
        )
    # Sweeps: the last incremental one had to fix 3 + 4 orders the webhooks missed.
    SyncRun.objects.create(store=store, kind="incremental", state="succeeded", started_at=now - timedelta(hours=1),
                           finished_at=now - timedelta(hours=1), created=9, updated=9)
    SyncRun.objects.create(store=store, kind="incremental", state="succeeded", started_at=now - timedelta(minutes=5),
                           finished_at=now - timedelta(minutes=4), created=3, updated=4)
    SyncRun.objects.create(store=store, kind="incremental", state="failed", started_at=now - timedelta(minutes=1))
    # Shipments: two UPS due (the older 600 s overdue), one FedEx due, one USPS not due yet.
    for number, carrier, due_in in (("1Z1", "ups", -600), ("1Z2", "ups", -10), ("77", "fedex", -60),
                                    ("94", "usps", 3600)):
        Shipment.objects.create(store=store, order=order, tracking_number=number, carrier=carrier,
                                next_poll_at=now + timedelta(seconds=due_in))
    CarrierAccount.objects.create(carrier="ups", api_key="k", backoff_until=now + timedelta(minutes=5))
    # Pushes: one done, one failed, one pending and due.
    for index, (state, fulfill_id) in enumerate((("succeeded", "f1"), ("failed", ""), ("pending", ""))):
        FulfillmentPush.objects.create(key=f"key{index}", store=store, order=order, state=state, fulfill_id=fulfill_id)

    samples = scrape(client)
    assert samples['oma_webhook_deliveries_unfinished{state="received"}'] == 1
    assert samples['oma_webhook_deliveries_unfinished{state="retrying"}'] == 1
    assert samples['oma_webhook_deliveries_unfinished{state="processing"}'] == 0
    assert samples["oma_webhook_deliveries_failed"] == 1
    assert 120 <= samples["oma_webhook_oldest_unfinished_age_seconds"] < 180
    assert samples['oma_webhook_processing_lag_seconds{stat="max"}'] == pytest.approx(3)
    assert samples['oma_sweep_drift_orders{store="shop9.genmystore.com"}'] == 7
    assert 300 <= samples['oma_sweep_last_success_age_seconds{kind="incremental",store="shop9.genmystore.com"}'] < 400
    assert samples['oma_shipments_due{carrier="ups"}'] == 2
    assert samples['oma_shipments_due{carrier="fedex"}'] == 1
    assert 'oma_shipments_due{carrier="usps"}' not in samples
    assert 600 <= samples['oma_shipments_polling_lag_seconds{carrier="ups"}'] < 700
    assert samples['oma_carrier_accounts_backed_off{carrier="ups"}'] == 1
    assert samples['oma_fulfillment_pushes{state="succeeded"}'] == 1
    assert samples['oma_fulfillment_pushes{state="failed"}'] == 1
    assert samples["oma_fulfillment_pushes_due"] == 1
    assert all(value == 1 for name, value in samples.items() if name.startswith("oma_metrics_collector_up"))


def test_queue_depth_counts_messages_waiting_in_the_broker(client, ops_redis) -> None:
    from oma.celery import app

    with app.connection_for_write(ops_redis.url(1)) as connection:
        for _ in range(3):
            app.send_task("ops.heartbeat", connection=connection)
    samples = scrape(client)
    assert samples['oma_celery_queue_depth{queue="celery"}'] == 3
    assert samples["oma_celery_unacked_messages"] == 0


def test_upstream_429s_are_counted_per_host_whichever_client_saw_them(client, ops_redis) -> None:
    sandbox = start_sandbox(orders=5, rate_limit=(1, 0.01))  # one request, then 429 for a long while
    try:
        store = connect(sandbox, rate_limit=(100, 100.0))  # OMA's own bucket does not hold it back
        genstore = genstore_client_for(store)
        genstore.max_retries = 0
        genstore.shop_info()
        with pytest.raises(Exception, match="429"):
            genstore.shop_info()
        host = f"127.0.0.1:{sandbox.port}"
    finally:
        sandbox.stop()
    assert scrape(client)[f'oma_upstream_rate_limited_total{{host="{host}"}}'] == 1


def test_metrics_can_require_a_bearer_token(client, ops_redis, settings) -> None:
    settings.OMA_METRICS_TOKEN = "scrape-token-123456"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer scrape-token-123456"}).status_code == 200


def test_a_collector_that_fails_is_reported_and_the_rest_still_served(client, ops_redis) -> None:
    ops_redis.stop()
    samples = scrape(client)
    assert samples['oma_metrics_collector_up{collector="queue"}'] == 0
    assert samples['oma_metrics_collector_up{collector="pushes"}'] == 1
    assert samples['oma_health_check_ok{check="broker"}'] == 0
