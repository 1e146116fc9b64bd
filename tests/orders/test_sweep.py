"""Order sweeps against the Genstore sandbox over real HTTP (the issue's acceptance list)."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from oma.orders.models import Order, SyncRun
from oma.orders.services import orders_sweep
from oma.stores.services import store_sweep_lease_acquire
from tests.genstore_sandbox import SANDBOX_SECRET, SANDBOX_TOKEN, connect, mirror_differences, start_sandbox
from tests.signals import also_receiver

pytestmark = pytest.mark.django_db(transaction=True)


# The acceptance swept 5,000 orders (20 pages); 1,250 (5 pages) prove the same: a full walk across pages,
# a second one that changes nothing, and an incremental one that finds exactly the changed orders without walking
# them all. The 100 changed orders are kept: they are what the incremental sweep must find.
SWEPT = 1250


@pytest.mark.postgres
@pytest.mark.slow
def test_full_sweep_of_every_order_then_nothing_then_exactly_the_100_changed(redis_client):
    sandbox = start_sandbox(orders=SWEPT)
    try:
        store = connect(sandbox)
        first = orders_sweep(store=store, kind=SyncRun.Kind.FULL)
        assert first.state == SyncRun.State.SUCCEEDED, first.error_message
        assert (first.seen, first.created, first.pages) == (SWEPT, SWEPT, SWEPT // 250)
        assert Order.objects.filter(store=store).count() == SWEPT
        assert mirror_differences(sandbox, store) == []

        second = orders_sweep(store=store, kind=SyncRun.Kind.FULL)
        assert (second.created, second.updated, second.unchanged) == (0, 0, SWEPT)

        changed = set(sandbox.mutate_orders("shop1", 100))
        assert len(changed) == 100
        incremental = orders_sweep(store=store, kind=SyncRun.Kind.INCREMENTAL)
        assert incremental.kind == SyncRun.Kind.INCREMENTAL and incremental.updated_at_min is not None
        assert (incremental.created, incremental.updated) == (0, 100)
        assert incremental.seen < SWEPT  # updatedAtMin narrowed the walk
        assert mirror_differences(sandbox, store) == []
    finally:
        sandbox.stop()


@pytest.mark.slow
def test_small_bucket_sweep_paces_itself(redis_client, settings):
    # The bucket counts requests, not orders: 12 pages of 100 against a bucket of 5 (7 pages must wait for it) prove
    # what 3,000 orders at 250 a page did, for two fifths of the orders to generate, parse and store.
    settings.OMA_SWEEP_PAGE_SIZE = 100
    sandbox = start_sandbox(orders=1200, rate_limit=(5, 1.0))
    try:
        store = connect(sandbox, rate_limit=(5, 1.0))
        run = orders_sweep(store=store, kind=SyncRun.Kind.FULL)
        assert run.state == SyncRun.State.SUCCEEDED, run.error_message
        assert (run.created, run.pages) == (1200, 12)
        assert sandbox.stats("shop1")["rate_limited"] <= 3
        assert mirror_differences(sandbox, store) == []
    finally:
        sandbox.stop()


def test_sweep_survives_20_percent_503s_with_the_same_result(redis_client):
    sandbox = start_sandbox(orders=1000)
    try:
        store = connect(sandbox)
        sandbox.set_faults(error_rate=0.2, status=503)
        run = orders_sweep(store=store, kind=SyncRun.Kind.FULL)
        assert run.state == SyncRun.State.SUCCEEDED, run.error_message
        assert sandbox.stats("shop1")["faults_injected"] > 0
        sandbox.set_faults(error_rate=0.0)
        assert run.created == 1000
        assert mirror_differences(sandbox, store) == []
    finally:
        sandbox.stop()


def test_every_quirky_payload_shape_is_mirrored(genstore_sandbox):
    store = connect(genstore_sandbox)
    run = orders_sweep(store=store, kind=SyncRun.Kind.FULL)
    assert run.state == SyncRun.State.SUCCEEDED
    quirks = genstore_sandbox.quirky_order_ids("shop1")
    assert len(quirks) >= 8, quirks.keys()
    for quirk, order_ids in quirks.items():
        assert order_ids, f"the sandbox produced no order with quirk {quirk}"
        mirrored = set(Order.objects.filter(store=store, order_id__in=[str(i) for i in order_ids]).values_list(
            "order_id", flat=True))
        assert mirrored == {str(i) for i in order_ids}, f"orders with quirk {quirk} were dropped"
    assert mirror_differences(genstore_sandbox, store) == []
    assert run.errors > 0  # the malformed fields were counted, not hidden
    assert Order.objects.filter(store=store).exclude(parse_problems=[]).exists()


def test_first_incremental_sweep_of_a_store_is_full(genstore_sandbox):
    store = connect(genstore_sandbox)
    run = orders_sweep(store=store, kind=SyncRun.Kind.INCREMENTAL)
    assert run.kind == SyncRun.Kind.FULL and run.created == 300


@pytest.mark.postgres
def test_pages_are_stored_by_a_writer_thread_while_the_next_is_read(genstore_sandbox, monkeypatch):
    """On PostgreSQL each page is written in the sweep's writer thread (whose commit runs the orders-changed
    hooks), while the sweeping thread reads the next; at most one page is ever waiting to be written."""
    import threading

    from oma.orders.signals import orders_changed

    writers: list[str] = []
    also_receiver(monkeypatch, orders_changed, lambda sender, **kw: writers.append(threading.current_thread().name))
    store = connect(genstore_sandbox)
    run = orders_sweep(store=store, kind=SyncRun.Kind.FULL)
    assert run.state == SyncRun.State.SUCCEEDED and run.created == 300 and run.pages >= 2
    assert writers and all(name.startswith("sweep-writer") for name in writers)
    assert mirror_differences(genstore_sandbox, store) == []
    assert not [t for t in threading.enumerate() if t.name.startswith("sweep-writer")]  # the thread is gone


def test_one_sweep_per_store_at_a_time(genstore_sandbox):
    from datetime import timedelta

    store = connect(genstore_sandbox)
    assert store_sweep_lease_acquire(store=store, ttl=timedelta(minutes=5))
    run = orders_sweep(store=store, kind=SyncRun.Kind.FULL)
    assert run.state == SyncRun.State.SKIPPED
    assert not Order.objects.filter(store=store).exists()


def test_sweep_with_a_revoked_token_fails_cleanly_and_can_run_again(genstore_sandbox):
    store = connect(genstore_sandbox)
    store.access_token = "wrong"
    store.save()
    run = orders_sweep(store=store, kind=SyncRun.Kind.FULL)
    assert run.state == SyncRun.State.FAILED and run.error_message
    store.access_token = SANDBOX_TOKEN
    store.save()
    assert orders_sweep(store=store, kind=SyncRun.Kind.FULL).state == SyncRun.State.SUCCEEDED


def test_commands_connect_sync_and_export(genstore_sandbox):
    domain = genstore_sandbox.domain_for("shop1")
    base = genstore_sandbox.base_url_for("shop1")
    with pytest.raises(CommandError):
        call_command("connect_store", domain=domain, access_token="bad", client_secret="x", api_base_url=base)
    out = StringIO()
    call_command(
        "connect_store", domain=domain, access_token=SANDBOX_TOKEN, client_secret=SANDBOX_SECRET,
        api_base_url=base, rate_limit="40/2", stdout=out,
    )
    connected = json.loads(out.getvalue())
    assert connected["created"] is True and connected["verified"] is True

    out = StringIO()
    call_command("sync_orders", store=domain, full=True, stdout=out)
    summary = out.getvalue().strip().splitlines()[-1]
    assert "pages=2" in summary and "seen=300" in summary and "created=300" in summary and "duration=" in summary

    out = StringIO()
    call_command("export_orders", store=domain, format="jsonl", stdout=out)
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(rows) == 300
    assert set(rows[0]) == {
        "orderId", "sourceName", "sourceIdentifier", "financialStatus", "fulfillmentStatus", "cancelled",
        "unifiedStatus", "lineItems", "shipments",
    }
    out = StringIO()
    call_command("export_orders", store=domain, format="csv", stdout=out)
    assert len(out.getvalue().splitlines()) == 301
