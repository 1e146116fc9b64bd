"""Acceptance (issue 16, item 2): a ShipStation label voided after OMA pushed its fulfillment, and its reissue.

End to end: the Genstore and ShipStation sandboxes over HTTP, ShipStation polled as the channel does, a real Celery
worker on its own Redis broker pushing to Genstore. Checked: exactly one cancel at Genstore per voided label (the
sandbox's request counts), the replacement label's fulfillment created with the same items, a void delivered again
changes nothing, and a cancel whose answer was lost (applied, answered 502) is retried and recorded once.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from oma.channels.models import Channel, ExternalShipment
from oma.channels.sandbox.server import ShipStationSandbox, demo_tracking_number
from oma.channels.services import channel_create, channel_poll
from oma.fulfillment.models import FulfillmentPush
from oma.fulfillment.reconciliation import Finding, store_reconcile
from oma.fulfillment.services.push import pushes_pending
from oma.fulfillment.tasks import push_pending
from oma.orders.models import Order
from tests.fixtures_celery import (  # noqa: F401 (fixtures)
    CeleryWorker,
    celery_worker_factory,
    private_redis,
    subprocess_env,
    wait_until,
)
from tests.fulfillment.conftest import open_orders
from tracking.models import Shipment

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

KEY, SECRET = "ss-key", "ss-secret"
CANCEL = "PUT /fulfillments/{id}/cancel"
State = FulfillmentPush.State


@pytest.fixture
def shipstation() -> Iterator[ShipStationSandbox]:
    with ShipStationSandbox(api_key=KEY, api_secret=SECRET, rate_limit=10_000, rate_window_seconds=60) as server:
        yield server


class Scene:
    def __init__(self, genstore, shipstation: ShipStationSandbox, channel: Channel, worker: CeleryWorker) -> None:
        self.genstore = genstore
        self.shipstation = shipstation
        self.channel = channel
        self.worker = worker
        self.clock = datetime.now(tz=UTC)
        self.serial = 0

    def label(self, order: Order) -> str:
        """ShipStation prints a label for every item of the order."""
        self.serial += 1
        number = demo_tracking_number(7000 + self.serial)
        items = [{"sku": line.sku, "quantity": line.quantity, "lineItemKey": line.line_item_id}
                 for line in order.line_items.order_by("pk")]
        self.shipstation.add_shipment(order_number=order.order_id, tracking_number=number, items=items)
        return number

    def void(self, number: str) -> None:
        [shipment] = [s for s in self.shipstation.shipments(voided=False) if s["trackingNumber"] == number]
        assert self.shipstation.void(shipment["shipmentId"])

    def poll(self) -> dict[str, int]:
        """OMA polls ShipStation (each poll a minute later: every order is due again)."""
        self.clock += timedelta(minutes=1)
        result = channel_poll(channel=self.channel, now=self.clock)
        assert not result.stopped, result.stopped
        counts: dict[str, int] = {}
        for outcome in result.summary.outcomes:
            counts[outcome.outcome] = counts.get(outcome.outcome, 0) + 1
        return counts

    def fulfillments(self, order: Order, number: str) -> list[dict]:
        return [f for f in self.genstore.fulfillments("shop1", order.order_id) if f["trackingNumber"] == number]

    def status_of(self, order: Order, number: str) -> str:
        found = self.fulfillments(order, number)
        return found[0]["status"] if len(found) == 1 else f"{len(found)} fulfillments"

    def wait(self, predicate, what: str, timeout: float = 60) -> None:
        try:
            wait_until(predicate, timeout=timeout, interval=0.2, what=what)
        except TimeoutError:
            print(self.worker.log_tail(200))
            raise

    def cancels(self) -> tuple[int, int]:
        stats = self.genstore.stats("shop1")
        return stats["by_endpoint"].get(CANCEL, 0), stats["fulfillments_cancelled"]


def settled() -> bool:
    return not FulfillmentPush.objects.filter(state__in=[State.PENDING, State.IN_PROGRESS]).exists() and not (
        pushes_pending(include_queued=True)
    )


def test_a_voided_shipstation_label_cancels_its_fulfillment_once_and_the_reissue_is_fulfilled(
    transactional_db, broker, private_redis, sandbox, store, shipstation, celery_worker_factory, settings  # noqa: F811
):
    # (The broker first: what the store's first sweep queues goes to this test's worker.)
    settings.CHANNELS_POLL_INTERVAL_MINUTES = 0
    settings.CHANNELS_POLL_LOOKBACK_DAYS = 3650  # the sandbox's orders are older than a month
    orders = [order for order in open_orders(store) if order.genstore_created_at is not None][:3]
    assert len(orders) == 3
    channel = channel_create(store=store, kind="shipstation", name="ShipStation", base_url=shipstation.url,
                             api_key=KEY, api_secret=SECRET)
    env = subprocess_env(broker_url=broker, extra={"LOG_LEVEL": "WARNING", "REDIS_URL": private_redis.url(1)})
    scene = Scene(sandbox, shipstation, channel, celery_worker_factory(env=env, concurrency=2))

    # Labels for three orders; OMA picks them up and its worker pushes their fulfillments.
    first = [scene.label(order) for order in orders]
    assert scene.poll() == {"created": 3}
    scene.wait(lambda: all(scene.status_of(o, n) == "success" for o, n in zip(orders, first, strict=True)),
               "the three fulfillments")

    # ShipStation voids the first order's label and prints a new one for the same items.
    scene.void(first[0])
    reissue = scene.label(orders[0])
    outcomes = scene.poll()
    assert outcomes.get("withdrawn") == 1
    scene.wait(lambda: scene.status_of(orders[0], first[0]) == "cancelled"
               and scene.status_of(orders[0], reissue) == "success", "the cancel and the reissue's fulfillment")
    scene.wait(settled, "the pushes to settle")
    assert scene.cancels() == (1, 1)  # exactly one cancel sent, one applied
    [created] = scene.fulfillments(orders[0], reissue)
    assert created["lineItems"] == [{"id": line.line_item_id, "quantity": line.quantity}
                                    for line in orders[0].line_items.order_by("pk")]

    # The same void (and everything else) delivered again; the beat's sweep of owed pushes: nothing more is sent.
    assert set(scene.poll()) == {"duplicate"}
    push_pending()
    scene.wait(settled, "the pushes to settle")
    assert scene.cancels() == (1, 1)

    # The second order's label is voided while Genstore applies every write but answers 502: the PUT is retried
    # (Genstore: "already cancelled"), the fulfillment read back, the cancel recorded once.
    sandbox.set_faults(write_error_rate=1.0)
    try:
        scene.void(first[1])
        second_reissue = scene.label(orders[1])
        assert scene.poll().get("withdrawn") == 1
        scene.wait(lambda: scene.status_of(orders[1], first[1]) == "cancelled"
                   and scene.status_of(orders[1], second_reissue) == "success",
                   "the cancel and the reissue's fulfillment, through 502s")
        scene.wait(settled, "the pushes to settle")
    finally:
        sandbox.clear_faults()
    sent, applied = scene.cancels()
    assert applied == 2 and sent == 1 + 2  # one cancel each; the lost answer cost one repeated PUT, applied once
    assert len(scene.fulfillments(orders[1], second_reissue)) == 1  # the create answered 502 was adopted, not redone

    # Every voided label's push says so; the untouched order kept its fulfillment; Genstore holds one live
    # fulfillment per order; reconciliation finds nothing left to fix.
    for number in first[:2]:
        push = FulfillmentPush.objects.get(shipment__tracking_number=number)
        assert push.state == State.CANCELLED and push.cancelled_at is not None
        assert Shipment.objects.get(tracking_number=number).status == "cancelled"
    assert scene.status_of(orders[2], first[2]) == "success"
    for order in orders:
        live = [f for f in sandbox.fulfillments("shop1", order.order_id) if f["status"] != "cancelled"]
        assert len(live) == 1
    assert ExternalShipment.objects.filter(tracking_number__in=[reissue, second_reissue],
                                           state=ExternalShipment.State.MATCHED).count() == 2
    report = store_reconcile(store=store, refresh=True)
    assert report.count(Finding.FULFILLMENT_OF_VOIDED_LABEL) == 0
    assert report.count(Finding.SHIPMENT_WITHOUT_FULFILLMENT) == 0
    assert report.count(Finding.DUPLICATE_FULFILLMENT) == 0
