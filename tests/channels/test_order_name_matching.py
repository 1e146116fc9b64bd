"""Tracking rows keyed by the Genstore order name (`#1001` or `1001`, what merchants and ShipStation export) match
that order, as admin search finds it: through the CSV import and the channel webhook, set-based, ambiguity refused."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest
import requests

from oma.channels.connectors.webhook import sign
from oma.channels.csv_import import tracking_csv_import
from oma.channels.matching import orders_for_external_ids
from oma.channels.models import ExternalShipment
from oma.channels.services import channel_create, external_shipments_match_all_waiting
from oma.genstore.records import OrderRecord
from oma.stores.models import Store
from tests.channels.conftest import order_record, sync_orders
from tracking.models import Shipment
from webhooks.models import WebhookDelivery
from webhooks.processing import deliveries_process

pytestmark = pytest.mark.django_db


def named(order_id: str, name: str, **options) -> OrderRecord:
    """An order whose name is not its orderId (Genstore's ids are long numbers, names are #1001...)."""
    return replace(order_record(order_id, [("L1", "SKU-A", 1)], **options), name=name)


def import_csv(store: Store, *rows: str, **options):
    data = ("order,tracking_number\n" + "".join(f"{row}\n" for row in rows)).encode()
    return tracking_csv_import(store=store, data=data, file_name="by-name.csv", **options)


def shipped_orders() -> dict[str, str]:
    return dict(Shipment.objects.values_list("tracking_number", "order__order_id"))


def test_csv_rows_keyed_by_the_order_name_with_or_without_the_sign(store):
    sync_orders(store, [named("5550001", "#1001"), named("5550002", "#1002"), named("5550003", "1003")])
    report = import_csv(store, "#1001,PARCEL0000001", "1002,PARCEL0000002", "#1003,PARCEL0000003",
                        " #1004 ,PARCEL0000004")
    assert [result.outcome for result in report.results] == ["created", "created", "created", "waiting"]
    assert shipped_orders() == {"PARCEL0000001": "5550001", "PARCEL0000002": "5550002",
                                "PARCEL0000003": "5550003"}
    assert "no mirrored order has this orderId, sourceIdentifier or name" in report.results[3].reason


def test_the_name_is_tried_last_in_one_more_query(store, django_assert_num_queries):
    sync_orders(store, [named("5550001", "#1001"), named("1002", "#9999"), named("5550003", "#1002"),
                        named("5550004", "#1004", source_identifier="AMZ-1")])
    with django_assert_num_queries(3):  # sourceIdentifier, orderId for the rest, the name for what is left
        found = orders_for_external_ids(store=store, external_ids=["AMZ-1", "1002", "#1002", "1001", "#7"])
    assert {key: lookup.order.order_id for key, lookup in found.items()} == {
        "AMZ-1": "5550004", "1002": "1002", "#1002": "5550003", "1001": "5550001"}  # an orderId beats a name
    with django_assert_num_queries(1):  # everything found by sourceIdentifier: nothing more is asked
        orders_for_external_ids(store=store, external_ids=["AMZ-1"])


def test_two_orders_with_one_name_are_refused_unless_the_source_names_say_which(store):
    sync_orders(store, [named("5550001", "#2001", source_name="amazon"), named("5550002", "#2001", source_name="web")])
    report = import_csv(store, "#2001,PARCEL0000011")
    assert report.results[0].outcome == "rejected"
    assert report.results[0].reason.startswith("orders 5550001, 5550002 all have the name '#2001'")
    amazon = channel_create(store=store, kind="csv", name="Amazon", source_names=["amazon"])
    report = import_csv(store, "#2001,PARCEL0000011", channel=amazon)
    assert report.results[0].outcome == "created" and shipped_orders() == {"PARCEL0000011": "5550001"}


def test_a_row_waiting_under_a_name_matches_when_the_order_arrives(store, django_capture_on_commit_callbacks):
    report = import_csv(store, "1005,PARCEL0000021")
    assert report.results[0].outcome == "waiting"
    with django_capture_on_commit_callbacks(execute=True):  # orders_changed is sent once the mirror commits
        sync_orders(store, [named("5550005", "#1005")])
    assert ExternalShipment.objects.get().state == ExternalShipment.State.MATCHED
    assert shipped_orders() == {"PARCEL0000021": "5550005"}


def test_the_safety_net_matches_rows_waiting_under_a_name_when_the_hook_was_missed(store):
    report = import_csv(store, "1006,PARCEL0000041", "#1007,PARCEL0000042", "#1008,PARCEL0000043",
                        "1009,PARCEL0000044")
    assert [result.outcome for result in report.results] == ["waiting"] * 4
    sync_orders(store, [named("5550006", "#1006"), named("5550007", "1007"), named("5550008", "#1008"),
                        named("5550010", "")])  # inside the test's transaction: orders_changed's hook never runs
    assert shipped_orders() == {}
    assert external_shipments_match_all_waiting().describe() == "3 created"
    assert shipped_orders() == {"PARCEL0000041": "5550006", "PARCEL0000042": "5550007",
                                "PARCEL0000043": "5550008"}
    assert ExternalShipment.objects.get(state=ExternalShipment.State.UNMATCHED).external_order_id == "1009"


@pytest.mark.postgres
def test_a_channel_webhook_keyed_by_the_order_name(live_server, store):
    sync_orders(store, [named("5550001", "#1001"), named("5550002", "#1002")])
    channel = channel_create(store=store, kind="webhook", name="3PL")
    for number, (order, tracking) in enumerate([("#1001", "PARCEL0000031"), ("1002", "PARCEL0000032")]):
        body = json.dumps({"externalOrderId": order, "shipments": [{"trackingNumber": tracking}]}).encode()
        msg_id, timestamp = f"msg_{number}", int(time.time())
        response = requests.post(
            f"{live_server.url}/webhooks/channels/{channel.slug}/", data=body, timeout=10,
            headers={"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "Content-Type": "application/json",
                     "webhook-signature": sign(secret=channel.signing_secret, msg_id=msg_id, timestamp=timestamp,
                                               body=body)},
        )
        assert response.status_code == 200, response.text
    deliveries_process(delivery_ids=list(WebhookDelivery.objects.values_list("pk", flat=True)))
    assert shipped_orders() == {"PARCEL0000031": "5550001", "PARCEL0000032": "5550002"}
