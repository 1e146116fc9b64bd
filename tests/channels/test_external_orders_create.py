"""External orders into Genstore against the sandbox over real HTTP: created once, adopted, read back after an
ambiguous answer or a killed worker, refused, retried, cancelled (before creation, after, after a fulfilment),
later changes recorded, and tracking for an external order pushed as a fulfillment of the created order."""

from __future__ import annotations

import dataclasses
import io
import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection
from django.test import TestCase
from django.utils import timezone

from oma.channels.connectors.base import ExternalShipmentRecord
from oma.channels.models import Channel, ExternalOrder, ExternalOrderDrain, ExternalShipment
from oma.channels.order_create import (
    CancelResult,
    CreateResult,
    external_order_cancel,
    external_order_cancel_request,
    external_order_create,
    external_order_retry,
    external_orders_drain,
    order_draft_for,
)
from oma.channels.order_intake import external_orders_receive
from oma.channels.services import channel_create, external_shipments_receive
from oma.fulfillment.services.push import PushResult, shipment_push
from oma.genstore.client import GenstoreClient
from oma.orders.models import Order
from oma.sandbox.server import GenstoreSandbox
from oma.stores.models import Store
from oma.stores.services import genstore_limiter
from tests.admin.factories import AddressInputFactory, ExternalOrderInputFactory, ExternalOrderLineInputFactory
from tests.channels.conftest import order_record, sync_orders
from tests.genstore_sandbox import connect, start_sandbox
from tracking.models import Shipment

# Not transactional (a flush per test costs seconds): the drain's after-commit queueing is not run, the tests call
# the services themselves.
pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

State = ExternalOrder.State


@pytest.fixture
def sandbox() -> Iterator[GenstoreSandbox]:
    box = start_sandbox(orders=5, seed=11, rate_limit=None)
    yield box
    box.stop()


@pytest.fixture
def store(sandbox: GenstoreSandbox, redis_client) -> Store:
    return connect(sandbox, rate_limit=(1000, 1000.0))


@pytest.fixture
def channel(store: Store) -> Channel:
    return channel_create(store=store, kind="csv", name="Amazon", source_names=["Amazon"])


@pytest.fixture
def client(store: Store) -> Iterator[GenstoreClient]:
    """The store's client, retrying at once (the tests inject failures on purpose)."""
    with GenstoreClient(
        base_url=store.resolved_api_base_url, api_version=store.api_version, access_token=store.access_token,
        limiter=genstore_limiter(), limiter_key=f"genstore:{store.domain}", bucket_capacity=1000,
        bucket_refill_per_second=1000, max_retries=2, sleep=lambda _: None,
    ) as built:
        yield built


def receive(channel: Channel, *orders) -> list[ExternalOrder]:
    receipt = external_orders_receive(channel=channel, orders=list(orders))
    return list(ExternalOrder.objects.filter(pk__in=receipt.row_ids).order_by("pk"))


def created_in(sandbox: GenstoreSandbox, identifier: str) -> list[dict]:
    return [order for order in sandbox.orders_by_source("shop1") if order["sourceIdentifier"] == identifier]


