"""Connecting a store: the domain must be a Genstore shop domain (`<label>.genmystore.com`, or a host the operator
allows), and the shop Genstore says the token belongs to must be that very domain (no squatting another shop's
domain with one's own token). Checked by the service, so the admin form and `connect_store` both get it."""

from __future__ import annotations

from collections.abc import Iterator
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from oma.stores.models import Store
from oma.stores.services import StoreConnectRefused, store_connect
from tests.admin.factories import StoreFactory
from tests.admin.world import merchant
from tests.genstore_sandbox import SANDBOX_SECRET, SANDBOX_TOKEN, start_sandbox

pytestmark = pytest.mark.django_db


@pytest.fixture
def sandbox() -> Iterator:
    sandbox = start_sandbox(orders=1, shops=("shop1", "shop2"))
    yield sandbox
    sandbox.stop()


@pytest.fixture(autouse=True)
def sandbox_host_allowed(settings):
    settings.OMA_MERCHANT_API_HOSTS = ["127.0.0.1"]


@pytest.mark.parametrize(
    "domain",
    ["localhost:8100#", "localhost", "127.0.0.1:8100", "shop1.genmystore.com:8100", "shop1.genmystore.com#x",
     "shop1.genmystore.com?x", "x@shop1.genmystore.com", "a.b.genmystore.com", "-shop.genmystore.com",
     "shop-.genmystore.com", "sh_op.genmystore.com", ".genmystore.com", "genmystore.com",
     "shop1.genmystore.com.evil.example", "shop1.genmystore.com\\@evil", "x" * 64 + ".genmystore.com",
     "shop 1.genmystore.com", "shöp.genmystore.com"],
)
def test_store_connect_refuses_a_domain_that_is_not_a_genstore_shop_domain(domain):
    with pytest.raises(StoreConnectRefused, match=r"genmystore\.com"):
        store_connect(domain=domain, access_token="t", client_secret="s", verify=False)
    assert not Store.objects.exists()


@pytest.mark.parametrize("domain", ["shop1.genmystore.com", "SHOP-1.GenMyStore.com", "https://s1.genmystore.com/admin",
                                    "a" * 63 + ".genmystore.com"])
def test_store_connect_takes_a_plain_shop_domain(domain):
    result = store_connect(domain=domain, access_token="t", client_secret="s", verify=False)
    assert result.store.resolved_api_base_url == f"https://{result.store.domain}"


def test_an_operator_allowed_host_may_be_a_store_domain_and_is_its_own_api_host(settings):
    settings.OMA_MERCHANT_API_HOSTS = ["*.staging.example"]
    result = store_connect(domain="shop1.staging.example", access_token="t", client_secret="s", verify=False)
    assert result.store.resolved_api_base_url == "https://shop1.staging.example"


def test_a_stored_domain_never_yields_an_api_address_on_another_host():
    store = Store(domain="localhost:8100#")
    with pytest.raises(ValueError, match=r"genmystore\.com"):
        store.resolved_api_base_url  # noqa: B018


def test_store_connect_refuses_a_token_of_another_shop(sandbox):
    # The token is shop1's (the sandbox answers shop1.genmystore.com); the merchant claims shop2's domain.
    with pytest.raises(StoreConnectRefused, match=r"shop1\.genmystore\.com"):
        store_connect(domain="shop2.genmystore.com", access_token=SANDBOX_TOKEN, client_secret=SANDBOX_SECRET,
                      api_base_url=sandbox.base_url_for("shop1"))
    assert not Store.objects.exists()


def test_store_connect_accepts_the_shops_own_domain(sandbox):
    result = store_connect(domain="https://SHOP1.genmystore.com/", access_token=SANDBOX_TOKEN,
                           client_secret=SANDBOX_SECRET, api_base_url=sandbox.base_url_for("shop1"))
    assert result.store.domain == "shop1.genmystore.com" and result.verified_shop_name


def test_the_connect_form_shows_a_squatting_attempt_and_saves_nothing(client, sandbox):
    client.force_login(merchant("squatter", StoreFactory(domain="mine.genmystore.com")))
    response = client.post(reverse("admin:stores_store_connect"), {
        "domain": "shop2.genmystore.com", "access_token": SANDBOX_TOKEN, "client_secret": SANDBOX_SECRET,
        "api_base_url": sandbox.base_url_for("shop1"),
    })
    assert response.status_code == 200
    assert "shop1.genmystore.com" in response.content.decode()
    assert not Store.objects.filter(domain="shop2.genmystore.com").exists()


def test_the_connect_form_refuses_a_bad_domain_before_any_request(client, sandbox):
    client.force_login(merchant("typo", StoreFactory(domain="mine.genmystore.com")))
    response = client.post(reverse("admin:stores_store_connect"), {
        "domain": "localhost:8100#", "access_token": SANDBOX_TOKEN, "client_secret": SANDBOX_SECRET,
        "api_base_url": sandbox.base_url_for("shop1"),
    })
    assert response.status_code == 200 and "genmystore.com" in response.content.decode()
    assert not Store.objects.filter(domain__startswith="localhost").exists()
    assert sandbox.stats("shop1")["requests"] == 0


def test_connect_store_command_refuses_a_token_of_another_shop(sandbox):
    with pytest.raises(CommandError, match=r"shop1\.genmystore\.com"):
        call_command("connect_store", domain="shop2.genmystore.com", access_token=SANDBOX_TOKEN,
                     client_secret=SANDBOX_SECRET, api_base_url=sandbox.base_url_for("shop1"), stdout=StringIO())
    assert not Store.objects.exists()
