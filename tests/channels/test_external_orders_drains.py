"""A store's external-order drains at once (OMA_EXTERNAL_ORDER_DRAINS): each works its own share of the rows
(pk % drains == slot) under its own lock, together they create every order once; the intake queues one drain per
slot with rows due, after the commit."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from celery.signals import before_task_publish

from oma.channels.models import Channel, ExternalOrder, ExternalOrderDrain
from oma.channels.order_create import external_orders_drain
from oma.channels.order_intake import DRAIN_TASK, external_orders_receive
from oma.channels.services import channel_create
from oma.channels.tasks import create_external_orders
from oma.genstore.client import GenstoreClient
from oma.sandbox.server import GenstoreSandbox
from oma.stores.models import Store
from oma.stores.services import genstore_limiter
from tests.admin.factories import ExternalOrderInputFactory
from tests.channels.test_external_orders_create import hold_lock
from tests.genstore_sandbox import connect, start_sandbox

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

State = ExternalOrder.State


@pytest.fixture
def sandbox() -> Iterator[GenstoreSandbox]:
    box = start_sandbox(orders=1, seed=5, rate_limit=None)
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
    with GenstoreClient(
        base_url=store.resolved_api_base_url, api_version=store.api_version, access_token=store.access_token,
        limiter=genstore_limiter(), limiter_key=f"genstore:{store.domain}", bucket_capacity=1000,
        bucket_refill_per_second=1000,
    ) as built:
        yield built


@pytest.fixture
def drains_queued() -> Iterator[list[tuple]]:
    """The drain messages this process publishes: (store_id, slot) each."""
    sent: list[tuple] = []

    def record(sender: str | None = None, body: tuple | None = None, **_: object) -> None:
        if sender == DRAIN_TASK and body is not None:
            sent.append(tuple(body[0]))

    before_task_publish.connect(record, weak=False)
    yield sent
    before_task_publish.disconnect(record)


def created_per_identifier(sandbox: GenstoreSandbox) -> dict[str, int]:
    counts: dict[str, int] = {}
    for order in sandbox.orders_by_source("shop1"):
        counts[order["sourceIdentifier"]] = counts.get(order["sourceIdentifier"], 0) + 1
    return counts


def test_two_drains_split_the_rows_and_together_create_each_once(sandbox, channel, client):
    receipt = external_orders_receive(channel=channel, orders=[ExternalOrderInputFactory() for _ in range(9)])
    rows = list(ExternalOrder.objects.filter(pk__in=receipt.row_ids).order_by("pk"))
    share = {slot: {row.pk for row in rows if row.pk % 2 == slot} for slot in (0, 1)}

    first = external_orders_drain(store_id=channel.store_id, slot=0, slots=2, client=client)

    assert first.outcomes == {"created": len(share[0])} and not first.more_due
    states = dict(ExternalOrder.objects.filter(pk__in=receipt.row_ids).values_list("pk", "state"))
    assert {pk for pk, state in states.items() if state == State.CREATED} == share[0]  # slot 1's rows untouched
    second = external_orders_drain(store_id=channel.store_id, slot=1, slots=2, client=client)
    assert second.outcomes == {"created": len(share[1])} and not second.more_due

    assert created_per_identifier(sandbox) == {row.external_order_id: 1 for row in rows}
    again = [external_orders_drain(store_id=channel.store_id, slot=s, slots=2, client=client) for s in (0, 1)]
    assert [drain.outcomes for drain in again] == [{}, {}]
    assert created_per_identifier(sandbox) == {row.external_order_id: 1 for row in rows}
    assert set(ExternalOrderDrain.objects.filter(store_id=channel.store_id).values_list("slot", flat=True)) == {0, 1}


def test_each_slot_has_its_own_lock(channel, client):
    receipt = external_orders_receive(channel=channel, orders=[ExternalOrderInputFactory() for _ in range(4)])
    holder = hold_lock(ExternalOrderDrain.lock_id_of(channel.store_id, 1))  # slot 1's drain runs elsewhere
    try:
        assert external_orders_drain(store_id=channel.store_id, slot=1, slots=2, client=client).busy
        free = external_orders_drain(store_id=channel.store_id, slot=0, slots=2, client=client)
    finally:
        holder.close()
    assert free.outcomes == {"created": sum(1 for pk in receipt.row_ids if pk % 2 == 0)}
    assert ExternalOrderDrain.lock_id_of(channel.store_id, 1) not in {
        ExternalOrderDrain.lock_id_of(channel.store_id, 0), ExternalOrderDrain.lock_id_of(channel.store_id + 1, 0)}


def test_the_intake_queues_one_drain_per_slot_with_rows_due_after_the_commit(
    channel, settings, drains_queued, django_capture_on_commit_callbacks
):
    settings.OMA_EXTERNAL_ORDER_DRAINS = 4
    with django_capture_on_commit_callbacks(execute=True):
        receipt = external_orders_receive(channel=channel, orders=[ExternalOrderInputFactory()])
    [pk] = receipt.row_ids
    assert drains_queued == [(channel.store_id, pk % 4)]  # the one slot with a row due, not all four

    drains_queued.clear()
    with django_capture_on_commit_callbacks(execute=True):
        external_orders_receive(channel=channel, orders=[ExternalOrderInputFactory() for _ in range(6)])
    assert sorted(drains_queued) == [(channel.store_id, slot) for slot in range(4)]  # one each, not one per order


def test_a_message_without_a_slot_queues_the_slots_with_rows_due(
    channel, settings, drains_queued, django_capture_on_commit_callbacks
):
    settings.OMA_EXTERNAL_ORDER_DRAINS = 3
    receipt = external_orders_receive(channel=channel, orders=[ExternalOrderInputFactory() for _ in range(2)])
    drains_queued.clear()
    with django_capture_on_commit_callbacks(execute=True):
        create_external_orders.run(channel.store_id)  # queued before drains had slots
    assert sorted(drains_queued) == sorted({(channel.store_id, pk % 3) for pk in receipt.row_ids})