def test_created_once_with_source_lines_prices_and_address_then_nothing_more(sandbox, channel, client):
    order = ExternalOrderInputFactory(
        lines=(ExternalOrderLineInputFactory(sku="MUG-1", quantity=2, price=Decimal("9.95")),
               ExternalOrderLineInputFactory(sku="CAP-7", price=Decimal("15.00"))),
        shipping_address=AddressInputFactory(city="Bend", zip="97701"),
    )
    [row] = receive(channel, order)
    assert row.state == State.PENDING and row.source_name == "amazon"

    outcome = external_order_create(external_order_id=row.pk, client=client)

    assert outcome.result == CreateResult.CREATED and outcome.requests == 1
    [genstore] = created_in(sandbox, order.external_order_id)
    assert genstore["sourceName"] == "amazon"
    assert [(line["sku"], line["quantity"], line["price"]) for line in genstore["lineItems"]] == [
        ("MUG-1", 2, "9.95"), ("CAP-7", 1, "15.00")]
    assert (genstore["shippingAddress"]["city"], genstore["shippingAddress"]["zip"]) == ("Bend", "97701")
    row.refresh_from_db()
    assert row.state == State.CREATED and row.genstore_order_id == genstore["orderId"]
    assert row.created_in_genstore_at is not None and row.create_sent_at is not None
    assert [line.genstore_line_item_id for line in row.lines.all()] == [line["id"] for line in genstore["lineItems"]]
    mirrored = Order.objects.get(store=channel.store, order_id=genstore["orderId"])
    assert (mirrored.source_name, mirrored.source_identifier) == ("amazon", order.external_order_id)
    assert row.order == mirrored

    again = external_order_create(external_order_id=row.pk, client=client)
    drained = external_orders_drain(store_id=channel.store_id, client=client)
    assert again.result == CreateResult.UNCHANGED and again.requests == 0
    assert sum(drained.outcomes.values()) == 0 and not drained.more_due
    assert sandbox.stats("shop1")["orders_created"] == 1


def test_the_first_source_name_typed_is_the_source_name_written_to_genstore(sandbox, store, client):
    out = io.StringIO()
    call_command("channel", "add", "--store", store.domain, "--kind", "csv", "--name", "Marketplaces",
                 "--source-names", "walmart, amazon,walmart", stdout=out)
    channel = Channel.objects.get(slug=json.loads(out.getvalue())["slug"])
    assert channel.source_names == ["walmart", "amazon"]  # as typed, not sorted; repeats dropped
    order = ExternalOrderInputFactory()
    [row] = receive(channel, order)
    assert row.source_name == "walmart"
    assert external_order_create(external_order_id=row.pk, client=client).result == CreateResult.CREATED
    [genstore] = created_in(sandbox, order.external_order_id)
    assert genstore["sourceName"] == "walmart"


def test_an_order_already_in_the_mirror_is_adopted_without_a_request_and_two_are_refused(sandbox, store, channel,
                                                                                           client):
    first, second = ExternalOrderInputFactory(), ExternalOrderInputFactory()
    sync_orders(store, [
        order_record("9001", source_name="AMAZON", source_identifier=first.external_order_id),
        order_record("9002", source_name="amazon", source_identifier=second.external_order_id),
        order_record("9003", source_name="amazon", source_identifier=second.external_order_id),
    ])
    adopted_row, doubled_row = receive(channel, first, second)

    adopted = external_order_create(external_order_id=adopted_row.pk, client=client)
    doubled = external_order_create(external_order_id=doubled_row.pk, client=client)

    assert adopted.result == CreateResult.ADOPTED and adopted.requests == 0
    adopted_row.refresh_from_db()
    assert adopted_row.state == State.ADOPTED and adopted_row.genstore_order_id == "9001"
    assert "adopted, not created" in adopted_row.state_reason
    assert doubled.result == CreateResult.FAILED and doubled.requests == 0
    doubled_row.refresh_from_db()
    assert doubled_row.state == State.FAILED and "more than one order" in doubled_row.last_error
    assert sandbox.stats("shop1")["orders_created"] == 0


def test_an_ambiguous_502_is_read_back_and_the_order_exists_exactly_once(sandbox, channel, client):
    order = ExternalOrderInputFactory()
    [row] = receive(channel, order)
    sandbox.set_faults(write_error_rate=1.0)  # every create is applied, then answered 502

    outcome = external_order_create(external_order_id=row.pk, client=client)

    assert outcome.result == CreateResult.CREATED
    assert sandbox.stats("shop1")["write_faults_injected"] == 1
    [genstore] = created_in(sandbox, order.external_order_id)
    row.refresh_from_db()
    assert row.state == State.CREATED and row.genstore_order_id == genstore["orderId"]
    assert any("reading back" in entry["message"] for entry in row.log)
    assert external_order_create(external_order_id=row.pk, client=client).result == CreateResult.UNCHANGED
    assert sandbox.stats("shop1")["orders_created"] == 1


