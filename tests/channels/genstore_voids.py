"""Shared by the voided-label tests of channels (test_csv_void, test_void_reissue): the Genstore sandbox over HTTP, a
store mirrored from it, a client that does not wait, and what the sandbox saw."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from oma.genstore.client import GenstoreClient
from oma.orders.models import LineItem, Order, SyncRun
from oma.orders.services import orders_sweep
from oma.sandbox.server import GenstoreSandbox
from oma.stores.models import Store
from oma.stores.services import genstore_limiter
from tests.genstore_sandbox import connect, start_sandbox

CANCEL = "PUT /fulfillments/{id}/cancel"


# Fixtures named `sandbox` and `store` (a test module imports sandbox_fixture and store_fixture).
@pytest.fixture(name="sandbox")
def sandbox_fixture() -> Iterator[GenstoreSandbox]:
    box = start_sandbox(orders=40, seed=7, rate_limit=None)
    yield box
    box.stop()


@pytest.fixture(name="store")
def store_fixture(sandbox: GenstoreSandbox, redis_client) -> Store:
    store = connect(sandbox, rate_limit=(1000, 1000.0))
    sweep(store)
    return store


def sweep(store: Store) -> None:
    """Mirror the store as Genstore holds it now (line items' fulfillableQuantity and fulfillments included)."""
    run = orders_sweep(store=store, kind=SyncRun.Kind.FULL)
    assert run.state == SyncRun.State.SUCCEEDED, run.error_message


def quick_client(store: Store) -> GenstoreClient:
    """The store's client, retrying at once and only twice."""
    return GenstoreClient(
        base_url=store.resolved_api_base_url, api_version=store.api_version, access_token=store.access_token,
        limiter=genstore_limiter(), limiter_key=f"genstore:{store.domain}", bucket_capacity=1000,
        bucket_refill_per_second=1000, max_retries=2, sleep=lambda _: None,
    )


def open_order(store: Store, *, lines_at_least: int = 1) -> Order:
    """An order that may be fulfilled: paid, not cancelled, every line fully fulfillable and shippable (and a
    creation time, so that a channel polls it)."""
    for order in Order.objects.filter(store=store, cancelled_at__isnull=True, financial_status="paid",
                                      genstore_created_at__isnull=False).order_by("pk"):
        lines = list(order.line_items.all())
        if len(lines) >= lines_at_least and all(
            line.fulfillable_quantity == line.quantity and line.quantity > 0 and line.requires_shipping is not False
            for line in lines
        ):
            return order
    raise AssertionError("the sandbox has no open order with enough lines")


def lines_of(order: Order) -> list[LineItem]:
    return list(order.line_items.order_by("pk"))


def genstore_fulfillments(sandbox: GenstoreSandbox, order: Order, number: str) -> list[dict]:
    return [f for f in sandbox.fulfillments("shop1", order.order_id) if f["trackingNumber"] == number]


def status_at_genstore(sandbox: GenstoreSandbox, order: Order, number: str) -> str:
    found = genstore_fulfillments(sandbox, order, number)
    return found[0]["status"] if len(found) == 1 else f"{len(found)} fulfillments"


def requests_seen(sandbox: GenstoreSandbox) -> tuple[int, int, int]:
    """(PUT cancel requests, fulfillments cancelled, fulfillments created) at the sandbox."""
    stats = sandbox.stats("shop1")
    return stats["by_endpoint"].get(CANCEL, 0), stats["fulfillments_cancelled"], stats["fulfillments_created"]
