"""A voided label and its reissue arriving together (issue 16, item 2): one webhook delivery, or one ShipStation poll,
brings the void of a label whose fulfillment OMA pushed and the replacement label for the same items.

Matching counts the voided label's still-live Genstore fulfillment as shipping nothing (its cancel is owed, and the
replacement's push runs it first), so the reissue is matched at once: no rejection, exactly one cancel at Genstore,
one new fulfillment. The merchant's own Genstore fulfillments are never cancelled by OMA, so theirs keep counting.
Against the Genstore and ShipStation sandboxes over HTTP, with PostgreSQL."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from oma.channels.connectors.base import ExternalShipmentRecord, LineRef
from oma.channels.connectors.webhook import sign
from oma.channels.models import Channel, ExternalShipment
from oma.channels.sandbox.server import ShipStationSandbox, demo_tracking_number
from oma.channels.services import channel_create, channel_poll, external_shipments_receive
from oma.fulfillment.models import FulfillmentPush
from oma.fulfillment.services.push import store_pushes_drain
from oma.orders.models import LineItem, Order
from oma.stores.models import Store
from tests.channels.genstore_voids import (  # noqa: F401 (fixtures)
    genstore_fulfillments,
    lines_of,
    open_order,
    quick_client,
    requests_seen,
    sandbox_fixture,
    status_at_genstore,
    store_fixture,
    sweep,
)
from tests.fulfillment.conftest import new_number
from tracking.models import Shipment
from tracking.services import shipment_add
from webhooks.models import WebhookDelivery
from webhooks.processing import deliveries_process

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

KEY, SECRET = "ss-key", "ss-secret"


def fulfilled_in_genstore(store: Store, order: Order) -> None:
    """The mirror as Genstore holds it after a push: the items fulfilled, fulfillableQuantity down to 0."""
    sweep(store)
    assert set(LineItem.objects.filter(order=order).values_list("fulfillable_quantity", flat=True)) == {0}


def assert_one_cancel_and_the_replacement_created(sandbox, store: Store, order: Order, voided: str,
                                                  replacement: str, created_before: int) -> None:
    drained = store_pushes_drain(store=store, client=quick_client(store))
    assert drained.results == {"cancelled": 1, "created": 1}
    assert requests_seen(sandbox) == (1, 1, created_before + 1)
    assert status_at_genstore(sandbox, order, voided) == "cancelled"
    [created] = genstore_fulfillments(sandbox, order, replacement)
    assert created["status"] == "success"
    assert created["lineItems"] == [{"id": line.line_item_id, "quantity": line.quantity} for line in lines_of(order)]
    assert FulfillmentPush.objects.get(shipment__tracking_number=voided).state == FulfillmentPush.State.CANCELLED
    assert not ExternalShipment.objects.filter(state=ExternalShipment.State.REJECTED).exists()


# --- one webhook delivery -----------------------------------------------------------------------------------


def post_delivery(client, channel: Channel, msg_id: str, order: Order, *shipments: dict) -> None:
    """A signed delivery POSTed to the channel's webhook, then processed as the worker does."""
    body = json.dumps({"externalOrderId": order.order_id, "shipments": list(shipments)}).encode()
    timestamp = int(time.time())
    response = client.post(
        f"/webhooks/channels/{channel.slug}/", data=body, content_type="application/json",
        headers={"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
                 "webhook-signature": sign(secret=channel.signing_secret, msg_id=msg_id, timestamp=timestamp,
                                           body=body)},
    )
    assert response.status_code == 200, response.content
    delivery = WebhookDelivery.objects.get(webhook_id=f"{channel.slug}/{msg_id}")
    result = deliveries_process(delivery_ids=[delivery.pk])[delivery.pk]
    assert result.state == "processed", result


def label(number: str, order: Order, *, status: str = "shipped") -> dict:
    return {"trackingNumber": number, "carrier": "usps", "status": status,
            "lineItems": [{"lineItemId": line.line_item_id, "quantity": line.quantity} for line in lines_of(order)]}


def test_a_delivery_bringing_the_void_and_the_reissue_matches_the_reissue_at_once(sandbox, store, client):
    order = open_order(store, lines_at_least=2)
    channel = channel_create(store=store, kind="webhook", name="Label tool")
    first, reissue = new_number(), new_number()
    post_delivery(client, channel, "msg_1", order, label(first, order))
    assert store_pushes_drain(store=store, client=quick_client(store)).results == {"created": 1}
    fulfilled_in_genstore(store, order)
    created_before = requests_seen(sandbox)[2]

    # One delivery: the label voided and its replacement.
    post_delivery(client, channel, "msg_2", order, label(first, order, status="voided"), label(reissue, order))

    assert Shipment.objects.get(tracking_number=first).status == "cancelled"
    record = ExternalShipment.objects.get(tracking_number=reissue)
    assert record.state == ExternalShipment.State.MATCHED and record.problem == ""
    assert Shipment.objects.get(tracking_number=reissue).lines.count() == len(lines_of(order))
    assert requests_seen(sandbox)[:2] == (0, 0)  # matching sends nothing: the pushes do
    assert_one_cancel_and_the_replacement_created(sandbox, store, order, first, reissue, created_before)

    # The same delivery's content again under a new id: nothing new, nothing sent.
    post_delivery(client, channel, "msg_3", order, label(first, order, status="voided"), label(reissue, order))
    assert store_pushes_drain(store=store, client=quick_client(store)).pushed == 0
    assert requests_seen(sandbox) == (1, 1, created_before + 1)


