"""Shared fixtures: a Genstore sandbox on 127.0.0.1 and a store connected to it (imported by conftest files)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from oma.orders.models import Order
from oma.sandbox.server import GenstoreSandbox
from oma.stores.models import Store

SANDBOX_TOKEN = "sandbox-token-0123456789"
SANDBOX_SECRET = "sandbox-client-secret-abcdef"


def start_sandbox(
    *, orders: int, seed: int = 1, shops: tuple[str, ...] = ("shop1",), **options: Any
) -> GenstoreSandbox:
    sandbox = GenstoreSandbox(
        orders=orders, seed=seed, shops=shops, access_token=SANDBOX_TOKEN, client_secret=SANDBOX_SECRET, **options
    )
    sandbox.start()
    return sandbox


def connect(sandbox: GenstoreSandbox, handle: str = "shop1", *, rate_limit: tuple[int, float] = (40, 2.0)) -> Store:
    store, _ = Store.objects.update_or_create(
        domain=sandbox.domain_for(handle),
        defaults={
            "api_base_url": sandbox.base_url_for(handle),
            "access_token": SANDBOX_TOKEN,
            "client_secret": SANDBOX_SECRET,
            "rate_limit_capacity": rate_limit[0],
            "rate_limit_refill_per_second": rate_limit[1],
        },
    )
    return store


@pytest.fixture
def genstore_sandbox() -> Iterator[GenstoreSandbox]:
    sandbox = start_sandbox(orders=300)
    yield sandbox
    sandbox.stop()


def mirror_differences(sandbox: GenstoreSandbox, store: Store, handle: str = "shop1") -> list[str]:
    """Every way the mirror differs from the sandbox's truth (count, statuses, channels, line items)."""
    problems: list[str] = []
    mirror = {
        order.order_id: order
        for order in Order.objects.filter(store=store).prefetch_related("line_items")
    }
    truth_ids = set()
    for order_json in sandbox.orders(handle):
        truth = sandbox.canonical(handle, str(order_json["orderId"]))
        order_id = truth["orderId"]
        truth_ids.add(order_id)
        order = mirror.get(order_id)
        if order is None:
            problems.append(f"{order_id}: missing")
            continue
        for field, value in (
            ("source_name", truth["sourceName"] or ""),
            ("source_identifier", truth["sourceIdentifier"] or ""),
            ("financial_status", truth["financialStatus"] or ""),
            ("fulfillment_status", truth["fulfillmentStatus"] or ""),
        ):
            if getattr(order, field) != value:
                problems.append(f"{order_id}: {field} {getattr(order, field)!r} != {value!r}")
        if order.is_cancelled != truth["cancelled"]:
            problems.append(f"{order_id}: cancelled {order.is_cancelled} != {truth['cancelled']}")
        lines = sorted(
            (li.line_item_id, li.sku or None, li.quantity, li.fulfillable_quantity, li.requires_shipping)
            for li in order.line_items.all()
        )
        if lines != sorted(tuple(line) for line in truth["lineItems"]):
            problems.append(f"{order_id}: line items {lines} != {truth['lineItems']}")
    for extra in set(mirror) - truth_ids:
        problems.append(f"{extra}: in the mirror but not in Genstore")
    return problems
