"""push_fulfillments: the foreground run and its summary line."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from oma.fulfillment.models import FulfillmentPush
from oma.orders.models import Order
from tests.fulfillment.conftest import add_shipment, open_orders

pytestmark = [pytest.mark.postgres]


@pytest.mark.django_db(transaction=True)  # the worker threads use their own connections: data must be committed
def test_push_fulfillments_pushes_everything_owed_with_parallel_workers(sandbox, store):
    orders = open_orders(store)[:4]
    shipments = [add_shipment(store, order) for order in orders]
    cancelled = Order.objects.filter(store=store, cancelled_at__isnull=False).first()
    add_shipment(store, cancelled, [(cancelled.line_items.first(), 1)])

    out, err = StringIO(), StringIO()
    call_command("push_fulfillments", "--store", store.domain, "--workers", "3", stdout=out, stderr=err)

    line = out.getvalue().strip()
    assert re.fullmatch(
        rf"push_fulfillments \({re.escape(store.domain)}\): 5 shipments in \d+\.\ds: 4 created, 1 skipped; "
        r"8 Genstore requests, 0 rate-limited \(429\)",
        line,
    ), line
    for order, shipment in zip(orders, shipments, strict=True):
        [fulfillment] = sandbox.fulfillments("shop1", order.order_id)
        assert fulfillment["trackingNumber"] == shipment.tracking_number
    assert FulfillmentPush.objects.filter(state=FulfillmentPush.State.SUCCEEDED, shipment__in=shipments).count() == 4
    # The batch recomputed the orders' statuses once at the end.
    assert set(Order.objects.filter(pk__in=[o.pk for o in orders]).values_list("unified_status", flat=True)) == {
        "awaiting_tracking"
    }

    out = StringIO()
    call_command("push_fulfillments", "--store", store.domain, stdout=out)
    assert "0 shipments in" in out.getvalue() and "nothing to push" in out.getvalue()


@pytest.mark.django_db
def test_push_fulfillments_refuses_unknown_or_inactive_stores(store):
    with pytest.raises(CommandError, match="unknown store"):
        call_command("push_fulfillments", "--store", "nope.genmystore.com")
    store.is_active = False
    store.save()
    with pytest.raises(CommandError, match="inactive"):
        call_command("push_fulfillments", "--store", store.domain)
