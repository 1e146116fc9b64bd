from __future__ import annotations

import pytest

from oma.sandbox import GenstoreSandbox
from tests.sandbox.conftest import orders_url


def _open_order(sandbox: GenstoreSandbox, *, min_lines: int = 1, min_units: int = 1) -> dict:
    """An order that is not cancelled and has nothing fulfilled yet."""
    for order in sandbox.orders("shop1"):
        lines = order["lineItems"]
        if (
            order["cancelledAt"] is None
            and order["fulfillmentStatus"] in (None, "unfulfilled")
            and len(lines) >= min_lines
            and sum(line["fulfillableQuantity"] for line in lines) >= min_units
        ):
            return order
    raise AssertionError("no open order in the sandbox")


def _create(api, sandbox, body, path="fulfillments"):
    return api.post(orders_url(sandbox, path=path), json={"fulfillment": body})


def test_create_fulfillment_for_part_of_an_order(sandbox, api):
    order = _open_order(sandbox, min_lines=2)
    first_line = order["lineItems"][0]
    response = _create(
        api,
        sandbox,
        {
            "orderId": order["orderId"],
            "lineItems": [{"id": first_line["id"], "quantity": first_line["quantity"]}],
            "trackingNumber": "1Z999AA10123456784",
            "trackingCompany": "UPS",
            "trackingUrl": "https://www.ups.com/track?tracknum=1Z999AA10123456784",
            "notifyCustomer": False,
        },
    )

    assert response.status_code == 201, response.text
    fulfillment = response.json()["fulfillment"]
    assert str(fulfillment["orderId"]) == order["orderId"]
    assert fulfillment["status"] == "success"
    assert fulfillment["shipmentStatus"] is None
    assert fulfillment["trackingNumber"] == "1Z999AA10123456784"
    assert [(str(p["id"]), int(p["quantity"])) for p in fulfillment["lineItems"]] == [
        (first_line["id"], first_line["quantity"])
    ]
    assert fulfillment["createdAt"] and fulfillment["updatedAt"]

    after = sandbox.order("shop1", order["orderId"])
    assert after["fulfillmentStatus"] == "partial"
    assert after["lineItems"][0]["fulfillableQuantity"] == 0
    assert after["lineItems"][0]["fulfillmentStatus"] == "fulfilled"
    assert after["lineItems"][1]["fulfillableQuantity"] == order["lineItems"][1]["quantity"]
    assert after["updatedAt"] > order["updatedAt"]
    listed = api.get(orders_url(sandbox, path=f"orders/{order['orderId']}/fulfillments")).json()["fulfillments"]
    assert str(fulfillment["fulfillId"]) in [str(f["fulfillId"]) for f in listed]
    assert sandbox.stats("shop1")["fulfillments_created"] == 1


def test_create_without_line_items_fulfils_everything_left_and_singular_path_works(sandbox, api):
    order = _open_order(sandbox)
    response = _create(api, sandbox, {"orderId": order["orderId"], "trackingNumber": "TRK1"}, path="fulfillment")

    assert response.status_code == 201, response.text
    after = sandbox.canonical("shop1", order["orderId"])
    assert after["fulfillmentStatus"] == "fulfilled"
    assert all(line.fulfillable_quantity == 0 for line in after["lineItems"])
    again = _create(api, sandbox, {"orderId": order["orderId"]})
    assert again.status_code == 422


def test_quantity_above_fulfillable_is_422_and_changes_nothing(sandbox, api):
    order = _open_order(sandbox)
    line = order["lineItems"][0]
    response = _create(
        api, sandbox, {"orderId": order["orderId"], "lineItems": [{"id": line["id"], "quantity": line["quantity"] + 1}]}
    )

    assert response.status_code == 422
    assert "fulfillable" in response.json()["error"]
    assert sandbox.order("shop1", order["orderId"]) == order


def test_cancelled_order_cannot_be_fulfilled(sandbox, api):
    cancelled = next(o for o in sandbox.orders("shop1") if o["cancelledAt"] is not None)
    response = _create(api, sandbox, {"orderId": cancelled["orderId"], "trackingNumber": "X"})
    assert response.status_code == 422
    assert "cancel" in response.json()["error"].lower()


@pytest.mark.parametrize(
    ("mutate", "status"),
    [
        (lambda body: body["lineItems"][0].update(id="999"), 400),
        (lambda body: body["lineItems"][0].update(quantity=0), 400),
        (lambda body: body["lineItems"][0].update(quantity="lots"), 400),
        (lambda body: body.update(orderId="5000000000001"), 404),
        (lambda body: body.pop("orderId"), 400),
        (lambda body: body.update(shipmentStatus="teleported"), 400),
    ],
)
def test_create_validation(sandbox, api, mutate, status):
    order = _open_order(sandbox)
    body = {"orderId": order["orderId"], "lineItems": [{"id": order["lineItems"][0]["id"], "quantity": 1}]}
    mutate(body)
    response = _create(api, sandbox, body)
    assert response.status_code == status
    assert response.json()["error"]


