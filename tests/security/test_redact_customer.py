"""customers/redact leaves nothing of the customer behind (issue 13, item 2).

Every test drives the real path: signed deliveries posted to the Genstore webhook view (and the channel webhook
view), processed inline after the commit as the worker would, against the real database.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client

from oma.channels.connectors.webhook import sign as channel_sign
from oma.channels.models import Channel, ExternalShipment
from oma.orders.models import Order, Refund, SyncRun
from oma.orders.services import orders_sweep
from oma.stores.models import Store
from tests.admin.factories import ShipmentFactory, TrackingEventFactory
from tests.orders import conftest as order_fixtures
from tests.orders.conftest import CraftedGenstore
from tests.webhooks import conftest as webhook_fixtures
from tests.webhooks.payloads import BASE_TIME, CUSTOMER_EMAIL, SECRET, SHOP, order_json
from tracking.models import Shipment, TrackingEvent
from webhooks.models import CustomerDataExport, WebhookDelivery
from webhooks.replay import deliveries_replay

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]
State = WebhookDelivery.State

PHONE = "+1 555 0100"
OTHER_EMAIL = "someone.else@example.com"
# Strings that are the customer's and must be found nowhere after the redact.
TRACES = (CUSTOMER_EMAIL, "jane.doe.customer", "Jane", "Doe", "555 0100", "5550100", "Main St", "Springfield",
          "203.0.113.7", "Mozilla", "Elm Street", "c-1")

Deliver = Callable[..., WebhookDelivery]

# The webhook tests' fixtures: signed POSTs to the view, processed inline after the commit.
_in_process_webhook_settings = webhook_fixtures._in_process_webhook_settings
post_webhook = webhook_fixtures.post_webhook
deliver = webhook_fixtures.deliver
# A local Genstore answering GET /orders with what a test crafts (sweeps, and the re-reads of refunds/create).
crafted_genstore = order_fixtures.crafted_genstore


def _traces_in(value: Any) -> list[str]:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return [trace for trace in TRACES if trace in text]


@pytest.fixture
def store(db: None, crafted_genstore: CraftedGenstore) -> Store:
    """The shop of the webhook tests, its API on a local Genstore answering what a test crafts."""
    store = crafted_genstore.store(domain=SHOP)
    store.client_secret = SECRET
    store.save()
    return store


def _redact(order_ids: list[str], customer_id: str = "c-1") -> dict[str, Any]:
    return {"shopId": "77", "shopDomain": SHOP, "customer": {"id": customer_id, "email": CUSTOMER_EMAIL,
                                                             "phone": PHONE}, "ordersToRedact": order_ids}


def _data_request(order_ids: list[str], *, customer_id: str = "c-1", email: str = CUSTOMER_EMAIL) -> dict[str, Any]:
    return {"shopId": "77", "shopDomain": SHOP, "customer": {"id": customer_id, "email": email, "phone": PHONE},
            "ordersRequested": order_ids, "dataRequest": {"id": "dr-1"}}


def _order_with_every_kind_of_personal_data(order_id: str, *, version: int = 1) -> dict[str, Any]:
    """An order as Genstore may send it once protected fields are approved, personal data under keys no deny-list
    names too."""
    payload = order_json(order_id, version=version)
    order = payload["order"]
    order["shippingAddress"].update({"countryCode": "US", "province": "IL", "phone": PHONE, "zip": "62704"})
    order["billingAddress"] = {"name": "Jane Doe", "address1": "1 Main St", "countryCode": "US"}
    order["recipientName"] = "Jane Doe"
    order["contactDetails"] = {"mobile": PHONE, "mail": CUSTOMER_EMAIL}
    order["clientDetails"] = {"browserIp": "203.0.113.7", "userAgent": "Mozilla/5.0"}
    order["landingSite"] = f"/?utm_source=mail&ref={CUSTOMER_EMAIL}"
    order["noteAttributes"] = [{"name": "gift message", "value": "Love, Jane"}]
    order["shippingLines"] = [{"title": "Standard", "phone": PHONE, "deliveryInstructions": "12 Elm Street"}]
    order["lineItems"][0]["properties"] = [{"name": "Engraving", "value": "Jane Doe"}]
    order["fulfillments"] = [{
        "fulfillId": f"F{order_id}", "orderId": order_id, "status": "success", "shipmentStatus": "delivered",
        "trackingNumber": f"1ZRED{order_id}", "trackingCompany": "UPS", "createdAt": BASE_TIME.isoformat(),
        "updatedAt": BASE_TIME.isoformat(), "lineItems": [{"id": f"{order_id}-1", "quantity": 1}],
        "destination": {"name": "Jane Doe", "address1": "1 Main St", "city": "Springfield"},
    }]
    return payload


def _refund_with_personal_data(order_id: str) -> dict[str, Any]:
    """A refund as Genstore's newer API describes it: customerId, a note and return shipping come with it."""
    return {"refund": {
        "refundId": "r-1", "orderId": order_id, "amount": "5.00", "currency": "USD", "customerId": "c-1",
        "note": "Jane says it broke", "createTime": BASE_TIME.isoformat(), "rightsType": "1",
        "shipping": {"name": "Jane Doe", "address": "1 Main St", "phone": PHONE},
        "lineItems": [{"lineItemId": f"{order_id}-1", "quantity": 1, "subtotal": "5.00",
                       "rightsReason": "Jane Doe moved to 12 Elm Street"}],
    }}