def test_an_unanswered_create_that_did_not_happen_waits_then_reads_back_before_writing(sandbox, channel, client):
    [row] = receive(channel, ExternalOrderInputFactory())
    sandbox.set_faults(error_rate=1.0, status=503)  # refused before anything is applied

    waiting = external_order_create(external_order_id=row.pk, client=client)

    assert waiting.result == CreateResult.RETRY and waiting.retry_after
    row.refresh_from_db()
    assert row.state == State.PENDING and row.create_sent_at is not None and row.next_attempt_at > timezone.now()
    assert sandbox.stats("shop1")["orders_created"] == 0
    sandbox.clear_faults()
    ExternalOrder.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now())

    drained = external_orders_drain(store_id=row.store_id, client=client)

    assert drained.outcomes == {"created": 1}
    assert drained.requests == 2  # the read-back, then the one create
    assert len(created_in(sandbox, row.external_order_id)) == 1


def test_a_killed_worker_leaves_creating_and_the_next_drain_takes_the_order_it_made(sandbox, channel, client):
    made, lost = ExternalOrderInputFactory(), ExternalOrderInputFactory()
    made_row, lost_row = receive(channel, made, lost)
    # The worker sent the first create (applied at Genstore) and died before saving the answer; it died before the
    # second one's request left.
    sent_at = timezone.now() - timedelta(seconds=5)
    client.create_order(order_draft_for(made_row))
    ExternalOrder.objects.filter(pk__in=[made_row.pk, lost_row.pk]).update(
        state=State.CREATING, create_sent_at=sent_at, attempts=1
    )

    drained = external_orders_drain(store_id=channel.store_id, client=client)

    assert drained.outcomes == {"created": 2}
    assert sandbox.stats("shop1")["orders_created"] == 2  # the one made before the kill, and the lost one
    for row, order in ((made_row, made), (lost_row, lost)):
        [genstore] = created_in(sandbox, order.external_order_id)
        row.refresh_from_db()
        assert row.state == State.CREATED and row.genstore_order_id == genstore["orderId"]
    assert any("did reach Genstore" in entry["message"] for entry in made_row.log)


def test_a_refused_order_fails_with_genstores_message_and_is_retried_once_fixed(sandbox, channel, client):
    order = ExternalOrderInputFactory(currency="XTS")  # a currency Genstore does not know
    [row] = receive(channel, order)

    outcome = external_order_create(external_order_id=row.pk, client=client)

    assert outcome.result == CreateResult.FAILED
    row.refresh_from_db()
    assert row.state == State.FAILED and row.last_error_status == 422
    assert "Unknown currency" in row.last_error and row.create_sent_at is None
    assert external_orders_drain(store_id=row.store_id, client=client).outcomes == {}  # failed is not due

    # The merchant retries it as it is: refused again, with the same message.
    with TestCase.captureOnCommitCallbacks() as queued:
        external_order_retry(external_order_id=row.pk)
    assert len(queued) == 1  # the store's drain
    assert external_orders_drain(store_id=row.store_id, client=client).outcomes == {"failed": 1}
    # The channel corrects it: pending again, created.
    receipt = external_orders_receive(channel=channel, orders=[dataclasses.replace(order, currency="USD")])
    assert receipt.changed == 1
    assert external_orders_drain(store_id=row.store_id, client=client).outcomes == {"created": 1}
    assert len(created_in(sandbox, order.external_order_id)) == 1


def test_a_refused_token_fails_the_order_saying_so(sandbox, channel, client):
    [row] = receive(channel, ExternalOrderInputFactory())
    sandbox.set_access_token("another-token")

    outcome = external_order_create(external_order_id=row.pk, client=client)

    assert outcome.result == CreateResult.FAILED
    row.refresh_from_db()
    assert row.state == State.FAILED and "the store's token was refused" in row.state_reason
    assert row.last_error_status == 401


