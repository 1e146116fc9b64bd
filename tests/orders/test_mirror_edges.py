"""The order mirror where it could lose data or stall: unknown lines, values no column holds, one order the
database refuses, late fulfillments, failing hooks, concurrent pages, the incremental mark and the sweep lease."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import close_old_connections, connection

from oma.celery import app as celery_app
from oma.genstore.records import FulfillmentRecord, LineItemRecord, OrderRecord
from oma.orders import services
from oma.orders.models import GenstoreFulfillment, LineItem, Order, SyncRun
from oma.orders.services import order_fulfillment_record, order_upsert, orders_sweep, orders_upsert_page
from oma.orders.signals import orders_changed
from oma.stores.models import Store
from tests.genstore_sandbox import connect
from tests.signals import only_receivers
from tracking.models import Shipment, ShipmentLine

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(db) -> Store:
    return Store.objects.create(domain="edges.genmystore.com", access_token="t", client_secret="s")


def record(
    order_id: str, *, minutes: int = 0, lines: tuple[LineItemRecord, ...] | None = None, **fields
) -> OrderRecord:
    lines = (LineItemRecord(id=f"{order_id}-1", quantity=1), LineItemRecord(id=f"{order_id}-2", quantity=2)) if (
        lines is None
    ) else lines
    values = {"order_id": order_id, "updated_at": T0 + timedelta(minutes=minutes), "line_items": lines,
              "has_line_items": True, "raw": {"orderId": order_id, "v": minutes, **fields.pop("raw", {})}}
    values.update(fields)
    return OrderRecord(**values)


# --- lines ----------------------------------------------------------------------------------------------------------


def test_lines_and_the_parcels_that_carry_them_survive_a_payload_that_does_not_list_them(store):
    order = order_upsert(store=store, record=record("2001")).order
    shipment = Shipment.objects.create(store=store, order=order, tracking_number="1ZEDGE0001", carrier="ups")
    ShipmentLine.objects.create(shipment=shipment, line_item=order.line_items.get(line_item_id="2001-1"), quantity=1)

    unknown_lines = record("2001", minutes=5, lines=(), has_line_items=False, financial_status="refunded")
    assert order_upsert(store=store, record=unknown_lines).outcome == "updated"
    assert Order.objects.get(pk=order.pk).financial_status == "refunded"
    assert sorted(LineItem.objects.filter(order=order).values_list("line_item_id", flat=True)) == ["2001-1", "2001-2"]
    assert ShipmentLine.objects.filter(shipment=shipment).count() == 1

    listed_in_full = record("2001", minutes=10, lines=(LineItemRecord(id="2001-2", quantity=2),))
    order_upsert(store=store, record=listed_in_full)
    assert list(LineItem.objects.filter(order=order).values_list("line_item_id", flat=True)) == ["2001-2"]


# --- values no column holds -----------------------------------------------------------------------------------------


def test_values_that_do_not_fit_a_column_are_left_empty_and_noted(store):
    odd = record(
        "2002",
        lines=(LineItemRecord(id="2002-1", quantity=2**40, price=Decimal("1E+30"), grams=-(2**35)),),
        name="nul\x00name",
        total_price=Decimal("123456789012345"),
        subtotal_price=Decimal("19.999"),
        raw={"note": "a\x00b", "nested": [{"k\x00": "v"}]},
    )
    result = order_upsert(store=store, record=odd)
    order = result.order
    assert result.outcome == "created"
    assert order.name == "nulname"
    assert order.total_price is None and order.subtotal_price == Decimal("20.00")
    assert order.raw["note"] == "ab" and order.raw["nested"] == [{"k": "v"}]
    line = order.line_items.get()
    assert (line.quantity, line.price, line.grams) == (0, None, None)
    assert sorted(problem.split(":")[0] for problem in order.parse_problems) == [
        "lineItems[0].grams", "lineItems[0].price", "lineItems[0].quantity", "totalPrice",
    ]
    # The same payload again is recognised as unchanged although what was stored differs from it.
    assert order_upsert(store=store, record=odd).outcome == "unchanged"


@pytest.mark.postgres  # SQLite does not enforce varchar lengths, so it refuses nothing here
@pytest.mark.django_db(transaction=True)
def test_an_order_the_database_refuses_does_not_keep_the_rest_of_its_page_out(crafted_genstore):
    store = crafted_genstore.store()
    crafted_genstore.orders = [
        {"orderId": "3001", "updatedAt": "2026-11-01T10:00:00Z", "lineItems": [{"id": "1", "quantity": 1}]},
        {"orderId": "9" * 100, "updatedAt": "2026-11-01T10:00:00Z"},  # longer than any orderId column allows
        {"orderId": "3003", "updatedAt": "2026-11-01T10:00:00Z", "totalPrice": "1e20"},
    ]
    run = orders_sweep(store=store, kind=SyncRun.Kind.FULL)
    assert run.state == SyncRun.State.SUCCEEDED, run.error_message
    assert sorted(Order.objects.filter(store=store).values_list("order_id", flat=True)) == ["3001", "3003"]
    assert (run.seen, run.created, run.errors) == (3, 2, 1)


# --- fulfillments ---------------------------------------------------------------------------------------------------


def test_an_older_fulfillment_never_overwrites_a_newer_one(store):
    order = order_upsert(store=store, record=record("2003")).order

    def fulfillment(minutes: int, shipment_status: str) -> FulfillmentRecord:
        return FulfillmentRecord(fulfill_id="F2003", order_id="2003", status="success",
                                 shipment_status=shipment_status, updated_at=T0 + timedelta(minutes=minutes))

    order_fulfillment_record(store=store, order=order, record=fulfillment(30, "delivered"))
    late_payload = record("2003", minutes=20, fulfillments=(fulfillment(10, "in_transit"),), has_fulfillments=True)
    assert order_upsert(store=store, record=late_payload).outcome == "updated"
    assert GenstoreFulfillment.objects.get(fulfill_id="F2003").shipment_status == "delivered"
    order_fulfillment_record(store=store, order=order, record=fulfillment(40, "failure"))
    assert GenstoreFulfillment.objects.get(fulfill_id="F2003").shipment_status == "failure"


# --- hooks ----------------------------------------------------------------------------------------------------------


def test_a_failing_hook_neither_breaks_nor_undoes_the_upsert(store, monkeypatch, django_capture_on_commit_callbacks):
    calls: list[list[int]] = []

    def broken(sender: object, **kwargs: object) -> None:
        raise RuntimeError("hook bug")

    only_receivers(monkeypatch, orders_changed, broken, lambda sender, order_ids, **kw: calls.append(order_ids))
    with django_capture_on_commit_callbacks(execute=True):
        counts = orders_upsert_page(store=store, records=[record("2004"), record("2005")])
    assert counts.created == 2
    assert Order.objects.filter(store=store).count() == 2
    assert calls == [counts.changed_order_ids]


# --- concurrency ----------------------------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_overlapping_pages_upserted_at_once_in_opposite_orders_neither_deadlock_nor_lose_the_newest():
    store = Store.objects.create(domain="race.genmystore.com", access_token="t", client_secret="s")
    ids = [f"40{n:02d}" for n in range(60)]
    failures: list[BaseException] = []
    barrier = threading.Barrier(2)

    def upsert(order_ids: list[str], minutes: int) -> None:
        try:
            barrier.wait()
            for round_ in range(3):
                orders_upsert_page(store=store, records=[record(i, minutes=minutes + round_) for i in order_ids])
        except BaseException as exc:
            failures.append(exc)
        finally:
            close_old_connections()
            connection.close()

    threads = [
        threading.Thread(target=upsert, args=(ids, 0)),
        threading.Thread(target=upsert, args=(list(reversed(ids)), 100)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    versions = set(Order.objects.filter(store=store).values_list("genstore_updated_at", flat=True))
    assert versions == {T0 + timedelta(minutes=102)}  # the newest version of every order won
    assert LineItem.objects.filter(order__store=store).count() == 120


# --- the incremental mark and the lease -----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_sweep_from_a_later_since_does_not_move_the_incremental_mark(genstore_sandbox, redis_client):
    store = connect(genstore_sandbox, rate_limit=(1000, 1000.0))
    full = orders_sweep(store=store, kind=SyncRun.Kind.FULL)
    overlap = timedelta(minutes=settings.OMA_SWEEP_OVERLAP_MINUTES)
    chained = orders_sweep(store=store, kind=SyncRun.Kind.INCREMENTAL)
    assert chained.updated_at_min == full.started_at - overlap

    # An operator reads only the last minute: what changed between the mark and then was not read.
    later = orders_sweep(store=store, kind=SyncRun.Kind.INCREMENTAL, since=chained.started_at + timedelta(hours=1))
    assert later.state == SyncRun.State.SUCCEEDED
    after_gap = orders_sweep(store=store, kind=SyncRun.Kind.INCREMENTAL)
    assert after_gap.updated_at_min == chained.started_at - overlap


@pytest.mark.django_db(transaction=True)
def test_a_run_left_running_by_a_dead_process_is_closed_by_the_next_sweep(genstore_sandbox, redis_client):
    store = connect(genstore_sandbox, rate_limit=(1000, 1000.0))
    dead = SyncRun.objects.create(store=store, kind=SyncRun.Kind.FULL, started_at=T0)
    assert orders_sweep(store=store, kind=SyncRun.Kind.FULL).state == SyncRun.State.SUCCEEDED
    dead.refresh_from_db()
    assert dead.state == SyncRun.State.FAILED and "abandoned" in dead.error_message and dead.finished_at


@pytest.mark.django_db(transaction=True)
def test_a_sweep_that_lost_its_lease_stops(genstore_sandbox, redis_client):
    store = connect(genstore_sandbox, rate_limit=(1000, 1000.0))

    def another_sweep_takes_the_lease(progress: services.SweepProgress) -> None:
        Store.objects.filter(pk=store.pk).update(sweep_lease_token="another-sweep")

    run = orders_sweep(store=store, kind=SyncRun.Kind.FULL, progress=another_sweep_takes_the_lease)
    assert run.state == SyncRun.State.FAILED and "lease" in run.error_message
    assert run.pages == 2  # the page after which the lease was found gone was stored; no more were read
    # Its lease is not ours to release: the other sweep keeps it.
    assert Store.objects.get(pk=store.pk).sweep_lease_token == "another-sweep"


# --- hooks of a sweep in a worker -----------------------------------------------------------------------------------


@pytest.fixture
def recorded_hook(monkeypatch) -> list[int]:
    sizes: list[int] = []
    only_receivers(monkeypatch, orders_changed, lambda sender, order_ids, **kw: sizes.append(len(order_ids)))
    return sizes


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_sweep_with_deferred_hooks_enqueues_one_task_a_page_instead_of_running_them(
    genstore_sandbox, redis_client, recorded_hook
):
    queue = settings.CELERY_TASK_ROUTES["orders.changed_run_hooks"]["queue"]
    # The queue exists, as a worker consuming it declares it: redis_client emptied the broker, bindings included, and
    # a producer that declared the queue before in this process would not declare it again (its message then lost).
    with celery_app.connection_for_write() as broker:
        celery_app.amqp.queues[queue](broker.default_channel).declare()
    store = connect(genstore_sandbox, rate_limit=(1000, 1000.0))
    assert orders_sweep(store=store, kind=SyncRun.Kind.FULL, defer_hooks=True).created == 300
    assert recorded_hook == []
    # One orders.changed_run_hooks task per page, in its workload's queue, and the catch-up of Genstore's own
    # fulfillments once, after the sweep (a task too: not a part of the sweep's time).
    tasks = sorted(json.loads(message)["headers"]["task"] for message in redis_client.lrange(queue, 0, -1))
    assert tasks == ["fulfillment.catch_up_genstore_fulfillments", "orders.changed_run_hooks",
                     "orders.changed_run_hooks"]


@pytest.mark.django_db(transaction=True)
def test_deferred_hooks_run_in_their_task_or_here_when_the_broker_is_down(
    genstore_sandbox, redis_client, recorded_hook, monkeypatch
):
    from kombu.exceptions import OperationalError as BrokerDown

    from oma.celery import app
    from oma.orders.tasks import orders_changed_run_hooks

    store = connect(genstore_sandbox, rate_limit=(1000, 1000.0))
    eager_before, app.conf.task_always_eager = app.conf.task_always_eager, True
    try:
        orders_sweep(store=store, kind=SyncRun.Kind.FULL, defer_hooks=True)
    finally:
        app.conf.task_always_eager = eager_before
    assert recorded_hook == [250, 50]

    recorded_hook.clear()
    genstore_sandbox.mutate_orders("shop1", 5)

    def broker_down(*args, **kwargs):
        raise BrokerDown("connection refused")

    monkeypatch.setattr(orders_changed_run_hooks, "delay", broker_down)
    orders_sweep(store=store, kind=SyncRun.Kind.FULL, defer_hooks=True)
    assert sum(recorded_hook) == 5