# --- the customer's data export --------------------------------------------------------------------------------------


def test_customers_redact_deletes_the_customers_earlier_data_export_and_its_download(
    store: Store, deliver: Deliver, admin_client: Client
) -> None:
    deliver(order_json("1001"))
    deliver(order_json("1003", email=OTHER_EMAIL))
    deliver(_data_request(["1001"]), topic="customers/data_request")
    # Another customer of the same household (same phone): their export is theirs, and stays.
    deliver(_data_request(["1003"], customer_id="c-2", email=OTHER_EMAIL), topic="customers/data_request")
    export = CustomerDataExport.objects.get(customer_id="c-1")
    download = f"/admin/webhooks/customerdataexport/{export.pk}/download/"
    assert CUSTOMER_EMAIL in admin_client.get(download).content.decode()

    redact = deliver(_redact(["1001"]), topic="customers/redact")
    redact.refresh_from_db()
    assert redact.state == State.PROCESSED, redact.last_error
    assert not CustomerDataExport.objects.filter(customer_id="c-1").exists()
    response = admin_client.get(download)
    assert response.status_code == 404
    assert CUSTOMER_EMAIL not in admin_client.get("/admin/webhooks/customerdataexport/").content.decode()
    # Another customer's export stays.
    assert CustomerDataExport.objects.get().customer_id == "c-2"


# --- stored webhook bodies -------------------------------------------------------------------------------------------


def test_customers_redact_erases_the_earlier_data_request_delivery_body_but_keeps_its_row(
    store: Store, deliver: Deliver
) -> None:
    deliver(order_json("1001"))
    request = deliver(_data_request(["1001"]), topic="customers/data_request")
    other = deliver(_data_request(["1003"], customer_id="c-2", email=OTHER_EMAIL), topic="customers/data_request")
    before = WebhookDelivery.objects.values("pk", "topic", "dedupe_key", "received_at", "webhook_id").get(
        pk=request.pk)

    deliver(_redact(["1001"]), topic="customers/redact")
    request.refresh_from_db()
    assert _traces_in(request.body) == []
    assert request.redacted_at is not None
    # The row stays for the dedupe audit: id, topic, time and hash.
    assert WebhookDelivery.objects.values("pk", "topic", "dedupe_key", "received_at", "webhook_id").get(
        pk=request.pk) == before
    assert json.loads(request.body)["ordersRequested"] == ["1001"]
    other.refresh_from_db()
    assert OTHER_EMAIL in other.body and other.redacted_at is None


def test_customers_redact_keeps_only_allow_listed_keys_in_the_orders_stored_delivery_bodies(
    store: Store, deliver: Deliver
) -> None:
    deliver(_order_with_every_kind_of_personal_data("1001"))
    deliver(_refund_with_personal_data("1001"), topic="refunds/create")

    deliver(_redact(["1001"]), topic="customers/redact")
    for stored in WebhookDelivery.objects.filter(resource_id="1001"):
        assert stored.redacted_at is not None, stored.topic
        assert _traces_in(stored.body) == [], stored.topic
    order_delivery = WebhookDelivery.objects.get(topic="orders/update", resource_id="1001")
    kept = json.loads(order_delivery.body)["order"]
    assert (kept["orderId"], kept["totalPrice"], kept["lineItems"][0]["sku"]) == ("1001", "11.00", "SKU-A")
    assert kept["fulfillments"][0]["trackingNumber"] == "1ZRED1001"


# --- the order mirror ------------------------------------------------------------------------------------------------