def test_cancelled_before_creation_never_reaches_genstore(sandbox, channel, client):
    order = ExternalOrderInputFactory()
    [row] = receive(channel, order)

    receipt = external_orders_receive(channel=channel, orders=[dataclasses.replace(order, cancelled_at=timezone.now())])

    assert receipt.cancel_requested == 1 and not receipt.due
    row.refresh_from_db()
    assert row.state == State.CANCELLED and row.channel_cancelled_at is not None
    assert external_orders_drain(store_id=row.store_id, client=client).outcomes == {}
    assert sandbox.stats("shop1")["requests"] == 0
    # Arriving cancelled, it is stored cancelled.
    [born_cancelled] = receive(channel, ExternalOrderInputFactory(cancelled_at=timezone.now()))
    assert born_cancelled.state == State.CANCELLED


def test_cancelled_after_creation_cancels_the_genstore_order_once(sandbox, channel, client):
    order = ExternalOrderInputFactory()
    [row] = receive(channel, order)
    external_order_create(external_order_id=row.pk, client=client)
    cancelled = dataclasses.replace(order, cancelled_at=timezone.now())

    receipt = external_orders_receive(channel=channel, orders=[cancelled])
    drained = external_orders_drain(store_id=row.store_id, client=client)

    assert receipt.cancel_requested == 1 and receipt.due
    assert drained.outcomes == {"cancelled": 1}
    row.refresh_from_db()
    assert row.state == State.CANCELLED and row.cancelled_in_genstore_at and row.cancel_sent_at
    [genstore] = created_in(sandbox, order.external_order_id)
    assert genstore["cancelled"] and Order.objects.get(order_id=row.genstore_order_id).is_cancelled
    assert external_orders_receive(channel=channel, orders=[cancelled]).unchanged == 1
    assert external_order_cancel(external_order_id=row.pk, client=client).result == CancelResult.UNCHANGED
    external_order_cancel_request(external_order_id=row.pk)
    assert external_orders_drain(store_id=row.store_id, client=client).outcomes == {}
    assert sandbox.stats("shop1")["orders_cancelled"] == 1


def test_cancelled_after_a_fulfilment_is_flagged_for_the_merchant_not_cancelled(sandbox, channel, client):
    order = ExternalOrderInputFactory()
    [row] = receive(channel, order)
    external_order_create(external_order_id=row.pk, client=client)
    row.refresh_from_db()
    line = row.lines.first()
    client.create_fulfillment(order_id=row.genstore_order_id, line_items=[(line.genstore_line_item_id, 1)],
                              tracking_number="1Z999AA10123456784", tracking_company="UPS", tracking_url=None,
                              notify_customer=False)

    external_orders_receive(channel=channel, orders=[dataclasses.replace(order, cancelled_at=timezone.now())])
    drained = external_orders_drain(store_id=row.store_id, client=client)

    assert drained.outcomes == {"flagged": 1}
    row.refresh_from_db()
    assert row.state == State.CREATED and row.cancel_sent_at is None
    assert row.needs_attention.startswith("cancelled on Amazon after something shipped")
    assert "settle it in Genstore" in row.needs_attention
    assert not created_in(sandbox, order.external_order_id)[0]["cancelled"]
    assert external_orders_drain(store_id=row.store_id, client=client).outcomes == {}  # flagged: not tried again


