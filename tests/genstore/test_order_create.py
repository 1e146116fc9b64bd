"""GenstoreClient.create_order, cancel_order and orders_by_source (contract Part B "create order", "external order
identity", "cancel order"): against the project's Genstore sandbox over real HTTP, and a scripted server where the
exact bytes or a timeout matter."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from oma.core.ratelimit import LocalTokenBucket
from oma.genstore.client import GenstoreClient
from oma.genstore.errors import (
    GenstoreNotFound,
    GenstoreResponseError,
    GenstoreServerError,
    GenstoreTransportError,
    GenstoreUnprocessable,
)
from oma.genstore.records import OrderDraft, OrderDraftLine
from oma.sandbox import GenstoreSandbox
from tests.genstore.conftest import Reply, ScriptedServer

API = "/api/202412"
ANCHOR = datetime(2025, 3, 1, tzinfo=UTC)


def draft(identifier: str = "111-2223334-5556667", **fields) -> OrderDraft:
    options = {
        "source_name": "amazon",
        "source_identifier": identifier,
        "currency": "USD",
        "line_items": (OrderDraftLine(sku="MUG-CER-BLA", title="Ceramic Mug", quantity=2, price=Decimal("18.99")),),
    }
    options.update(fields)
    return OrderDraft(**options)


def full_draft() -> OrderDraft:
    return draft(
        line_items=(
            OrderDraftLine(sku="MUG-CER-BLA", title="Ceramic Mug", quantity=2, price=Decimal("18.99")),
            OrderDraftLine(sku="WRAP", title="Gift wrap", quantity=1, price=Decimal("3.5"), variant_title="Red",
                           requires_shipping=False),
        ),
        email="ada@example.com",
        phone="+1 555 0100",
        processed_at=datetime(2025, 4, 1, 12, 30, tzinfo=UTC),
        financial_status="pending",
        shipping_address={"name": "Ada King Lovelace", "address1": "1 Main St", "address2": "", "city": "Springfield",
                          "province_code": "IL", "zip": "62701", "country_code": "US", "phone": "+1 555 0101"},
        billing_address={"name": "Ada", "city": "London", "country_code": "GB"},
        shipping_lines=(("Standard", Decimal("4.99")),),
        total_tax=Decimal("3.10"),
        note="gift",
        tags=("amazon", " prime ", ""),
    )


def make_client(base_url: str, access_token: str, **overrides) -> GenstoreClient:
    options = {
        "base_url": base_url,
        "api_version": "202412",
        "access_token": access_token,
        "limiter": LocalTokenBucket(),
        "limiter_key": "store:1",
        "bucket_capacity": 1000,
        "bucket_refill_per_second": 1000.0,
        "connect_timeout": 2,
        "read_timeout": 2,
        "max_retries": 2,
        "sleep": lambda _seconds: None,
    }
    options.update(overrides)
    return GenstoreClient(**options)


@pytest.fixture
def sandbox() -> Iterator[GenstoreSandbox]:
    with GenstoreSandbox(orders=300, seed=1, rate_limit=None, anchor=ANCHOR) as running:
        yield running


@pytest.fixture
def client(sandbox) -> Iterator[GenstoreClient]:
    with make_client(sandbox.base_url_for("shop1"), sandbox.access_token) as made:
        yield made


@pytest.fixture
def scripted_client(server: ScriptedServer) -> Iterator[GenstoreClient]:
    with make_client(server.base_url, "token") as made:
        yield made


def posts(sandbox: GenstoreSandbox, endpoint: str = "POST /orders") -> int:
    return sandbox.stats("shop1")["by_endpoint"].get(endpoint, 0)


# --- the body -------------------------------------------------------------------------------------------------------


def test_create_sends_the_contract_body(server, scripted_client):
    server.script(f"POST {API}/orders", Reply(201, {"order": {"orderId": "5001", "sourceName": "amazon"}}))

    record = scripted_client.create_order(full_draft())

    assert record.order_id == "5001"
    [request] = server.seen(f"POST {API}/orders")
    assert request.body == {
        "order": {
            "sourceName": "amazon",
            "sourceIdentifier": "111-2223334-5556667",
            "currency": "USD",
            "lineItems": [
                {"sku": "MUG-CER-BLA", "title": "Ceramic Mug", "quantity": 2, "price": "18.99"},
                {"sku": "WRAP", "title": "Gift wrap", "quantity": 1, "price": "3.5", "variantTitle": "Red",
                 "requiresShipping": False},
            ],
            "email": "ada@example.com",
            "phone": "+1 555 0100",
            "note": "gift",
            "processedAt": "2025-04-01T12:30:00Z",
            "financialStatus": "pending",
            "shippingAddress": {"name": "Ada King Lovelace", "firstName": "Ada King", "lastName": "Lovelace",
                                "address1": "1 Main St", "city": "Springfield", "provinceCode": "IL", "zip": "62701",
                                "countryCode": "US", "phone": "+1 555 0101"},
            "billingAddress": {"name": "Ada", "firstName": "Ada", "city": "London", "countryCode": "GB"},
            "shippingLines": [{"title": "Standard", "price": "4.99"}],
            "totalTax": "3.10",
            "tags": "amazon, prime",
            "sendReceipt": False,
            "inventoryBehaviour": "bypass",
        }
    }  # fmt: skip


def test_a_minimal_draft_sends_only_what_it_says(server, scripted_client):
    server.script(f"POST {API}/orders", Reply(201, {"order": {"orderId": "5001"}}))
    scripted_client.create_order(draft())
    [request] = server.seen(f"POST {API}/orders")
    assert set(request.body["order"]) == {
        "sourceName", "sourceIdentifier", "currency", "lineItems", "sendReceipt", "inventoryBehaviour"
    }  # fmt: skip


@pytest.mark.parametrize(
    "fields",
    [
        {"line_items": ()},
        {"line_items": (OrderDraftLine(sku="A", title="A", quantity=0, price=Decimal("1")),)},
        {"line_items": (OrderDraftLine(sku="A", title="A", quantity=True, price=Decimal("1")),)},
        {"line_items": (OrderDraftLine(sku="A", title="A", quantity="2", price=Decimal("1")),)},
        {"line_items": (OrderDraftLine(sku="A", title="A", quantity=1, price=1.5),)},
        {"line_items": (OrderDraftLine(sku="A", title="A", quantity=1, price=Decimal("-1")),)},
        {"line_items": (OrderDraftLine(sku="", title="A", quantity=1, price=Decimal("1")),)},
        {"source_identifier": " "},
        {"financial_status": "refunded"},
        {"shipping_address": {"street": "1 Main St"}},
        {"tags": ("a,b",)},
    ],
)
def test_a_draft_genstore_would_refuse_raises_before_sending(server, scripted_client, fields):
    with pytest.raises(ValueError):
        scripted_client.create_order(draft(**fields))
    assert server.requests == []


# --- against the sandbox --------------------------------------------------------------------------------------------


def test_create_returns_the_created_order_as_genstore_stores_it(sandbox, client):
    record = client.create_order(full_draft())

    assert record.order_id and record.name == "#1301"
    assert (record.source_name, record.source_identifier) == ("amazon", "111-2223334-5556667")
    assert record.financial_status == "pending" and not record.cancelled
    assert [(line.sku, line.quantity, line.fulfillable_quantity, line.price) for line in record.line_items] == [
        ("MUG-CER-BLA", 2, 2, Decimal("18.99")), ("WRAP", 1, 1, Decimal("3.50"))
    ]  # fmt: skip
    assert record.has_line_items and all(line.id for line in record.line_items)
    assert client.get_order(record.order_id).source_identifier == "111-2223334-5556667"
    stored = sandbox.order("shop1", record.order_id)
    assert stored["shippingAddress"]["city"] == "Springfield" and stored["shippingAddress"]["zip"] == "62701"
    assert stored["shippingAddress"]["provinceCode"] == "IL" and stored["shippingAddress"]["countryCode"] == "US"
    assert stored["processedAt"] == "2025-04-01T12:30:00Z"


def test_genstores_refusal_is_unprocessable_with_its_text_and_not_retried(sandbox, client):
    with pytest.raises(GenstoreUnprocessable) as info:
        client.create_order(draft(currency="XYZ"))
    assert info.value.status == 422 and "currency" in (info.value.error_text or "")
    assert info.value.transient is False and info.value.ambiguous is False
    assert posts(sandbox) == 1 and sandbox.orders_by_source("shop1") == []


def test_an_applied_create_answered_502_is_ambiguous_not_retried_and_read_back_finds_it(sandbox, client):
    intent_at = datetime.now(UTC)
    sandbox.set_faults(write_error_rate=1.0)

    with pytest.raises(GenstoreServerError) as info:
        client.create_order(draft("112-1"))

    assert info.value.ambiguous is True and info.value.transient is True and info.value.status == 502
    assert posts(sandbox) == 1  # never a second POST: the first one was applied
    sandbox.clear_faults()
    found = client.orders_by_source(source_name="amazon", source_identifiers=["112-1"], since=intent_at)
    [created] = sandbox.orders_by_source("shop1")
    assert list(found) == ["112-1"] and found["112-1"].order_id == created["orderId"]


def test_a_create_answered_too_late_is_ambiguous_and_not_retried(sandbox):
    sandbox.set_faults(slow_rate=1.0, slow_seconds=1.0)  # applied at once, answered after a second
    impatient = make_client(sandbox.base_url_for("shop1"), sandbox.access_token, read_timeout=0.3)
    with impatient, pytest.raises(GenstoreTransportError) as info:
        impatient.create_order(draft("112-2"))
    assert info.value.ambiguous is True and info.value.transient is True
    assert posts(sandbox) == 1
    assert [o["sourceIdentifier"] for o in sandbox.orders_by_source("shop1")] == ["112-2"]


def test_a_create_is_retried_on_429_where_nothing_was_applied(server, scripted_client):
    server.script(
        f"POST {API}/orders",
        Reply(429, {"error": "slow down"}, headers={"Retry-After": "1"}),
        Reply(201, {"order": {"orderId": "5002"}}),
    )
    assert scripted_client.create_order(draft()).order_id == "5002"
    assert len(server.seen(f"POST {API}/orders")) == 2


def test_a_2xx_without_a_usable_order_is_ambiguous(server, scripted_client):
    server.script(f"POST {API}/orders", Reply(201, {"order": {"sourceName": "amazon"}}))
    with pytest.raises(GenstoreResponseError) as info:
        scripted_client.create_order(draft())
    assert info.value.ambiguous is True
    assert len(server.seen(f"POST {API}/orders")) == 1


def test_a_2xx_whose_body_is_not_json_is_ambiguous_too(server, scripted_client):
    # A proxy's HTML page or a cut-off answer after Genstore created the order: read back, never "refused".
    server.script(f"POST {API}/orders", Reply(201, raw=b"<html>created</html>"))
    with pytest.raises(GenstoreResponseError) as info:
        scripted_client.create_order(draft())
    assert info.value.ambiguous is True
    assert len(server.seen(f"POST {API}/orders")) == 1


# --- cancel ---------------------------------------------------------------------------------------------------------


def test_cancel_sets_cancelled_at_and_a_repeat_is_harmless(sandbox, client):
    order_id = client.create_order(draft()).order_id

    first = client.cancel_order(order_id, reason="customer")
    again = client.cancel_order(order_id)

    assert first.cancelled and first.cancel_reason == "customer"
    assert again.cancelled_at == first.cancelled_at and again.cancel_reason == "customer"
    assert sandbox.stats("shop1")["orders_cancelled"] == 1
    with pytest.raises(ValueError):
        client.cancel_order(order_id, reason="fraud")
    with pytest.raises(GenstoreNotFound):
        client.cancel_order("42")


def test_cancel_is_retried_after_a_502(server, scripted_client):
    server.script(
        f"POST {API}/orders/5001/cancel",
        Reply(502, {"error": "bad gateway"}),
        Reply(200, {"order": {"orderId": "5001", "cancelledAt": "2025-04-01T00:00:00Z", "cancelReason": "other"}}),
    )
    record = scripted_client.cancel_order("5001")
    assert record.cancelled and record.cancel_reason == "other"
    requests = server.seen(f"POST {API}/orders/5001/cancel")
    assert len(requests) == 2 and requests[0].body == {"reason": "other"}


# --- read-back ------------------------------------------------------------------------------------------------------


def test_read_back_walks_every_page_and_matches_the_pair(sandbox, client):
    since = datetime.now(UTC)
    sandbox.mutate_orders("shop1", 260, seed=3)  # 260 other orders changed just now: ours are on the second page
    wanted = client.create_order(draft("A-1", source_name="Amazon"))
    client.create_order(draft("A-2"))  # not asked for
    client.create_order(draft("A-3", source_name="ebay"))  # another channel's order with a wanted id

    found = client.orders_by_source(source_name="amazon", source_identifiers={"A-1", "A-3", "A-9"}, since=since)

    assert {key: record.order_id for key, record in found.items()} == {"A-1": wanted.order_id}
    assert sandbox.stats("shop1")["pages_served"] == 2


def test_read_back_starts_a_margin_before_the_intent_and_keeps_the_earliest_duplicate(server, scripted_client):
    since = datetime(2025, 4, 1, 12, 0, 30, tzinfo=UTC)
    page_two = f"{server.base_url}{API}/orders?limit=250&pageToken=p2"
    server.handle(
        f"GET {API}/orders",
        lambda seen: Reply(200, {"orders": [
            {"orderId": "7003", "sourceName": "amazon", "sourceIdentifier": "X", "createdAt": "2025-04-01T12:02:00Z"},
        ]}) if "pageToken" in seen.query else Reply(200, {"orders": [
            {"orderId": "7001", "sourceName": "AMAZON", "sourceIdentifier": " X ", "createdAt": "2025-04-01T12:01:00Z"},
            {"orderId": "7002", "sourceName": "amazon", "sourceIdentifier": "Y"},
        ]}, headers={"Link": f"<{page_two}>; rel=next"}),
    )  # fmt: skip

    found = scripted_client.orders_by_source(source_name="amazon", source_identifiers=["X"], since=since)

    assert found["X"].order_id == "7001"
    first, second = server.seen(f"GET {API}/orders")
    assert first.query["updatedAtMin"] == ["2025-04-01T11:59:30Z"]  # the contract's 60 s before the intent
    assert second.query["pageToken"] == ["p2"]


def test_read_back_of_nothing_asks_nothing(server, scripted_client):
    assert scripted_client.orders_by_source(source_name="amazon", source_identifiers=[], since=ANCHOR) == {}
    assert server.requests == []
