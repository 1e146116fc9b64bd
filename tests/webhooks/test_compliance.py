"""The compliance topics: erase a customer, export a customer's data (downloadable in admin), erase a shop."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Permission, User

from oma.channels.models import ExternalOrder
from oma.channels.order_intake import external_orders_receive
from oma.channels.services import channel_create
from oma.orders.models import LineItem, Order, Refund
from oma.stores.models import Store, StoreMembership
from tests.admin.factories import ExternalOrderInputFactory
from tests.webhooks.payloads import CUSTOMER_EMAIL, OTHER_SECRET, OTHER_SHOP, SHOP, encode, order_json
from webhooks.models import CustomerDataExport, WebhookDelivery

pytestmark = pytest.mark.django_db
State = WebhookDelivery.State
OTHER_EMAIL = "someone.else@example.com"


@pytest.fixture
def three_orders(store, deliver):
    deliver(order_json("1001"))
    deliver(order_json("1002"))
    deliver(order_json("1003", email=OTHER_EMAIL))
    Refund.objects.create(store=store, order_id_text="1001", refund_id="r1", raw={"refundId": "r1",
                                                                                   "email": CUSTOMER_EMAIL})


def _redact_payload(order_ids: list[str], shop: str = SHOP) -> dict:
    return {"shopId": "77", "shopDomain": shop, "customer": {"id": "c-1", "email": CUSTOMER_EMAIL,
                                                             "phone": "+1 555 0100"}, "ordersToRedact": order_ids}


def test_customers_redact_erases_personal_data_on_the_listed_orders_only(store, three_orders, deliver):
    delivery = deliver(_redact_payload(["1001", "1002"]), topic="customers/redact")
    delivery.refresh_from_db()
    assert delivery.state == State.PROCESSED, delivery.last_error
    assert delivery.outcome == "redacted 2 orders, 1 refunds, 3 delivery bodies"
    for order in Order.objects.filter(order_id__in=["1001", "1002"]):
        assert order.email == ""
        text = json.dumps(order.raw)
        assert CUSTOMER_EMAIL not in text and "Jane" not in text and "555 0100" not in text and "Main St" not in text
        # What the merchant needs to run the business stays.
        assert order.raw["totalPrice"] == "11.00" and order.financial_status == "paid"
        assert order.line_items.count() == 2
    assert CUSTOMER_EMAIL not in json.dumps(Refund.objects.get(refund_id="r1").raw)
    untouched = Order.objects.get(order_id="1003")
    assert untouched.email == OTHER_EMAIL and untouched.raw["customer"]["firstName"] == "Jane"
    # Stored webhook bodies: those about the listed orders, and the redact request itself, are erased too.
    for stored in WebhookDelivery.objects.all():
        erased = stored.resource_id in ("1001", "1002") or stored.pk == delivery.pk
        assert (stored.redacted_at is not None) is erased, stored
        if erased:
            assert CUSTOMER_EMAIL not in stored.body and "Jane" not in stored.body
    assert OTHER_EMAIL in WebhookDelivery.objects.get(resource_id="1003").body


def test_customers_redact_erases_an_external_order_matched_only_by_the_customers_email(store, three_orders, deliver):
    channel = channel_create(store=store, kind="csv", name="Amazon", source_names=["amazon"])
    bought = external_orders_receive(channel=channel, orders=[
        ExternalOrderInputFactory(email=CUSTOMER_EMAIL.upper()),  # never created in Genstore: no orderId names it
        ExternalOrderInputFactory(email=OTHER_EMAIL),
    ])
    mine, theirs = ExternalOrder.objects.filter(pk__in=bought.new_ids).order_by("pk")

    delivery = deliver(_redact_payload(["1001"]), topic="customers/redact")

    delivery.refresh_from_db()
    assert delivery.state == State.PROCESSED, delivery.last_error
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.personal_data_erased_at is not None and (mine.email, mine.customer_name) == ("", "")
    assert CUSTOMER_EMAIL not in json.dumps(mine.content).lower()
    assert theirs.personal_data_erased_at is None and theirs.email == OTHER_EMAIL


def test_customer_data_request_produces_an_export_downloadable_in_admin(store, three_orders, deliver, admin_client):
    payload = {"shopId": "77", "shopDomain": SHOP, "customer": {"id": "c-1", "email": CUSTOMER_EMAIL},
               "ordersRequested": ["1001", "9999"]}
    delivery = deliver(payload, topic="customers/data_request")
    delivery.refresh_from_db()
    assert delivery.state == State.PROCESSED, delivery.last_error
    export = CustomerDataExport.objects.get()
    # The listed order, plus the other order under the same email; not the other customer's.
    assert sorted(order["orderId"] for order in export.data["orders"]) == ["1001", "1002"]
    assert export.data["ordersNotHeld"] == ["9999"]
    assert export.orders_found == 2 and export.customer_id == "c-1" and export.delivery == delivery

    changelist = admin_client.get("/admin/webhooks/customerdataexport/")
    assert changelist.status_code == 200
    download_url = f"/admin/webhooks/customerdataexport/{export.pk}/download/"
    assert download_url in changelist.content.decode()
    response = admin_client.get(download_url)
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith('attachment; filename="customer-c-1-')
    data = json.loads(response.content)
    first = next(order for order in data["orders"] if order["orderId"] == "1001")
    assert first["email"] == CUSTOMER_EMAIL
    assert first["genstoreOrder"]["shippingAddress"]["address1"] == "1 Main St"
    assert [line["id"] for line in first["lineItems"]] == ["1001-1", "1001-2"]
    assert first["refunds"] == [{"refundId": "r1", "amount": None, "currency": None, "createdAt": None}]

    # Replaying the request refreshes the same export rather than adding one.
    from webhooks.processing import deliveries_process

    WebhookDelivery.objects.filter(pk=delivery.pk).update(state=State.RECEIVED)
    deliveries_process(delivery_ids=[delivery.pk])[delivery.pk]
    assert CustomerDataExport.objects.count() == 1


def test_exports_of_another_store_are_not_downloadable_by_its_non_members(store, other_store, client):
    export = CustomerDataExport.objects.create(store=other_store, customer_id="c-9", data={"orders": []})
    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_customerdataexport"))
    StoreMembership.objects.create(user=staff, store=store)
    client.force_login(staff)
    response = client.get(f"/admin/webhooks/customerdataexport/{export.pk}/download/")
    assert response.status_code == 404
    assert "c-9" not in client.get("/admin/webhooks/customerdataexport/").content.decode()


def test_shop_redact_deletes_the_store_and_all_its_data(store, other_store, three_orders, deliver):
    deliver(order_json("2001"), shop=OTHER_SHOP, secret=OTHER_SECRET)
    delivery = deliver({"shopId": "77", "shopDomain": SHOP}, topic="shop/redact")
    delivery.refresh_from_db()
    assert delivery.state == State.PROCESSED, delivery.last_error
    assert not Store.objects.filter(domain=SHOP).exists()
    assert not Order.objects.exclude(store=other_store).exists()
    assert not LineItem.objects.exclude(order__store=other_store).exists()
    assert not Refund.objects.exists()
    # Only the shop/redact delivery remains of that shop, as the record of the erasure (it names no customer).
    assert list(WebhookDelivery.objects.filter(shop_domain=SHOP)) == [delivery]
    assert delivery.store is None and delivery.outcome.startswith("shop erased:")
    # The other shop is untouched.
    assert Order.objects.filter(store=other_store).count() == 1
    assert WebhookDelivery.objects.filter(store=other_store).count() == 1


def test_compliance_payload_naming_another_shop_erases_nothing(store, three_orders, deliver):
    delivery = deliver({"shopId": "77", "shopDomain": OTHER_SHOP}, topic="shop/redact")
    delivery.refresh_from_db()
    assert delivery.state == State.FAILED
    assert "another shop" in delivery.last_error
    assert Order.objects.filter(store=store).count() == 3


def test_compliance_topics_need_a_valid_signature(store, three_orders, post_webhook):
    response = post_webhook({"shopId": "77", "shopDomain": SHOP}, topic="shop/redact", secret=OTHER_SECRET)
    assert response.status_code == 401
    assert Store.objects.filter(domain=SHOP).exists()


def test_redacted_deliveries_replay_harmlessly(store, deliver, django_capture_on_commit_callbacks):
    deliver(order_json("1001", version=2))
    deliver(_redact_payload(["1001"]), topic="customers/redact")
    from webhooks.replay import deliveries_replay

    with django_capture_on_commit_callbacks(execute=True):
        replayed = deliveries_replay(deliveries=WebhookDelivery.objects.all())
    assert replayed == 2
    assert set(WebhookDelivery.objects.values_list("state", flat=True)) == {State.PROCESSED}
    order = Order.objects.get(order_id="1001")
    assert order.email == "" and CUSTOMER_EMAIL not in json.dumps(order.raw)
    assert encode(order_json("1001", version=2)) not in {d.body.encode() for d in WebhookDelivery.objects.all()}
