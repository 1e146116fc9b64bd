"""ShipStation: the client and connector against the sandbox (a real HTTP server), and the poll end to end."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests
from django.core.management import call_command
from django.core.management.base import CommandError

from oma.channels.connectors.base import ConnectorAuthError, PollStats, RateLimitedError
from oma.channels.connectors.shipstation import ShipStationClient, record_from_shipment, shipstation_time
from oma.channels.models import Channel, ExternalShipment, OrderPoll
from oma.channels.sandbox.server import ShipStationSandbox, demo_tracking_number
from oma.channels.services import channel_create, channel_poll
from oma.orders.models import LineItem
from tests.channels.conftest import order_record, sync_orders
from tracking.models import Shipment, ShipmentLine

KEY, SECRET = "ss-key", "ss-secret"


@pytest.fixture
def sandbox() -> Iterator[ShipStationSandbox]:
    with ShipStationSandbox(api_key=KEY, api_secret=SECRET, rate_limit=10_000, rate_window_seconds=60) as server:
        yield server


def client_for(sandbox: ShipStationSandbox, **options) -> ShipStationClient:
    return ShipStationClient(base_url=sandbox.url, api_key=KEY, api_secret=SECRET, **options)


# --- the wire ----------------------------------------------------------------------------------------------


def test_pacific_times_become_utc_with_the_right_offset():
    assert shipstation_time("2024-01-15T06:51:33.6270000") == datetime(2024, 1, 15, 14, 51, 33, 627000, tzinfo=UTC)
    assert shipstation_time("2024-07-15T06:51:33") == datetime(2024, 7, 15, 13, 51, 33, tzinfo=UTC)
    assert shipstation_time("not a date") is None and shipstation_time(None) is None


def test_client_walks_every_page_and_keeps_only_the_exact_order_number(sandbox):
    for n in range(7):
        sandbox.add_shipment(order_number="1001", tracking_number=f"PARCEL{n:07d}", items=[{"sku": "A", "quantity": 1}])
    sandbox.add_shipment(order_number="10010", tracking_number="OTHER000001")  # ShipStation's filter matches it too
    client = client_for(sandbox, page_size=3)
    shipments = client.list_order_shipments("1001")
    assert sorted(s["trackingNumber"] for s in shipments) == [f"PARCEL{n:07d}" for n in range(7)]
    assert client.stats.requests == 3  # 8 shipments match the prefix: pages of 3
    assert shipments[0]["shipmentItems"][0]["sku"] == "A"


def test_client_refuses_bad_credentials_and_says_so(sandbox):
    client = ShipStationClient(base_url=sandbox.url, api_key=KEY, api_secret="wrong")
    with pytest.raises(ConnectorAuthError, match="refused"):
        client.list_order_shipments("1")
    assert requests.get(f"{sandbox.url}/shipments", timeout=5).status_code == 401


def test_client_waits_for_the_window_from_the_rate_limit_headers_instead_of_hitting_429():
    # Windows long enough that even a slow machine uses one up before it resets.
    with ShipStationSandbox(api_key=KEY, api_secret=SECRET, rate_limit=3, rate_window_seconds=1.5) as server:
        client = client_for(server)
        for n in range(6):
            client.list_order_shipments(str(n))
        assert server.stats.rate_limited == 0 and client.stats.requests == 6
        assert client.stats.waited_seconds > 0


def test_client_honours_a_429_and_stops_when_the_wait_is_longer_than_allowed():
    with ShipStationSandbox(api_key=KEY, api_secret=SECRET, rate_limit=2, rate_window_seconds=3) as server:
        first = client_for(server)
        first.list_order_shipments("a")
        first.list_order_shipments("b")
        second = client_for(server)  # knows nothing of the window: meets a 429, waits, succeeds
        second.list_order_shipments("c")
        assert second.stats.rate_limited == 1 and server.stats.rate_limited == 1
    with ShipStationSandbox(api_key=KEY, api_secret=SECRET, rate_limit=1, rate_window_seconds=60) as server:
        client = client_for(server, max_wait_seconds=5)
        client.list_order_shipments("a")
        with pytest.raises(RateLimitedError) as caught:
            client.list_order_shipments("b")
        assert 5 < caught.value.retry_after <= 60
        assert server.stats.rate_limited == 0  # it did not even ask: the headers said the window was used up


def test_records_from_shipments_skip_returns_and_map_carriers(sandbox):
    live = sandbox.add_shipment(order_number="7", tracking_number="9400 1000 0000 0000 0000 00",
                                carrier_code="stamps_com", items=[{"sku": "A", "quantity": 2, "lineItemKey": "L1"}])
    returned = sandbox.add_shipment(order_number="7", tracking_number="1Z999AA10123456784", is_return_label=True)
    record = record_from_shipment(live)
    assert record is not None and record.carrier == "usps" and record.external_id == str(live["shipmentId"])
    assert record.tracking_number == "9400100000000000000000"
    assert record.lines[0].line_item_id == "L1" and record.lines[0].quantity == 2
    assert record_from_shipment(returned) is None


# --- the poll end to end -----------------------------------------------------------------------------------


def shipstation_channel(store, sandbox, **options) -> Channel:
    return channel_create(store=store, kind="shipstation", name="ShipStation", base_url=sandbox.url, api_key=KEY,
                          api_secret=SECRET, **options)


def live_numbers() -> set[str]:
    return set(Shipment.objects.exclude(status="cancelled").values_list("tracking_number", flat=True))


# The acceptance polled 300 orders; 60 prove the same: each pattern below (one parcel, split in three, a label
# voided before the first poll and reissued, not shipped yet) still occurs at least ten times, and orders with
# several shipments still take several pages of two.
ACCEPTANCE_ORDERS = 60


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.django_db
def test_acceptance_orders_across_pages_some_voided_exactly_the_live_shipments(store, sandbox, settings):
    settings.CHANNELS_POLL_INTERVAL_MINUTES = 0
    records = [
        order_record(f"{5000 + i}", [("L1", "SKU-A", 2), ("L2", "SKU-B", 1)]) for i in range(ACCEPTANCE_ORDERS)
    ]
    sync_orders(store, records)
    number = iter(range(1, 100_000))
    expected_live: set[str] = set()
    voided: set[str] = set()
    for i in range(ACCEPTANCE_ORDERS):
        order = f"{5000 + i}"
        kind = i % 6
        if kind == 5:
            continue  # not shipped yet
        if kind in (1, 2):  # split: three parcels, one holding part of a line's quantity
            parcels = [[{"sku": "SKU-A", "quantity": 1, "lineItemKey": "L1"}],
                       [{"sku": "SKU-A", "quantity": 1, "lineItemKey": "L1"}],
                       [{"sku": "SKU-B", "quantity": 1}]]
        else:
            parcels = [[{"sku": "SKU-A", "quantity": 2, "lineItemKey": "L1"}, {"sku": "SKU-B", "quantity": 1}]]
        if kind == 3:  # a label voided before we ever saw it, then its reissue
            n = demo_tracking_number(next(number))
            sandbox.add_shipment(order_number=order, tracking_number=n, items=parcels[0], voided=True)
            voided.add(n)
        for parcel in parcels:
            n = demo_tracking_number(next(number))
            sandbox.add_shipment(order_number=order, tracking_number=n, items=parcel)
            expected_live.add(n)
    channel = shipstation_channel(store, sandbox)

    result = channel_poll(channel=channel, client=client_for(sandbox, page_size=2))
    assert result.orders_asked == ACCEPTANCE_ORDERS and not result.stopped
    assert result.stats.requests > ACCEPTANCE_ORDERS  # orders with several shipments took several pages
    assert live_numbers() == expected_live
    assert not Shipment.objects.filter(tracking_number__in=voided).exists()
    assert ExternalShipment.objects.filter(state="withdrawn").count() == len(voided)
    for line in LineItem.objects.filter(order__store=store):
        held = sum(ShipmentLine.objects.filter(line_item=line).exclude(shipment__status="cancelled")
                   .values_list("quantity", flat=True))
        assert held <= line.quantity
    assert Shipment.objects.filter(order__order_id="5001").count() == 3  # split into three parcels

    # ShipStation voids some live labels; the next poll withdraws them, and nothing else changes.
    to_void = [s for s in sandbox.shipments(voided=False) if s["orderNumber"] in {"5000", "5001", "5004"}]
    for shipment in to_void:
        sandbox.void(shipment["shipmentId"])
    withdrawn = {s["trackingNumber"] for s in to_void}
    again = channel_poll(channel=channel, client=client_for(sandbox, page_size=2),
                         now=datetime.now(tz=UTC) + timedelta(minutes=1))
    assert again.summary.count("withdrawn") == len(withdrawn)
    assert live_numbers() == expected_live - withdrawn
    assert set(Shipment.objects.filter(status="cancelled").values_list("tracking_number", flat=True)) == withdrawn
    assert again.summary.count("created") == 0

    # A third poll with nothing new creates nothing.
    third = channel_poll(channel=channel, client=client_for(sandbox, page_size=50),
                         now=datetime.now(tz=UTC) + timedelta(minutes=2))
    assert {o.outcome for o in third.summary.outcomes} <= {"duplicate"}
    assert live_numbers() == expected_live - withdrawn


@pytest.mark.django_db
def test_poll_picks_orders_lacking_tracking_longest_unasked_first_and_by_source_identifier(store, sandbox):
    sync_orders(store, [
        order_record("6001", source_name="amazon", source_identifier="AMZ-6001"),
        order_record("6002", source_name="web"),
        order_record("6003", source_name="amazon", source_identifier="AMZ-6003", cancelled=True),
        order_record("6004", source_name="amazon", source_identifier="AMZ-6004",
                     created_at=datetime.now(tz=UTC) - timedelta(days=90)),
    ])
    sandbox.add_shipment(order_number="AMZ-6001", tracking_number="PARCEL0006001", items=[{"sku": "SKU-A",
                                                                                          "quantity": 1}])
    channel = shipstation_channel(store, sandbox, source_names=["amazon"])
    result = channel_poll(channel=channel)
    assert result.orders_due == 1 and result.orders_asked == 1  # web, cancelled and old orders are not asked
    assert Shipment.objects.get().order.order_id == "6001"
    assert OrderPoll.objects.get().shipments_seen == 1
    # Tracked now and asked a moment ago: not due again until the void window's re-check interval.
    assert channel_poll(channel=channel).orders_due == 0


@pytest.mark.django_db
def test_failures_pause_the_channel_and_lose_nothing(store, sandbox):
    sync_orders(store, [order_record("7001"), order_record("7002")])
    channel = channel_create(store=store, kind="shipstation", name="SS", base_url=sandbox.url, api_key=KEY,
                             api_secret="wrong")
    result = channel_poll(channel=channel)
    channel.refresh_from_db()
    assert "refused" in result.stopped and "refused" in channel.last_error
    assert channel.poll_paused_until is not None and channel.poll_paused_until > datetime.now(tz=UTC)

    with ShipStationSandbox(api_key=KEY, api_secret=SECRET, rate_limit=1, rate_window_seconds=120) as slow:
        slow.add_shipment(order_number="7001", tracking_number="PARCEL0007001")
        slow.add_shipment(order_number="7002", tracking_number="PARCEL0007002")
        limited = channel_create(store=store, kind="shipstation", name="Slow", base_url=slow.url, api_key=KEY,
                                 api_secret=SECRET)
        result = channel_poll(channel=limited, client=ShipStationClient(
            base_url=slow.url, api_key=KEY, api_secret=SECRET, max_wait_seconds=1, stats=PollStats()))
        assert result.orders_asked == 1 and "rate limit" in result.stopped
        assert Shipment.objects.count() == 1  # the first answer was kept
        limited.refresh_from_db()
        assert limited.poll_paused_until is not None


@pytest.mark.django_db
def test_poll_task_takes_a_lease_and_skips_paused_channels(store, sandbox):
    from oma.channels.tasks import poll_channel

    sync_orders(store, [order_record("8001")])
    sandbox.add_shipment(order_number="8001", tracking_number="PARCEL0008001")
    channel = shipstation_channel(store, sandbox)
    Channel.objects.filter(pk=channel.pk).update(poll_lease_until=datetime.now(tz=UTC) + timedelta(minutes=5))
    assert poll_channel.run(channel.pk) == "skipped"
    Channel.objects.filter(pk=channel.pk).update(poll_lease_until=None)
    assert "1/1 orders asked" in poll_channel.run(channel.pk)
    assert Channel.objects.get(pk=channel.pk).poll_lease_until is None
    assert Shipment.objects.get().source == Shipment.Source.CONNECTOR


@pytest.mark.django_db
def test_channel_command_for_shipstation(store, sandbox):
    with pytest.raises(CommandError, match="needs --api-key and --api-secret"):
        call_command("channel", "add", "--store", store.domain, "--kind", "shipstation", "--name", "SS")
    out = io.StringIO()
    call_command("channel", "add", "--store", store.domain, "--kind", "shipstation", "--name", "SS",
                 "--base-url", sandbox.url, "--api-key", KEY, "--api-secret", SECRET, stdout=out)
    created = json.loads(out.getvalue())
    assert created["kind"] == "shipstation" and "secret" not in created and created["baseUrl"] == sandbox.url
    channel = Channel.objects.get(slug=created["slug"])
    assert channel.api_key == KEY and channel.api_secret == SECRET
    sync_orders(store, [order_record("9001")])
    sandbox.add_shipment(order_number="9001", tracking_number="PARCEL0009001")
    out = io.StringIO()
    call_command("channel", "poll", "--slug", created["slug"], stdout=out)
    assert "1/1 orders asked" in out.getvalue() and "1 created" in out.getvalue()


def test_sandbox_control_api(sandbox):
    created = requests.post(f"{sandbox.url}/_sandbox/shipments", json={
        "orderNumber": "X1", "trackingNumber": "PARCEL0000777", "items": [{"sku": "A", "quantity": 1}]}, timeout=5)
    assert created.status_code == 201
    shipment_id = created.json()["shipmentId"]
    assert requests.post(f"{sandbox.url}/_sandbox/shipments/{shipment_id}/void", timeout=5).status_code == 200
    answer = requests.get(f"{sandbox.url}/shipments", params={"orderNumber": "x1", "includeShipmentItems": "false"},
                          auth=(KEY, SECRET), timeout=5)
    body = answer.json()
    assert body["total"] == 1 and body["pages"] == 1 and body["shipments"][0]["voided"] is True
    assert body["shipments"][0]["shipmentItems"] is None and body["shipments"][0]["voidDate"]
    assert set(answer.headers) >= {"X-Rate-Limit-Limit", "X-Rate-Limit-Remaining", "X-Rate-Limit-Reset"}
    assert requests.get(f"{sandbox.url}/_sandbox/stats", timeout=5).json()["requests"] == 1


@pytest.mark.django_db
def test_sandbox_seeded_from_a_store_gives_a_poll_its_shipments(store, sandbox):
    from oma.channels.management.commands.shipstation_sandbox import Command
    from oma.channels.sandbox.server import seed_demo

    sync_orders(store, [order_record(f"{100 + i}", [("L1", "SKU-A", 2), ("L2", "SKU-B", 1)]) for i in range(20)])
    counts = seed_demo(sandbox, Command()._orders_of(store.domain, 50))
    assert counts["orders"] == 20 and counts["voided"] == 2
    channel = shipstation_channel(store, sandbox)
    channel_poll(channel=channel)
    assert live_numbers() == {s["trackingNumber"] for s in sandbox.shipments(voided=False)}
    assert not Shipment.objects.filter(
        tracking_number__in=[s["trackingNumber"] for s in sandbox.shipments(voided=True)]).exists()
