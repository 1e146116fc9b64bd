"""An import runs each batch's after-commit hooks (tracking.signals.shipments_changed) in a thread of its own while
it writes the next batch, and returns once they all ran; a batch sharing an order with hooks still running waits
for them; a failing hook stops no later one; inside a transaction everything stays inline.

The threads need committed data: these tests commit (transaction=True) and run on PostgreSQL only (on SQLite the
hooks run inline, as inside a transaction)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from oma.channels import csv_import
from oma.channels.csv_import import tracking_csv_import
from oma.channels.services import channel_create
from oma.fulfillment.models import FulfillmentPush
from oma.fulfillment.services.unified_status import orders_unified_status_refresh
from oma.orders.models import Order
from oma.stores.models import Store
from tests.channels.conftest import order_record, sync_orders
from tests.channels.test_csv_import import row, to_csv
from tracking import signals
from tracking.models import Shipment
from tracking.signals import ShipmentsChangedHooks, shipments_changed, shipments_changed_in_background

ROWS_PER_BATCH = 5
# A bound on waits that succeed at once when the code is right; reached only by a broken overlap.
NEVER = 30

committed = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csv_import, "ROWS_PER_BATCH", ROWS_PER_BATCH)


@pytest.fixture
def orders(store: Store) -> list[Order]:
    """Three batches' worth of orders, one row each, and the store's CSV channel."""
    channel_create(store=store, kind="csv", name="CSV import")
    return sync_orders(store, [order_record(f"OV{i}") for i in range(3 * ROWS_PER_BATCH)])


def rows_for(orders: list[Order], *, first: int = 0) -> list[dict[str, str]]:
    return [row(order.order_id, f"OVERLAP{i:07d}") for i, order in enumerate(orders, first)]


@pytest.fixture
def listen() -> Iterator[Callable[[Callable[..., None]], None]]:
    """Connect a receiver of shipments_changed (after the apps' own) for the test."""
    connected: list[str] = []

    def connect(receiver: Callable[..., None]) -> None:
        uid = f"test_import_hook_overlap.{len(connected)}"
        shipments_changed.connect(receiver, dispatch_uid=uid, weak=False)
        connected.append(uid)

    yield connect
    for uid in connected:
        shipments_changed.disconnect(dispatch_uid=uid)


def lookups_counted(monkeypatch: pytest.MonkeyPatch) -> list[threading.Event]:
    """events[k] is set when batch k+1 starts looking up its orders (its first query)."""
    events = [threading.Event() for _ in range(10)]
    calls = iter(events)
    lookup = csv_import.order_keys_for_external_ids

    def counted(**kwargs: Any) -> Any:
        next(calls).set()
        return lookup(**kwargs)

    monkeypatch.setattr(csv_import, "order_keys_for_external_ids", counted)
    return events


def assert_every_hook_ran(store: Store) -> None:
    """Every shipment has its push intent and every order its current unified status."""
    shipments = set(Shipment.objects.filter(store=store).values_list("pk", flat=True))
    assert shipments and set(FulfillmentPush.objects.values_list("shipment_id", flat=True)) == shipments
    order_ids = list(Order.objects.filter(store=store).values_list("pk", flat=True))
    assert "" not in set(Order.objects.filter(store=store).values_list("unified_status", flat=True))
    assert orders_unified_status_refresh(order_ids=order_ids) == 0  # nothing left to recompute


@pytest.mark.postgres
@committed
def test_a_batchs_hooks_run_in_another_thread_while_the_next_batch_is_imported(store, orders, listen, monkeypatch):
    lookup_started = lookups_counted(monkeypatch)
    seen: list[tuple[int, list[int], bool]] = []  # (thread, shipment ids, the next batch had started meanwhile)

    def receiver(sender: object, *, shipment_ids: list[int], **kwargs: object) -> None:
        # The first batch's hooks hold on until the second batch started: inline, they would wait for ever.
        overlapped = lookup_started[1].wait(timeout=NEVER) if not seen else True
        seen.append((threading.get_ident(), list(shipment_ids), overlapped))

    listen(receiver)
    report = tracking_csv_import(store=store, data=to_csv(rows_for(orders)), file_name="overlap.csv")

    assert report.count("created") == len(orders), report.as_text()
    assert len(seen) == 3 and all(overlapped for _, _, overlapped in seen), seen
    hook_thread = seen[0][0]
    assert {thread for thread, _, _ in seen} == {hook_thread} and hook_thread != threading.get_ident()
    # In the order handed over: the batches' shipments, batch after batch.
    by_number = dict(Shipment.objects.values_list("tracking_number", "pk"))
    numbers = [r["tracking_number"] for r in rows_for(orders)]
    assert [set(ids) for _, ids, _ in seen] == [
        {by_number[number] for number in numbers[start:start + ROWS_PER_BATCH]}
        for start in range(0, len(numbers), ROWS_PER_BATCH)
    ]
    assert_every_hook_ran(store)  # all of them, by the time the import returned


@pytest.mark.postgres
@committed
def test_a_batch_sharing_an_order_with_running_hooks_waits_for_them(store, orders, listen, monkeypatch):
    """A parcel split across two batches: the second batch locks the order only once the first batch's hooks (which
    lock it too, in another order than a batch does) are done, and completes the parcel exactly."""
    sync_orders(store, [order_record("SPLIT", [("L1", "SKU-A", 1), ("L2", "SKU-B", 1)])])
    rows = rows_for(orders[:ROWS_PER_BATCH - 1])  # the first batch: four orders, then the split parcel's first row
    rows.append(row("SPLIT", "SPLITPARCEL01", line_item_id="L1", quantity="1"))
    rows.append(row("SPLIT", "SPLITPARCEL01", line_item_id="L2", quantity="1"))  # the second batch: its second
    rows += rows_for(orders[ROWS_PER_BATCH:2 * ROWS_PER_BATCH - 1], first=ROWS_PER_BATCH)
    waited = threading.Event()
    wait = ShipmentsChangedHooks.wait

    def wait_seen(self: ShipmentsChangedHooks) -> None:
        waited.set()
        wait(self)

    monkeypatch.setattr(ShipmentsChangedHooks, "wait", wait_seen)
    events: list[str] = []
    match_batch = csv_import.MatchBatch

    def locking(**kwargs: Any) -> Any:
        events.append("batch locks its orders")
        return match_batch(**kwargs)

    monkeypatch.setattr(csv_import, "MatchBatch", locking)

    def receiver(sender: object, *, shipment_ids: list[int], **kwargs: object) -> None:
        if "hooks of the first batch done" not in events:
            # Held until the second batch waits for us: without that wait this one would wait for ever.
            events.append("batch waited for the hooks" if waited.wait(timeout=NEVER) else "no wait")
            events.append("hooks of the first batch done")

    listen(receiver)
    report = tracking_csv_import(store=store, data=to_csv(rows), file_name="split.csv")

    assert events[:4] == ["batch locks its orders", "batch waited for the hooks", "hooks of the first batch done",
                          "batch locks its orders"], events
    outcomes = [r.outcome for r in report.results]
    assert outcomes == ["created"] * 5 + ["added"] + ["created"] * 4, report.as_text()
    split = Shipment.objects.get(tracking_number="SPLITPARCEL01")
    assert sorted(split.lines.values_list("line_item__line_item_id", "quantity")) == [("L1", 1), ("L2", 1)]
    assert_every_hook_ran(store)


@pytest.mark.postgres
@committed
def test_a_failing_hook_stops_no_later_batchs_hooks(store, orders, listen, monkeypatch, caplog):
    calls: list[list[int]] = []

    def failing(sender: object, *, shipment_ids: list[int], **kwargs: object) -> None:
        calls.append(list(shipment_ids))
        if len(calls) == 1:
            raise RuntimeError("a receiver's bug")

    listen(failing)
    # And a failure of the hooks' own (their connection lost, say), for the second batch.
    send = signals._send

    def send_failing_once(shipment_ids: list[int]) -> None:
        if len(calls) == 1:
            calls.append([])
            raise RuntimeError("the hooks' connection broke")
        send(shipment_ids)

    monkeypatch.setattr(signals, "_send", send_failing_once)
    with caplog.at_level(logging.ERROR, logger="tracking.signals"):
        report = tracking_csv_import(store=store, data=to_csv(rows_for(orders)), file_name="failing.csv")

    assert report.count("created") == len(orders)
    assert [len(ids) for ids in calls] == [ROWS_PER_BATCH, 0, ROWS_PER_BATCH], calls
    assert "a receiver's bug" in caplog.text and "the hooks' connection broke" in caplog.text
    # The first batch's intents were written before its failing receiver; the second's were lost (beat finds them),
    # the third's are there: the hooks went on.
    second = set(Shipment.objects.filter(order__in=orders[ROWS_PER_BATCH:2 * ROWS_PER_BATCH]).values_list("pk",
                                                                                                          flat=True))
    pushed = set(FulfillmentPush.objects.values_list("shipment_id", flat=True))
    assert pushed == set(Shipment.objects.values_list("pk", flat=True)) - second


@pytest.mark.django_db
def test_inside_a_transaction_the_hooks_run_inline(store, orders, listen, django_capture_on_commit_callbacks):
    threads: list[int] = []

    def receiver(sender: object, *, shipment_ids: list[int], **kwargs: object) -> None:
        threads.append(threading.get_ident())

    listen(receiver)
    with shipments_changed_in_background() as hooks:
        assert not hooks.background
    with django_capture_on_commit_callbacks(execute=True):
        report = tracking_csv_import(store=store, data=to_csv(rows_for(orders)), file_name="inline.csv")
    assert report.count("created") == len(orders)
    assert threads == [threading.get_ident()] * 3
    assert set(FulfillmentPush.objects.values_list("shipment_id", flat=True)) == set(
        Shipment.objects.values_list("pk", flat=True))


@pytest.mark.postgres
@committed
def test_one_batch_runs_and_one_waits_the_next_one_is_held(monkeypatch):
    """Backpressure: a third batch handed over while the first still runs waits for it; on the way out every batch
    handed over has run, in order."""
    release = threading.Event()
    ran: list[list[int]] = []

    def send(shipment_ids: list[int]) -> None:
        if not ran:
            release.wait(timeout=NEVER)
        ran.append(shipment_ids)

    monkeypatch.setattr(signals, "_send", send)
    with shipments_changed_in_background() as hooks:
        assert hooks.background
        hooks.hand_over([1])  # runs (held)
        hooks.hand_over([2])  # waits
        third = threading.Thread(target=hooks.hand_over, args=([3],))
        third.start()
        third.join(timeout=0.2)
        assert third.is_alive() and not hooks.idle()  # held: the queue has room for one
        release.set()
        third.join(timeout=NEVER)
        assert not third.is_alive()
    assert ran == [[1], [2], [3]]
    assert hooks.idle()
