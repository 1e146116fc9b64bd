"""The push list in admin: what was pushed and why not, push again, and only the user's own stores."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from oma.fulfillment.models import FulfillmentPush
from oma.fulfillment.services.push import shipment_push
from oma.stores.models import Store, StoreMembership
from tests.fulfillment.conftest import add_shipment, open_orders

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

URL = "/admin/fulfillment/fulfillmentpush/"


def test_list_detail_and_push_again(sandbox, store, redis_client):
    orders = open_orders(store)
    ok = add_shipment(store, orders[0])
    shipment_push(shipment_id=ok.pk)
    line = orders[1].line_items.first()
    line.requires_shipping = False
    line.save(update_fields=["requires_shipping"])
    skipped = add_shipment(store, orders[1], [(line, 1)])
    shipment_push(shipment_id=skipped.pk)
    admin = get_user_model().objects.create_superuser("root", password="pw")
    browser = Client()
    browser.force_login(admin)

    page = browser.get(URL)
    assert page.status_code == 200
    body = page.content.decode()
    assert ok.tracking_number in body and skipped.tracking_number in body
    assert "no item in this shipment needs shipping" in body
    assert 'href="/admin/fulfillment/fulfillmentpush/reconcile/"' in body

    push = FulfillmentPush.objects.get(shipment=ok)
    detail = browser.get(f"{URL}{push.pk}/change/")
    assert detail.status_code == 200
    assert f"created fulfillment {push.fulfill_id}" in detail.content.decode()

    skipped_push = FulfillmentPush.objects.get(shipment=skipped)
    response = browser.post(URL, {"action": "push_again", "_selected_action": [skipped_push.pk]})
    assert response.status_code == 302
    skipped_push.refresh_from_db()
    assert (skipped_push.state, skipped_push.state_reason) == (FulfillmentPush.State.PENDING, "retry requested")
    assert skipped_push.queued_at is not None


def test_a_merchant_sees_only_their_stores_pushes(sandbox, store, redis_client):
    shipment = add_shipment(store, open_orders(store)[0])
    shipment_push(shipment_id=shipment.pk)
    other = Store.objects.create(domain="other.genmystore.com", access_token="t", client_secret="s")
    user = get_user_model().objects.create_user("merchant", password="pw", is_staff=True)
    StoreMembership.objects.create(user=user, store=other)
    user.user_permissions.add(Permission.objects.get(codename="view_fulfillmentpush"))
    browser = Client()
    browser.force_login(user)

    page = browser.get(URL)
    assert page.status_code == 200
    assert shipment.tracking_number not in page.content.decode()
    push = FulfillmentPush.objects.get(shipment=shipment)
    assert browser.get(f"{URL}{push.pk}/change/").status_code in (302, 404)