def test_customers_redact_keeps_only_allow_listed_keys_of_the_order_json_and_clears_its_email(
    store: Store, deliver: Deliver
) -> None:
    deliver(_order_with_every_kind_of_personal_data("1001"))
    deliver(_redact(["1001"]), topic="customers/redact")
    order = Order.objects.get(order_id="1001")
    assert _traces_in(order.raw) == []
    assert order.email == ""
    # What the mirror, the unified status, pushes and delivery estimates read stays.
    assert (order.raw["orderId"], order.raw["name"], order.raw["totalPrice"], order.raw["currency"]) == (
        "1001", "#1001", "11.00", "USD")
    assert order.raw["financialStatus"] == "paid" and order.raw["updatedAt"]
    assert [(line["id"], line["sku"], line["quantity"]) for line in order.raw["lineItems"]] == [
        ("1001-1", "SKU-A", "1"), ("1001-2", "SKU-B", 2)]
    assert order.raw["fulfillments"][0]["trackingNumber"] == "1ZRED1001"
    assert order.raw["shippingAddress"] == {"countryCode": "US"}
    assert order.line_items.count() == 2 and order.genstore_fulfillments.get().tracking_number == "1ZRED1001"


def test_customers_redact_keeps_only_allow_listed_keys_of_the_refund_json(store: Store, deliver: Deliver) -> None:
    deliver(order_json("1001"))
    deliver(_refund_with_personal_data("1001"), topic="refunds/create")
    deliver(_redact(["1001"]), topic="customers/redact")
    refund = Refund.objects.get(refund_id="r-1")
    assert _traces_in(refund.raw) == []
    assert (refund.raw["refundId"], refund.raw["orderId"], refund.raw["amount"]) == ("r-1", "1001", "5.00")
    assert refund.raw["lineItems"] == [{"lineItemId": "1001-1", "quantity": 1, "subtotal": "5.00"}]


def test_a_refund_after_customers_redact_is_stored_with_allow_listed_keys_only(store: Store, deliver: Deliver) -> None:
    deliver(order_json("1001"))
    deliver(_redact(["1001"]), topic="customers/redact")
    late = deliver(_refund_with_personal_data("1001"), topic="refunds/create")
    late.refresh_from_db()
    assert late.state == State.PROCESSED, late.last_error
    refund = Refund.objects.get(refund_id="r-1")
    assert refund.raw["amount"] == "5.00" and _traces_in(refund.raw) == []


# --- parcels ---------------------------------------------------------------------------------------------------------


def test_customers_redact_clears_the_signer_and_the_scan_texts_and_places_of_the_orders_parcels(
    store: Store, deliver: Deliver
) -> None:
    deliver(order_json("1001"))
    deliver(order_json("1003", email=OTHER_EMAIL))
    mine = ShipmentFactory(order=Order.objects.get(order_id="1001"), store=store, status="delivered",
                           signed_by="J DOE", raw_text="Delivered, signed by J DOE, 12 Elm Street")
    event = TrackingEventFactory(shipment=mine, raw_text="Delivered to 12 Elm Street, signed by J DOE",
                                 location="Springfield, IL 62704")
    theirs = ShipmentFactory(order=Order.objects.get(order_id="1003"), store=store, signed_by="R ROE")
    their_event = TrackingEventFactory(shipment=theirs, location="Shelbyville, IL")

    key = event.key
    deliver(_redact(["1001"]), topic="customers/redact")
    mine.refresh_from_db()
    event.refresh_from_db()
    assert (mine.signed_by, mine.raw_text) == ("", "")
    assert (event.raw_text, event.location) == ("", "")
    # The scan stays (its time and status), and so does its key: a later poll does not store it again.
    assert event.status == "in_transit" and event.key == key
    assert TrackingEvent.objects.filter(shipment=mine).count() == 1
    theirs.refresh_from_db()
    their_event.refresh_from_db()
    assert theirs.signed_by == "R ROE" and their_event.location == "Shelbyville, IL"


