"""Error texts OMA stores and shows carry no response body from a host a merchant pointed it at: a status code and a
fixed phrase (for Genstore, also the contract's documented `error` string, cleaned and capped). Otherwise an
internal service's answer would come back to the merchant through the error text."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.urls import reverse

from oma.channels.models import Channel
from oma.channels.services import channel_create, channel_poll
from oma.core.ratelimit import LocalTokenBucket
from oma.genstore.client import GenstoreClient
from oma.genstore.errors import GenstoreAuthError, GenstoreClientError, GenstoreError, GenstoreResponseError
from tests.admin.factories import StoreFactory
from tests.admin.world import merchant
from tests.channels.conftest import order_record, sync_orders
from tests.genstore.conftest import Reply, ScriptedServer
from tracking import polling
from tracking.models import CarrierAccount, Shipment
from tracking.polling import forget_transports, poll_due_shipments
from tracking.sandbox import numbers_for
from tracking.services import shipment_add

pytestmark = pytest.mark.django_db

SECRET = "redis_version:7.2.4 INTERNAL-ONLY"
API = "/api/202412"


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    scripted = ScriptedServer().start()
    yield scripted
    scripted.stop()


@pytest.fixture
def genstore(server) -> Iterator[GenstoreClient]:
    client = GenstoreClient(base_url=server.base_url, api_version="202412", access_token="t",
                            limiter=LocalTokenBucket(), limiter_key="k", bucket_capacity=40,
                            bucket_refill_per_second=2.0, max_retries=0, sleep=lambda _s: None)
    yield client
    client.close()


@pytest.fixture(autouse=True)
def operator_allows_the_test_server(settings) -> None:
    settings.OMA_MERCHANT_API_HOSTS = ["127.0.0.1"]


@pytest.fixture(autouse=True)
def fresh_carrier_sessions(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    bucket = LocalTokenBucket()
    monkeypatch.setattr(polling, "default_rate_limiter", lambda: bucket)
    forget_transports()
    yield
    forget_transports()


def _texts(exc: GenstoreError) -> str:
    return f"{exc} {exc.error_text or ''} {exc!r}"


@pytest.mark.parametrize("status", [400, 403, 404, 409, 500])
def test_a_genstore_error_that_is_not_json_carries_no_body(server, genstore, status):
    server.script(f"GET {API}/orders/1", Reply(status, raw=SECRET.encode()))
    with pytest.raises(GenstoreError) as info:
        genstore.get_order("1")
    assert "INTERNAL" not in _texts(info.value) and str(status) in str(info.value)
    assert info.value.error_text is None


def test_a_genstore_error_keeps_only_the_documented_error_string_cleaned_and_capped(server, genstore):
    server.script(f"GET {API}/orders/1", Reply(403, {"error": "Token revoked\x1b[31m\r\nby the shop owner" + "!" * 900,
                                                     "detail": SECRET, "message": SECRET}))
    with pytest.raises(GenstoreAuthError) as info:
        genstore.get_order("1")
    assert info.value.error_text.startswith("Token revoked[31m by the shop owner!")
    assert len(info.value.error_text) <= 300 and "\x1b" not in info.value.error_text
    assert "INTERNAL" not in _texts(info.value)


@pytest.mark.parametrize("body", [{"errors": SECRET}, {"message": SECRET}, {"error": {"nested": SECRET}},
                                  [SECRET]])
def test_a_genstore_error_of_another_shape_carries_nothing_of_it(server, genstore, body):
    server.script(f"GET {API}/orders/1", Reply(422, body))
    with pytest.raises(GenstoreError) as info:
        genstore.get_order("1")
    assert "INTERNAL" not in _texts(info.value)


@pytest.mark.parametrize(
    ("route", "reply", "call"),
    [
        (f"GET {API}/shops/info", Reply(200, raw=SECRET.encode()), lambda c: c.shop_info()),
        (f"GET {API}/shops/info", Reply(200, {"shop": SECRET}), lambda c: c.shop_info()),
        (f"GET {API}/orders/count", Reply(200, {"count": SECRET}), lambda c: c.count_orders()),
        (f"GET {API}/orders", Reply(200, {"orders": SECRET}), lambda c: next(c.iter_order_pages())),
        (f"GET {API}/orders/1", Reply(200, [SECRET]), lambda c: c.get_order("1")),
    ],
)
def test_genstore_response_errors_carry_no_payload_excerpt(server, genstore, route, reply, call):
    server.script(route, reply)
    with pytest.raises(GenstoreResponseError) as info:
        call(genstore)
    assert "INTERNAL" not in _texts(info.value)


def test_a_genstore_redirect_names_no_location(server, genstore):
    server.script(f"GET {API}/orders/1", Reply(302, {}, headers={"Location": f"http://10.0.0.1/{SECRET}"}))
    with pytest.raises(GenstoreClientError, match="redirect") as info:
        genstore.get_order("1")
    assert "INTERNAL" not in _texts(info.value) and "10.0.0.1" not in str(info.value)


def test_the_store_connect_form_shows_no_body_of_the_answer(client, server):
    client.force_login(merchant("leaky", StoreFactory(domain="mine.genmystore.com")))
    server.script(f"GET {API}/shops/info", Reply(401, raw=SECRET.encode()))
    response = client.post(reverse("admin:stores_store_connect"), {
        "domain": "leak.genmystore.com", "access_token": "t", "client_secret": "s", "api_base_url": server.base_url,
    })
    page = response.content.decode()
    assert response.status_code == 200 and "401" in page and "INTERNAL" not in page


def test_carrier_errors_stored_on_the_account_and_shipment_carry_no_body(server):
    store = StoreFactory(domain="carrier-leak.genmystore.com")
    server.script("POST /oauth/token", Reply(200, {"access_token": "tok", "expires_in": 3600}))
    server.script("POST /track/v1/trackingnumbers", Reply(400, raw=SECRET.encode()))
    account = CarrierAccount.objects.create(carrier="fedex", store=store, client_id="id", client_secret="secret",
                                           base_url=server.base_url)
    shipment = shipment_add(store=store, tracking_number=next(numbers_for("fedex", 1)), carrier="fedex",
                            source=Shipment.Source.MANUAL)
    poll_due_shipments(store=store, time_budget=10)
    account.refresh_from_db()
    shipment.refresh_from_db()
    assert server.seen("POST /track/v1/trackingnumbers")
    assert "400" in account.last_error + shipment.last_error
    assert "INTERNAL" not in account.last_error and "INTERNAL" not in shipment.last_error


def test_shipstation_errors_stored_on_the_channel_carry_no_body(server):
    store = StoreFactory(domain="ss-leak.genmystore.com")
    sync_orders(store, [order_record("5001")])
    server.script("GET /shipments", Reply(400, {"Message": SECRET, "ExceptionMessage": SECRET}))
    channel = channel_create(store=store, kind="shipstation", name="SS", base_url=server.base_url, api_key="k",
                             api_secret="s")
    channel_poll(channel=channel)
    channel = Channel.objects.get(pk=channel.pk)
    assert "400" in channel.last_error and "INTERNAL" not in channel.last_error