def test_changes_after_creation_are_recorded_not_pushed(sandbox, channel, client):
    order = ExternalOrderInputFactory()
    [row] = receive(channel, order)
    external_order_create(external_order_id=row.pk, client=client)
    requests_before = sandbox.stats("shop1")["requests"]
    changed = dataclasses.replace(
        order, lines=(dataclasses.replace(order.lines[0], quantity=5), *order.lines[1:]),
        shipping_address=AddressInputFactory(city="Salem"),
    )

    receipt = external_orders_receive(channel=channel, orders=[changed])

    assert receipt.changed == 1 and not receipt.due
    row.refresh_from_db()
    assert row.state == State.CREATED
    [change] = row.later_changes
    assert change["changes"] == ["lines", "shippingAddress"] and change["content"]["shippingAddress"]["city"] == "Salem"
    assert row.content == order.content_json() and row.lines.first().quantity == order.lines[0].quantity
    assert external_orders_drain(store_id=row.store_id, client=client).outcomes == {}
    assert sandbox.stats("shop1")["requests"] == requests_before
    assert external_orders_receive(channel=channel, orders=[changed]).unchanged == 1


def test_tracking_for_an_external_order_ends_as_a_fulfillment_of_the_created_order(sandbox, channel, client):
    order = ExternalOrderInputFactory()
    [row] = receive(channel, order)
    # The channel reports the parcel before the order is in Genstore: the record waits for its order.
    record = ExternalShipmentRecord(external_order_id=order.external_order_id, tracking_number="1Z999AA10123456784",
                                    carrier="ups")
    with TestCase.captureOnCommitCallbacks(execute=True):
        external_shipments_receive(channel=channel, records=[record])
    assert ExternalShipment.objects.get().state == ExternalShipment.State.UNMATCHED

    with TestCase.captureOnCommitCallbacks(execute=True):  # the mirror's hooks match the waiting record
        external_order_create(external_order_id=row.pk, client=client)

    row.refresh_from_db()
    shipment = Shipment.objects.get(tracking_number="1Z999AA10123456784")
    assert shipment.order.order_id == row.genstore_order_id
    with TestCase.captureOnCommitCallbacks(execute=True):
        pushed = shipment_push(shipment_id=shipment.pk, client=client)
    assert pushed.result == PushResult.CREATED
    [fulfillment] = sandbox.fulfillments("shop1", row.genstore_order_id)
    assert fulfillment["trackingNumber"] == "1Z999AA10123456784"
    assert sorted(line["id"] for line in fulfillment["lineItems"]) == sorted(
        line.genstore_line_item_id for line in row.lines.all())


def hold_lock(key: int) -> psycopg.Connection:
    """Another session holding an advisory lock (a worker elsewhere); closing it releases the lock, as a kill does."""
    settings = connection.settings_dict
    other = psycopg.connect(
        host=settings["HOST"], port=settings["PORT"] or 5432, user=settings["USER"], dbname=settings["NAME"],
        autocommit=True,
    )
    other.execute("SELECT pg_advisory_lock(%s)", [key])
    return other


def test_a_held_store_or_row_is_left_alone_and_taken_once_let_go(sandbox, channel, client):
    [row] = receive(channel, ExternalOrderInputFactory())
    drain_holder = hold_lock(ExternalOrderDrain.lock_id_of(channel.store_id))
    try:
        assert external_orders_drain(store_id=channel.store_id, client=client).busy
    finally:
        drain_holder.close()
    row_holder = hold_lock(row.lock_id)
    try:
        drained = external_orders_drain(store_id=channel.store_id, client=client)
        assert drained.outcomes == {"busy": 1} and drained.more_due
    finally:
        row_holder.close()
    assert external_orders_drain(store_id=channel.store_id, client=client).outcomes == {"created": 1}
    assert sandbox.stats("shop1")["orders_created"] == 1


def test_a_change_waits_for_the_worker_holding_the_row(channel, client):
    order = ExternalOrderInputFactory()
    [row] = receive(channel, order)
    holder = hold_lock(row.lock_id)
    threading.Timer(0.5, holder.close).start()  # the worker's step ends

    started = time.monotonic()
    external_orders_receive(channel=channel, orders=[dataclasses.replace(order, cancelled_at=timezone.now())])

    assert time.monotonic() - started >= 0.4
    row.refresh_from_db()
    assert row.state == State.CANCELLED