def test_malformed_bodies_are_400(sandbox, api):
    url = orders_url(sandbox, path="fulfillments")
    assert api.post(url, data=b"{not json", headers={"Content-Type": "application/json"}).status_code == 400
    assert api.post(url, json={"orderId": "1"}).status_code == 400
    assert api.post(url).status_code == 400


def test_quoted_quantities_and_numeric_ids_are_accepted(sandbox, api):
    order = _open_order(sandbox)
    line = order["lineItems"][0]
    body = {"orderId": int(order["orderId"]), "lineItems": [{"id": int(line["id"]), "quantity": "1"}]}
    assert _create(api, sandbox, body).status_code == 201


def test_update_tracking_changes_only_what_is_sent(sandbox, api):
    order = _open_order(sandbox)
    created = _create(api, sandbox, {"orderId": order["orderId"], "trackingNumber": "OLD1", "trackingCompany": "USPS"})
    fulfill_id = created.json()["fulfillment"]["fulfillId"]
    url = orders_url(sandbox, path=f"fulfillments/{fulfill_id}/update_tracking")

    response = api.put(url, json={"fulfillment": {"shipmentStatus": "in_transit", "notifyCustomer": False}})
    assert response.status_code == 200, response.text
    assert response.json()["fulfillment"]["shipmentStatus"] == "in_transit"
    assert response.json()["fulfillment"]["trackingNumber"] == "OLD1"

    response = api.put(url, json={"fulfillment": {"trackingNumber": "NEW2", "trackingCompany": "UPS"}})
    assert response.json()["fulfillment"]["trackingNumber"] == "NEW2"
    assert response.json()["fulfillment"]["shipmentStatus"] == "in_transit"
    assert sandbox.fulfillments("shop1", order["orderId"])[-1]["trackingCompany"] == "UPS"
    assert api.put(url, json={"fulfillment": {"shipmentStatus": "lost_in_space"}}).status_code == 400
    assert (
        api.put(orders_url(sandbox, path="fulfillments/42/update_tracking"), json={"fulfillment": {}}).status_code
        == 404
    )
    assert sandbox.stats("shop1")["fulfillments_updated"] == 2


def test_update_tracking_works_on_generated_fulfillments(sandbox, api):
    shipped = next(o for o in sandbox.orders("shop1") if o["fulfillments"])
    fulfill_id = shipped["fulfillments"][0]["fulfillId"]
    response = api.put(
        orders_url(sandbox, path=f"fulfillments/{fulfill_id}/update_tracking"),
        json={"fulfillment": {"shipmentStatus": "delivered"}},
    )
    assert response.status_code == 200
    assert sandbox.fulfillments("shop1", shipped["orderId"])[0]["shipmentStatus"] == "delivered"
    assert api.get(orders_url(sandbox, path=f"fulfillments/{fulfill_id}")).json()["fulfillment"]["shipmentStatus"] == (
        "delivered"
    )


def test_cancel_fulfillment_gives_the_quantities_back(sandbox, api):
    order = _open_order(sandbox)
    created = _create(api, sandbox, {"orderId": order["orderId"]}).json()["fulfillment"]
    url = orders_url(sandbox, path=f"fulfillments/{created['fulfillId']}/cancel")

    response = api.put(url)
    assert response.status_code == 200
    assert response.json()["fulfillment"]["status"] == "cancelled"
    after = sandbox.order("shop1", order["orderId"])
    assert [line["fulfillableQuantity"] for line in after["lineItems"]] == [
        line["quantity"] for line in order["lineItems"]
    ]
    assert after["fulfillmentStatus"] in (None, "unfulfilled")
    assert api.put(url).status_code == 422
    tracking = orders_url(sandbox, path=f"fulfillments/{created['fulfillId']}/update_tracking")
    assert api.put(tracking, json={"fulfillment": {"trackingNumber": "X"}}).status_code == 422


def test_wrong_method_is_405(sandbox, api):
    assert api.get(orders_url(sandbox, path="fulfillments")).status_code == 405
    assert api.delete(orders_url(sandbox, path="orders")).status_code == 405


def test_write_fault_applies_the_write_but_answers_502(sandbox, api):
    order = _open_order(sandbox)
    sandbox.set_faults(write_error_rate=1.0)
    response = _create(api, sandbox, {"orderId": order["orderId"], "trackingNumber": "ONCE1"})

    assert response.status_code == 502
    assert response.json()["error"]
    sandbox.set_faults()
    listed = api.get(orders_url(sandbox, path=f"orders/{order['orderId']}/fulfillments")).json()["fulfillments"]
    assert [f["trackingNumber"] for f in listed] == ["ONCE1"]
    assert sandbox.stats("shop1")["write_faults_injected"] == 1
    assert sandbox.stats("shop1")["fulfillments_created"] == 1


def test_error_fault_on_a_write_changes_nothing(sandbox, api):
    order = _open_order(sandbox)
    sandbox.set_faults(error_rate=1.0, status=500)
    response = _create(api, sandbox, {"orderId": order["orderId"], "trackingNumber": "NEVER"})
    assert response.status_code == 500
    sandbox.set_faults()
    assert sandbox.fulfillments("shop1", order["orderId"]) == []
