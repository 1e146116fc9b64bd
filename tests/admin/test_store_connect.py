"""Connecting a store from the admin form: verify the token, subscribe to webhooks, import the orders."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.urls import reverse

from oma.orders.models import Order
from oma.stores.models import Store, StoreMembership
from tests.admin.factories import StoreFactory
from tests.admin.world import merchant
from tests.genstore_sandbox import SANDBOX_SECRET, SANDBOX_TOKEN, start_sandbox

pytestmark = pytest.mark.django_db
CONNECT = "admin:stores_store_connect"
WEBHOOK_ADDRESS = "http://127.0.0.1:8000/webhooks/genstore/"


@pytest.fixture
def sandbox() -> Iterator:
    sandbox = start_sandbox(orders=30, seed=3)
    yield sandbox
    sandbox.stop()


@pytest.fixture(autouse=True)
def sandbox_host_allowed(settings):
    settings.OMA_MERCHANT_API_HOSTS = ["*.genmystore.com", "127.0.0.1"]


@pytest.fixture
def merchant_client(client, db):
    user = merchant("newbie", StoreFactory(domain="first.genmystore.com"))
    client.force_login(user)
    client.user = user
    return client


def _form(sandbox, **overrides) -> dict:
    data = {
        "domain": sandbox.domain_for("shop1"),
        "access_token": SANDBOX_TOKEN,
        "client_secret": SANDBOX_SECRET,
        "api_base_url": sandbox.base_url_for("shop1"),
        "register_webhooks": "on",
        "webhook_address": WEBHOOK_ADDRESS,
        "start_backfill": "on",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def test_connect_verifies_subscribes_and_imports(merchant_client, sandbox, eager_celery,
                                                 django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = merchant_client.post(reverse(CONNECT), _form(sandbox))
    store = Store.objects.get(domain=sandbox.domain_for("shop1"))
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:stores_store_change", args=[store.pk])
    assert store.access_token == SANDBOX_TOKEN and store.genstore_shop_id
    assert StoreMembership.objects.filter(user=merchant_client.user, store=store).exists()
    topics = {w["topic"] for w in sandbox.webhook_subscriptions("shop1")}
    assert {"orders/create", "orders/cancelled"} <= topics
    assert {w["address"] for w in sandbox.webhook_subscriptions("shop1")} == {WEBHOOK_ADDRESS}
    assert Order.objects.filter(store=store).count() == 30  # the full backfill ran
    # The merchant now sees the new store's orders.
    page = merchant_client.get(reverse("admin:orders_order_changelist"))
    assert page.context["cl"].result_count == 30


def test_a_bad_token_saves_nothing(merchant_client, sandbox):
    response = merchant_client.post(reverse(CONNECT), _form(sandbox, access_token="wrong-token"))
    assert response.status_code == 200
    assert "did not accept" in response.content.decode()
    assert not Store.objects.filter(domain=sandbox.domain_for("shop1")).exists()
    assert sandbox.webhook_subscriptions("shop1") == []


def test_a_merchant_cannot_take_over_another_accounts_store(merchant_client, sandbox):
    taken = StoreFactory(domain=sandbox.domain_for("shop1"), access_token="theirs")
    response = merchant_client.post(reverse(CONNECT), _form(sandbox))
    assert response.status_code == 200
    assert "already connected" in response.content.decode()
    taken.refresh_from_db()
    assert taken.access_token == "theirs"


def test_the_add_button_leads_to_the_connect_form(merchant_client):
    response = merchant_client.get(reverse("admin:stores_store_add"))
    assert response.status_code == 302 and response["Location"] == reverse(CONNECT)
    assert merchant_client.get(reverse(CONNECT)).status_code == 200


def test_a_merchant_cannot_aim_the_api_at_an_arbitrary_host(merchant_client, sandbox, settings):
    settings.OMA_MERCHANT_API_HOSTS = ["*.genmystore.com"]
    response = merchant_client.post(reverse(CONNECT), _form(sandbox, api_base_url="http://169.254.169.254/latest"))
    assert response.status_code == 200
    assert "own API hosts (*.genmystore.com)" in response.content.decode()
    assert not Store.objects.filter(domain=sandbox.domain_for("shop1")).exists()
    store = Store.objects.get(domain="first.genmystore.com")
    page = merchant_client.get(reverse("admin:stores_store_change", args=[store.pk])).content.decode()
    assert 'name="api_base_url"' not in page