# --- one ShipStation poll -----------------------------------------------------------------------------------


@pytest.fixture
def shipstation() -> Iterator[ShipStationSandbox]:
    with ShipStationSandbox(api_key=KEY, api_secret=SECRET, rate_limit=10_000, rate_window_seconds=60) as server:
        yield server


def test_a_poll_bringing_the_void_and_the_reissue_matches_the_reissue_at_once(
    sandbox, store, shipstation, settings
):
    settings.CHANNELS_POLL_INTERVAL_MINUTES = 0
    settings.CHANNELS_POLL_LOOKBACK_DAYS = 3650  # the sandbox's orders are older than a month
    order = open_order(store, lines_at_least=2)
    channel = channel_create(store=store, kind="shipstation", name="ShipStation", base_url=shipstation.url,
                             api_key=KEY, api_secret=SECRET)
    items = [{"sku": line.sku, "quantity": line.quantity, "lineItemKey": line.line_item_id} for line in lines_of(order)]
    clock = datetime.now(tz=UTC)

    def poll() -> dict[str, int]:
        nonlocal clock
        clock += timedelta(minutes=1)
        result = channel_poll(channel=channel, now=clock)
        assert not result.stopped, result.stopped
        counts: dict[str, int] = {}
        for outcome in result.summary.outcomes:
            counts[outcome.outcome] = counts.get(outcome.outcome, 0) + 1
        return counts

    first = demo_tracking_number(7001)
    shipstation.add_shipment(order_number=order.order_id, tracking_number=first, items=items)
    assert poll() == {"created": 1}
    assert store_pushes_drain(store=store, client=quick_client(store)).results == {"created": 1}
    fulfilled_in_genstore(store, order)
    created_before = requests_seen(sandbox)[2]

    # ShipStation voids the label and prints a new one for the same items; one poll sees both.
    [printed] = shipstation.shipments(voided=False)
    assert shipstation.void(printed["shipmentId"])
    reissue = demo_tracking_number(7002)
    shipstation.add_shipment(order_number=order.order_id, tracking_number=reissue, items=items)

    assert poll() == {"withdrawn": 1, "created": 1}
    assert ExternalShipment.objects.get(tracking_number=reissue).state == ExternalShipment.State.MATCHED
    assert_one_cancel_and_the_replacement_created(sandbox, store, order, first, reissue, created_before)

    assert set(poll()) == {"duplicate"}
    assert store_pushes_drain(store=store, client=quick_client(store)).pushed == 0
    assert requests_seen(sandbox) == (1, 1, created_before + 1)


# --- the merchant's own fulfillment -------------------------------------------------------------------------


def test_a_void_of_the_merchants_own_genstore_fulfillment_frees_nothing(sandbox, store):
    order = open_order(store)
    lines = lines_of(order)
    number = new_number()
    # The merchant fulfilled the order in Genstore with this number; OMA tracks it as a `genstore` shipment.
    quick_client(store).create_fulfillment(
        order_id=order.order_id, line_items=[(line.line_item_id, line.quantity) for line in lines],
        tracking_number=number, tracking_company="USPS", tracking_url=None, notify_customer=False,
    )
    shipment_add(store=store, tracking_number=number, carrier="usps", order=order,
                 lines=[(line, line.quantity) for line in lines], source=Shipment.Source.GENSTORE)
    fulfilled_in_genstore(store, order)
    channel = channel_create(store=store, kind="webhook", name="Label tool")

    def record(tracking_number: str, *, voided: bool = False) -> ExternalShipmentRecord:
        return ExternalShipmentRecord(
            external_order_id=order.order_id, tracking_number=tracking_number, carrier="usps",
            lines=tuple(LineRef(line_item_id=line.line_item_id, quantity=line.quantity) for line in lines),
            status="voided" if voided else "shipped", voided=voided,
        )

    assert [o.outcome for o in external_shipments_receive(channel=channel, records=[record(number)]).outcomes] == [
        "already"
    ]
    # The channel voids that number and reports another: the merchant's fulfillment is not OMA's to cancel, so
    # its items stay shipped and the other label is refused.
    summary = external_shipments_receive(channel=channel, records=[record(number, voided=True), record(new_number())])
    assert [o.outcome for o in summary.outcomes] == ["withdrawn", "rejected"]
    assert "nothing left to ship" in summary.outcomes[1].problem or "more than is left" in summary.outcomes[1].problem
    store_pushes_drain(store=store, client=quick_client(store))
    assert requests_seen(sandbox)[:2] == (0, 0)
    assert status_at_genstore(sandbox, order, number) == "success"
