"""The sandbox's POST /orders and POST /orders/{orderId}/cancel, over real HTTP (contract Part B "create order",
"cancel order"): what is stored and served back, the refusals, webhooks, faults, rate limit and the control API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from oma.sandbox import SandboxControl
from tests.sandbox.conftest import orders_url


def order_body(identifier: str = "111-0000001-0000001", **fields) -> dict:
    return {
        "order": {
            "sourceName": "amazon",
            "sourceIdentifier": identifier,
            "email": "ada@example.com",
            "phone": "+1 555 0100",
            "currency": "USD",
            "processedAt": "2025-04-01T10:00:00Z",
            "lineItems": [
                {"sku": "MUG-CER-BLA", "title": "Ceramic Mug", "quantity": 2, "price": "18.99"},
                {"sku": "EXT-1", "title": "Gift wrap", "variantTitle": "Red", "quantity": 1, "price": "3.5",
                 "requiresShipping": False},
            ],
            "shippingAddress": {"name": "Ada Lovelace", "firstName": "Ada", "lastName": "Lovelace",
                                "address1": "1 Main St", "city": "Springfield", "provinceCode": "IL",
                                "zip": "62701", "countryCode": "US"},
            "shippingLines": [{"title": "Standard", "price": "4.99"}],
            "totalTax": "3.10",
            "note": "from amazon",
            "tags": "amazon, external",
            "sendReceipt": False,
            "inventoryBehaviour": "bypass",
            **fields,
        }
    }  # fmt: skip


def create(api, sandbox, body):
    return api.post(orders_url(sandbox), json=body)


def test_create_stores_the_order_and_serves_it_everywhere(sandbox, api):
    before = datetime.now(UTC) - timedelta(seconds=1)
    response = create(api, sandbox, order_body())

    assert response.status_code == 201, response.text
    order = response.json()["order"]
    order_id = str(order["orderId"])
    assert order["name"] == "#1301"  # 300 generated orders: the numbering goes on
    assert order["sourceName"] == "amazon" and order["sourceIdentifier"] == "111-0000001-0000001"
    assert order["financialStatus"] == "paid" and order["fulfillmentStatus"] is None
    assert order["cancelledAt"] is None and order["fulfillments"] == []
    assert order["processedAt"] == "2025-04-01T10:00:00Z"
    clean = sandbox.order("shop1", order_id)
    assert clean["shippingAddress"]["city"] == "Springfield" and clean["shippingAddress"]["zip"] == "62701"
    assert clean["shippingLines"] == [{"title": "Standard", "price": "4.99"}]
    assert [(line["sku"], line["quantity"], line["fulfillableQuantity"], line["requiresShipping"], line["price"])
            for line in clean["lineItems"]] == [("MUG-CER-BLA", 2, 2, True, "18.99"), ("EXT-1", 1, 1, False, "3.50")]
    assert clean["subtotalPrice"] == "41.48" and clean["totalPrice"] == "49.57"  # 41.48 + 4.99 + 3.10
    assert clean["tags"] == ["amazon", "external"] and clean["phone"] == "+1 555 0100"
    assert len({line["id"] for line in clean["lineItems"]}) == 2
    created = datetime.fromisoformat(clean["createdAt"].replace("Z", "+00:00"))
    assert before <= created <= datetime.now(UTC) and clean["updatedAt"] == clean["createdAt"]

    assert str(api.get(orders_url(sandbox, path=f"orders/{order_id}")).json()["order"]["orderId"]) == order_id
    assert api.get(orders_url(sandbox, path="orders/count")).json()["count"] == 301
    recent = api.get(orders_url(sandbox), params={"updatedAtMin": before.isoformat()}).json()["orders"]
    assert [str(o["orderId"]) for o in recent] == [order_id]
    stats = sandbox.stats("shop1")
    assert stats["orders_created"] == 1
    [listed] = sandbox.orders_by_source("shop1")
    assert (listed["orderId"], listed["sourceName"], listed["sourceIdentifier"]) == (order_id, "amazon",
                                                                                     "111-0000001-0000001")
    assert [(line["sku"], line["quantity"], line["price"]) for line in listed["lineItems"]] == [
        ("MUG-CER-BLA", 2, "18.99"), ("EXT-1", 1, "3.50")
    ]
    assert listed["shippingAddress"]["zip"] == "62701"


def test_a_created_order_takes_fulfillments_like_any_order(sandbox, api):
    order = create(api, sandbox, order_body()).json()["order"]
    lines = [{"id": line["id"], "quantity": int(line["quantity"])} for line in order["lineItems"]]

    response = api.post(
        orders_url(sandbox, path="fulfillments"),
        json={"fulfillment": {"orderId": order["orderId"], "lineItems": lines, "trackingNumber": "1Z999AA10123456784",
                              "trackingCompany": "UPS", "notifyCustomer": False}},
    )  # fmt: skip

    assert response.status_code == 201, response.text
    after = sandbox.order("shop1", str(order["orderId"]))
    assert after["fulfillmentStatus"] == "fulfilled"
    assert [line["fulfillableQuantity"] for line in after["lineItems"]] == [0, 0]


@pytest.mark.parametrize(
    ("fields", "status", "says"),
    [
        ({"lineItems": []}, 422, "line item"),
        ({"lineItems": None}, 422, "line item"),
        ({"lineItems": [{"sku": "A", "title": "A", "quantity": 0, "price": "1.00"}]}, 422, "at least 1"),
        ({"lineItems": [{"sku": "A", "title": "A", "quantity": "two", "price": "1.00"}]}, 422, "integer"),
        ({"lineItems": [{"sku": "A", "title": "A", "quantity": 1, "price": "-1"}]}, 422, "price"),
        ({"lineItems": [{"sku": "A", "quantity": 1, "price": "1.00"}]}, 422, "title"),
        ({"currency": "XYZ"}, 422, "currency"),
        ({"sourceName": ""}, 422, "sourceName"),
        ({"financialStatus": "refunded"}, 422, "financialStatus"),
        ({"processedAt": "yesterday"}, 422, "processedAt"),
        ({"shippingAddress": "1 Main St"}, 422, "shippingAddress"),
    ],
)
def test_a_bad_body_is_refused_and_creates_nothing(sandbox, api, fields, status, says):
    response = create(api, sandbox, order_body(**fields))

    assert response.status_code == status
    assert says in response.json()["error"]
    assert sandbox.order_count("shop1") == 300
    assert sandbox.stats("shop1")["orders_created"] == 0 and sandbox.orders_by_source("shop1") == []


def test_a_body_without_its_root_key_is_a_400(sandbox, api):
    response = create(api, sandbox, order_body()["order"])
    assert response.status_code == 400 and "order" in response.json()["error"]
    assert sandbox.order_count("shop1") == 300


def test_create_and_cancel_send_their_webhooks(sandbox, api, receiver):
    for topic in ("orders/create", "orders/paid", "orders/cancelled"):
        api.post(orders_url(sandbox, path="app/webhooks"), json={"webhook": {"address": receiver.url, "topic": topic}})
    order = create(api, sandbox, order_body("112-7")).json()["order"]
    api.post(orders_url(sandbox, path=f"orders/{order['orderId']}/cancel"), json={"reason": "customer"})
    api.post(orders_url(sandbox, path=f"orders/{order['orderId']}/cancel"), json={"reason": "customer"})
    assert sandbox.wait_for_webhooks(10)

    [created] = receiver.bodies("orders/create")
    assert created["order"]["sourceIdentifier"] == "112-7" and created["order"]["cancelledAt"] is None
    assert len(receiver.bodies("orders/paid")) == 1
    [cancelled] = receiver.bodies("orders/cancelled")  # the repeated cancel changed nothing: no second webhook
    assert cancelled["order"]["cancelReason"] == "customer"


def test_cancel_sets_cancelled_at_once_and_a_repeat_answers_unchanged(sandbox, api):
    order = create(api, sandbox, order_body()).json()["order"]
    url = orders_url(sandbox, path=f"orders/{order['orderId']}/cancel")

    first = api.post(url, json={"reason": "inventory"})
    again = api.post(url, json={"reason": "other"})

    assert first.status_code == 200, first.text
    cancelled = first.json()["order"]
    assert cancelled["cancelledAt"] and cancelled["cancelReason"] == "inventory"
    assert all(int(line["fulfillableQuantity"]) == 0 for line in cancelled["lineItems"])
    assert again.status_code == 200 and again.json() == first.json()
    assert sandbox.stats("shop1")["orders_cancelled"] == 1
    assert sandbox.orders_by_source("shop1")[0]["cancelled"] is True


def test_cancel_refusals(sandbox, api):
    order_id = str(create(api, sandbox, order_body()).json()["order"]["orderId"])
    assert api.post(orders_url(sandbox, path=f"orders/{order_id}/cancel"), json={"reason": "fraud"}).status_code == 422
    assert api.post(orders_url(sandbox, path="orders/42/cancel"), json={"reason": "other"}).status_code == 404
    assert api.get(orders_url(sandbox, path=f"orders/{order_id}/cancel")).status_code == 405
    fulfilled = next(o for o in sandbox.orders("shop1") if o["fulfillmentStatus"] == "fulfilled")
    response = api.post(orders_url(sandbox, path=f"orders/{fulfilled['orderId']}/cancel"), json={"reason": "other"})
    assert response.status_code == 422 and "fulfilled" in response.json()["error"]
    assert sandbox.order("shop1", order_id)["cancelledAt"] is None


def test_the_write_fault_applies_the_create_then_answers_502(sandbox, api):
    sandbox.set_faults(write_error_rate=1.0)

    response = create(api, sandbox, order_body("113-9"))

    assert response.status_code == 502
    assert [o["sourceIdentifier"] for o in sandbox.orders_by_source("shop1")] == ["113-9"]
    assert sandbox.order_count("shop1") == 301
    assert sandbox.stats("shop1")["write_faults_injected"] == 1


def test_an_error_fault_and_an_empty_bucket_create_nothing(sandbox, api):
    sandbox.set_faults(error_rate=1.0, status=503)
    assert create(api, sandbox, order_body()).status_code == 503
    sandbox.clear_faults()
    sandbox.set_rate_limit(1, 0.0, handle="shop1")
    assert create(api, sandbox, order_body("114-1")).status_code == 201
    assert create(api, sandbox, order_body("114-2")).status_code == 429
    assert [o["sourceIdentifier"] for o in sandbox.orders_by_source("shop1")] == ["114-1"]


def test_control_api_lists_created_orders_by_source(sandbox, api):
    create(api, sandbox, order_body("A-1"))
    create(api, sandbox, order_body("E-1", sourceName="eBay"))
    control = SandboxControl(sandbox.url)

    assert [(o["sourceName"], o["sourceIdentifier"]) for o in control.orders_by_source("shop1")] == [
        ("amazon", "A-1"), ("eBay", "E-1")
    ]
    [ebay] = control.orders_by_source("shop1", source_name="EBAY")
    assert ebay["sourceIdentifier"] == "E-1" and ebay["lineItems"][0]["sku"] == "MUG-CER-BLA"
    assert control.orders_by_source("shop2") == []
    assert control.stats("shop1")["orders_created"] == 2
