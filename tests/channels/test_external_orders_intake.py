"""The external-order intake on its own (no Genstore): rows and lines stored set-based, same content unchanged,
changes before creation applied, the channel's sourceName, and one drain queued after the commit."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest
from django.db import connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from oma.channels.models import Channel, ExternalOrder, ExternalOrderLine
from oma.channels.order_intake import external_orders_receive
from oma.channels.selectors import external_order_stores_due, external_orders_due
from oma.channels.services import ChannelInvalid, channel_create
from oma.stores.models import Store
from tests.admin.factories import ExternalOrderInputFactory, ExternalOrderLineInputFactory

pytestmark = [pytest.mark.django_db]

State = ExternalOrder.State


@pytest.fixture
def channel(store: Store) -> Channel:
    return channel_create(store=store, kind="webhook", name="Marketplace", source_names=["eBay", "tiktok"])


def test_new_orders_are_stored_pending_with_their_lines_and_the_channels_first_source_name(channel):
    order = ExternalOrderInputFactory(lines=(
        ExternalOrderLineInputFactory(sku="A", quantity=3, price=Decimal("2.50"), external_line_id="111"),
        ExternalOrderLineInputFactory(sku="B", tax=Decimal("0.40")),
    ))

    with TestCase.captureOnCommitCallbacks() as queued:
        receipt = external_orders_receive(channel=channel, orders=[order])

    assert (receipt.new, receipt.unchanged, receipt.changed, receipt.cancel_requested) == (1, 0, 0, 0)
    assert receipt.describe() == "orders: 1 new" and len(queued) == 1  # one drain, after the commit
    row = ExternalOrder.objects.get()
    assert (row.state, row.source_name, row.external_order_id) == (State.PENDING, "ebay", order.external_order_id)
    assert row.store_id == channel.store_id and row.email == order.email and row.currency == "USD"
    assert row.shipping_address == order.shipping_address.as_json() and row.shipping_price == Decimal("4.99")
    assert row.content == order.content_json() and len(row.content_sha256) == 64
    assert [(line.position, line.sku, line.quantity, line.price, line.external_line_id, line.tax)
            for line in row.lines.all()] == [
        (1, "A", 3, Decimal("2.50"), "111", None),
        (2, "B", 1, Decimal("12.50"), order.lines[1].external_line_id, Decimal("0.40")),
    ]
    assert external_orders_due(store_id=channel.store_id, now=timezone.now()) == [row.pk]
    assert external_order_stores_due(now=timezone.now()) == [channel.store_id]


def test_the_same_content_again_is_unchanged_and_queues_nothing(channel):
    order = ExternalOrderInputFactory()
    external_orders_receive(channel=channel, orders=[order])

    with TestCase.captureOnCommitCallbacks() as queued:
        receipt = external_orders_receive(channel=channel, orders=[dataclasses.replace(order, source_ref="again")])

    assert (receipt.new, receipt.unchanged) == (0, 1) and not queued
    assert ExternalOrder.objects.count() == 1 and ExternalOrderLine.objects.count() == 2


def test_a_change_before_creation_replaces_the_content_and_lines_and_a_failed_row_is_pending_again(channel):
    order = ExternalOrderInputFactory()
    external_orders_receive(channel=channel, orders=[order])
    ExternalOrder.objects.update(state=State.FAILED, last_error="Unknown currency")
    changed = dataclasses.replace(order, lines=(ExternalOrderLineInputFactory(sku="NEW", quantity=4),))

    receipt = external_orders_receive(channel=channel, orders=[changed])

    assert receipt.changed == 1 and receipt.due
    row = ExternalOrder.objects.get()
    assert row.state == State.PENDING and row.content == changed.content_json() and row.later_changes == []
    assert [(line.sku, line.quantity) for line in row.lines.all()] == [("NEW", 4)]


def test_a_channel_without_source_names_cannot_bring_orders(store):
    channel = channel_create(store=store, kind="csv", name="Sheet")
    with pytest.raises(ChannelInvalid, match="set the channel's source names"):
        external_orders_receive(channel=channel, orders=[ExternalOrderInputFactory()])
    assert not ExternalOrder.objects.exists()


@pytest.mark.postgres
def test_a_batch_costs_the_same_statements_whatever_its_size(channel):
    def batch(n: int) -> list:
        return [ExternalOrderInputFactory() for _ in range(n)]

    def statements(orders: list) -> int:
        with CaptureQueriesContext(connection) as captured:
            external_orders_receive(channel=channel, orders=orders)
        return len(captured)

    # Django's query log sees the reads, locks and per-row writes; oma.core.bulk's inserts and updates (one statement
    # each, whatever the rows) bypass it. A per-order statement anywhere would show here.
    small, large = batch(5), batch(300)
    assert statements(small) == statements(large)  # new orders: read, insert rows, insert lines
    assert statements(small) == statements(large)  # unchanged: one read
    changed_small = [dataclasses.replace(o, lines=(ExternalOrderLineInputFactory(),)) for o in small]
    changed_large = [dataclasses.replace(o, lines=(ExternalOrderLineInputFactory(),)) for o in large]
    assert statements(changed_small) == statements(changed_large)
    assert ExternalOrder.objects.count() == 305 and ExternalOrderLine.objects.count() == 305