def test_customers_redact_erases_what_sales_channels_reported_about_the_orders_parcels(
    store: Store, deliver: Deliver, client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    deliver(order_json("1001"))
    out = io.StringIO()
    call_command("channel", "add", "--store", store.domain, "--kind", "webhook", "--name", "Marketplace", stdout=out)
    channel = Channel.objects.get(slug=json.loads(out.getvalue())["slug"])
    body = json.dumps({"externalOrderId": "1001", "shipments": [{
        "trackingNumber": "1Z999AA10123456784", "carrier": "ups", "lineItems": [{"sku": "SKU-A", "quantity": 1}],
        "shipTo": {"name": "Jane Doe", "street": "1 Main St", "city": "Springfield", "phone": PHONE},
        "recipientEmail": CUSTOMER_EMAIL,
    }]}).encode()
    timestamp = int(time.time())
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(timestamp),
               "webhook-signature": channel_sign(secret=channel.signing_secret, msg_id="msg_1", timestamp=timestamp,
                                                 body=body)}
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/webhooks/channels/{channel.slug}/", data=body, content_type="application/json",
                                headers=headers)
    assert response.status_code == 200, response.content
    report = ExternalShipment.objects.get()
    assert report.state == ExternalShipment.State.MATCHED and "Jane" in json.dumps(report.raw)
    channel_delivery = WebhookDelivery.objects.get(topic="channels/shipments")

    deliver(_redact(["1001"]), topic="customers/redact")
    report.refresh_from_db()
    channel_delivery.refresh_from_db()
    assert _traces_in(report.raw) == []
    assert report.raw["trackingNumber"] == "1Z999AA10123456784"
    assert _traces_in(channel_delivery.body) == [] and channel_delivery.redacted_at is not None
    assert Shipment.objects.get().tracking_number == "1Z999AA10123456784"


# --- twice, and later versions ---------------------------------------------------------------------------------------


def test_customers_redact_processed_twice_leaves_the_same_erased_state(
    store: Store, deliver: Deliver, django_capture_on_commit_callbacks: Any
) -> None:
    deliver(_order_with_every_kind_of_personal_data("1001"))
    request = deliver(_data_request(["1001"]), topic="customers/data_request")
    shipment = ShipmentFactory(order=Order.objects.get(order_id="1001"), store=store, signed_by="J DOE")
    redact = deliver(_redact(["1001"]), topic="customers/redact")

    def erased_state() -> dict[str, Any]:
        order = Order.objects.get(order_id="1001")
        return {
            "order": (order.email, order.raw, order.payload_hash, order.personal_data_erased_at),
            "bodies": sorted(WebhookDelivery.objects.values_list("pk", "body")),
            "exports": CustomerDataExport.objects.count(),
            "signed_by": Shipment.objects.get(pk=shipment.pk).signed_by,
        }

    first = erased_state()
    assert _traces_in(first) == [] and first["exports"] == 0
    with django_capture_on_commit_callbacks(execute=True):
        assert deliveries_replay(deliveries=WebhookDelivery.objects.filter(pk=redact.pk)) == 1
    redact.refresh_from_db()
    assert redact.state == State.PROCESSED, redact.last_error
    assert erased_state() == first
    assert WebhookDelivery.objects.filter(pk=request.pk).exists()


def test_an_order_update_after_customers_redact_does_not_bring_the_personal_data_back(
    store: Store, deliver: Deliver
) -> None:
    deliver(_order_with_every_kind_of_personal_data("1001"))
    deliver(_redact(["1001"]), topic="customers/redact")
    # A newer version that still carries the customer (Genstore redacts on its own schedule).
    update = deliver(_order_with_every_kind_of_personal_data("1001", version=5))
    update.refresh_from_db()
    assert update.state == State.PROCESSED, update.last_error
    order = Order.objects.get(order_id="1001")
    assert order.raw["totalPrice"] == "15.00"  # the new version was taken...
    assert order.email == "" and _traces_in(order.raw) == []  # ...without the customer


def test_a_sweep_after_customers_redact_does_not_bring_the_personal_data_back(
    store: Store, deliver: Deliver, crafted_genstore: CraftedGenstore
) -> None:
    deliver(_order_with_every_kind_of_personal_data("1001"))
    deliver(_redact(["1001"]), topic="customers/redact")
    erased = Order.objects.get(order_id="1001")

    # The same version read again, and then a later one (a note changed), both still with the customer in them.
    crafted_genstore.orders = [_order_with_every_kind_of_personal_data("1001")["order"]]
    run = orders_sweep(store=store, kind=SyncRun.Kind.FULL)
    assert run.state == SyncRun.State.SUCCEEDED, run.error_message
    assert (run.unchanged, run.updated) == (1, 0)
    assert Order.objects.get(order_id="1001").raw == erased.raw

    later = _order_with_every_kind_of_personal_data("1001", version=7)["order"]
    later["updatedAt"] = (BASE_TIME + timedelta(days=1)).isoformat()
    crafted_genstore.orders = [later]
    run = orders_sweep(store=store, kind=SyncRun.Kind.FULL)
    assert run.state == SyncRun.State.SUCCEEDED, run.error_message
    assert run.updated == 1
    order = Order.objects.get(order_id="1001")
    assert order.raw["totalPrice"] == "17.00"
    assert order.email == "" and _traces_in(order.raw) == []
