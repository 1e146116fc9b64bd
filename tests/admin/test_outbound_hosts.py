"""A merchant cannot aim OMA's outbound calls at internal addresses: carrier accounts and channels take only the
integration's own API hosts (or the operator's OMA_MERCHANT_API_HOSTS); superusers may use any URL."""

from __future__ import annotations

import pytest
from django.urls import reverse

from oma.channels.models import Channel
from tests.admin.factories import StoreFactory
from tests.admin.world import merchant, superuser
from tracking.models import CarrierAccount

pytestmark = pytest.mark.django_db

INTERNAL = ("http://169.254.169.254/latest/meta-data", "http://127.0.0.1:6379", "https://localhost:5432",
            "https://apis.fedex.com.evil.example")


@pytest.fixture
def store():
    return StoreFactory(domain="hosts.genmystore.com")


@pytest.fixture
def merchant_client(client, store):
    client.force_login(merchant("hosts-merchant", store))
    return client


def _carrier_account(client, store, base_url: str):
    return client.post(reverse("admin:tracking_carrieraccount_add"), {
        "carrier": "fedex", "store": store.pk, "label": "mine", "client_id": "id", "client_secret": "secret",
        "api_key": "", "base_url": base_url, "rate_limit_requests": "", "rate_limit_per_seconds": "",
        "is_active": "on",
    })


def _channel(client, store, base_url: str):
    return client.post(reverse("admin:channels_channel_add"), {
        "store": store.pk, "name": "ShipStation", "kind": "shipstation", "source_names_text": "amazon",
        "base_url": base_url, "api_key": "key", "api_secret": "secret", "is_enabled": "on",
    })


@pytest.mark.parametrize("base_url", INTERNAL)
def test_a_merchants_carrier_account_cannot_point_at_another_host(merchant_client, store, base_url):
    response = _carrier_account(merchant_client, store, base_url)
    assert response.status_code == 200 and "own API hosts" in response.content.decode()
    assert not CarrierAccount.objects.exists()


@pytest.mark.parametrize("base_url", ["", "https://apis.fedex.com", "https://apis-sandbox.fedex.com"])
def test_a_merchants_carrier_account_may_use_the_carriers_own_hosts(merchant_client, store, base_url):
    response = _carrier_account(merchant_client, store, base_url)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert CarrierAccount.objects.get().base_url == base_url


def test_the_carriers_own_host_needs_https(merchant_client, store):
    response = _carrier_account(merchant_client, store, "http://apis.fedex.com")
    assert response.status_code == 200 and "https" in response.content.decode()


def test_hosts_the_operator_allows_are_open_to_merchants(merchant_client, store, settings):
    settings.OMA_MERCHANT_API_HOSTS = ["127.0.0.1"]
    response = _carrier_account(merchant_client, store, "http://127.0.0.1:8200")
    assert response.status_code == 302, response.content.decode()[:2000]


def test_a_superuser_may_use_any_host(client, store):
    client.force_login(superuser())
    assert _carrier_account(client, store, "http://127.0.0.1:8200").status_code == 302
    assert _channel(client, store, "http://127.0.0.1:8300").status_code == 302


@pytest.mark.parametrize("base_url", INTERNAL)
def test_a_merchants_channel_cannot_point_at_another_host(merchant_client, store, base_url):
    response = _channel(merchant_client, store, base_url)
    assert response.status_code == 200 and "own API hosts" in response.content.decode()
    assert not Channel.objects.exists()


def test_a_merchants_channel_may_use_the_platforms_own_host(merchant_client, store):
    response = _channel(merchant_client, store, "https://ssapi.shipstation.com")
    assert response.status_code == 302, response.content.decode()[:2000]
