"""A merchant can aim no outbound request at loopback, private or link-local addresses, through any form, any use
of what a form saved, or any redirect: a real listener on 127.0.0.1 (and ::1) must receive no connection at all.

Only the network edge is faked: socket.getaddrinfo answers 127.0.0.1 for a few public-looking names (a merchant
who controls DNS can do that).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from oma.channels.connectors.base import PolledOrder, PollStats
from oma.channels.connectors.shipstation import CONNECTOR as SHIPSTATION
from oma.channels.models import Channel
from oma.channels.services import channel_poll
from oma.core.ratelimit import LocalTokenBucket
from oma.stores.models import Store
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

# Public-looking names a merchant's DNS points at 127.0.0.1.
REBOUND_NAMES = ("loopback.genmystore.com", "apis.fedex.com", "ssapi.shipstation.com")


class Listener:
    """Accepts TCP connections on 127.0.0.1 (and ::1 when the machine has IPv6) and counts them."""

    def __init__(self) -> None:
        self.accepted: list[tuple[str, int]] = []
        self._sockets: list[socket.socket] = []
        v4 = socket.create_server(("127.0.0.1", 0))
        self.port = v4.getsockname()[1]
        self._sockets.append(v4)
        self.port6: int | None = None
        try:
            v6 = socket.create_server(("::1", 0), family=socket.AF_INET6)
        except OSError:
            v6 = None
        if v6 is not None:
            self.port6 = v6.getsockname()[1]
            self._sockets.append(v6)
        for sock in self._sockets:
            threading.Thread(target=self._accept, args=(sock,), daemon=True).start()

    def _accept(self, sock: socket.socket) -> None:
        while True:
            try:
                conn, peer = sock.accept()
            except OSError:
                return
            self.accepted.append(peer[:2])
            conn.close()

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def rebound_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, str) and host.lower().rstrip(".") in REBOUND_NAMES:
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture(autouse=True)
def fresh_carrier_sessions(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    bucket = LocalTokenBucket()  # no shared Redis bucket: this test's own pace
    monkeypatch.setattr(polling, "default_rate_limiter", lambda: bucket)
    forget_transports()
    yield
    forget_transports()


@pytest.fixture
def store() -> Store:
    return StoreFactory(domain="ssrf.genmystore.com")


@pytest.fixture
def merchant_client(client, store):
    client.force_login(merchant("ssrf-merchant", store))
    return client


def bypass_urls(listener: Listener, own_host: str) -> list[str]:
    port = listener.port
    urls = [
        f"https://127.0.0.1:{port}\\@{own_host}",
        f"http://127.0.0.1:{port}\\@{own_host}",
        f"https://{own_host}@127.0.0.1:{port}",
        f"https://{own_host}:x@127.0.0.1:{port}",
        f"http://127.0.0.1:{port}#@{own_host}",
        f"http://127.0.0.1:{port}?@{own_host}",
        f"http://127.0.0.1:{port}/#.{own_host}",
        f"http://localhost:{port}",
        f"http://2130706433:{port}",
        f"http://0177.0.0.1:{port}",
        f"http://0x7f000001:{port}",
        f"http://127.1:{port}",
    ]
    if listener.port6:
        urls.append(f"http://[::1]:{listener.port6}")
        urls.append(f"http://[::ffff:127.0.0.1]:{port}")
    return urls


# --- store connect form ------------------------------------------------------------------------------------


def _connect_store(client, *, domain: str = "victim.genmystore.com", api_base_url: str = ""):
    return client.post(reverse("admin:stores_store_connect"), {
        "domain": domain, "access_token": "merchant-token", "client_secret": "merchant-secret",
        "api_base_url": api_base_url,
    })


def test_store_connect_form_aims_no_request_at_internal_addresses(merchant_client, listener):
    urls = [*bypass_urls(listener, "x.genmystore.com"), f"https://loopback.genmystore.com:{listener.port}"]
    for url in urls:
        response = _connect_store(merchant_client, api_base_url=url)
        assert response.status_code == 200, url  # the form again, with the reason
    assert listener.accepted == []
    assert not Store.objects.filter(domain="victim.genmystore.com").exists()


def test_store_domain_cannot_smuggle_a_host_and_port(merchant_client, listener):
    port = listener.port
    domains = [f"localhost:{port}#", f"localhost:{port}?x=", f"127.0.0.1:{port}#", f"localhost:{port}\\",
               f"localhost:{port}/", f"x@localhost:{port}#", "localhost", f"loopback.genmystore.com:{port}"]
    if listener.port6:
        domains.append(f"[::1]:{listener.port6}#")
    for domain in domains:
        response = _connect_store(merchant_client, domain=domain)
        assert response.status_code == 200, domain
    assert listener.accepted == []
    assert Store.objects.count() == 1  # the merchant's own store only


def test_connect_store_command_refuses_a_smuggled_domain(listener):
    with pytest.raises(CommandError, match=r"genmystore\.com"):
        call_command("connect_store", domain=f"localhost:{listener.port}#", access_token="t", client_secret="s")
    assert listener.accepted == []


def test_a_store_saved_with_a_bypass_url_before_the_fix_is_refused_when_used(listener):
    from oma.genstore.errors import GenstoreError
    from oma.stores.services import genstore_client_for

    legacy = [
        Store(domain="legacy1.genmystore.com", api_base_url=f"https://127.0.0.1:{listener.port}\\@x.genmystore.com"),
        Store(domain=f"localhost:{listener.port}#"),
        Store(domain="legacy3.genmystore.com", api_base_url=f"https://loopback.genmystore.com:{listener.port}"),
    ]
    for store in legacy:
        store.access_token, store.client_secret = "t", "s"
        with pytest.raises(GenstoreError), genstore_client_for(store) as client:
            client.shop_info()
    assert listener.accepted == []


# --- carrier accounts: the form, then polling with what it saved ----------------------------------------------


def _carrier_account(client, store, base_url: str):
    return client.post(reverse("admin:tracking_carrieraccount_add"), {
        "carrier": "fedex", "store": store.pk, "label": "mine", "client_id": "id", "client_secret": "secret",
        "api_key": "", "base_url": base_url, "rate_limit_requests": "", "rate_limit_per_seconds": "",
        "is_active": "on",
    })


def _poll_fedex(store) -> None:
    number = next(numbers_for("fedex", 1))
    if not Shipment.objects.filter(store=store, tracking_number=number).exists():
        shipment_add(store=store, tracking_number=number, carrier="fedex", source=Shipment.Source.MANUAL)
    Shipment.objects.filter(store=store).update(next_poll_at="2000-01-01T00:00:00Z", consecutive_failures=0)
    poll_due_shipments(store=store, time_budget=10)


def test_carrier_account_form_and_polling_aim_no_request_at_internal_addresses(merchant_client, store, listener):
    urls = [*bypass_urls(listener, "apis.fedex.com"), f"https://apis.fedex.com:{listener.port}"]
    for url in urls:
        _carrier_account(merchant_client, store, url)
        _poll_fedex(store)  # whatever the form let through is used at once
        for account in CarrierAccount.objects.all():
            assert "refused" in account.last_error, (url, account.last_error)
        CarrierAccount.objects.all().delete()
        forget_transports()
    assert listener.accepted == []


def test_a_carrier_account_saved_with_a_bypass_url_before_the_fix_is_refused_when_polled(store, listener):
    account = CarrierAccount.objects.create(
        carrier="fedex", store=store, client_id="id", client_secret="secret",
        base_url=f"https://127.0.0.1:{listener.port}\\@apis.fedex.com",
    )
    _poll_fedex(store)
    account.refresh_from_db()
    assert listener.accepted == []
    assert "refused" in account.last_error


# --- ShipStation channels: the form, then polling with what it saved ---------------------------------------------


def _channel(client, store, base_url: str):
    return client.post(reverse("admin:channels_channel_add"), {
        "store": store.pk, "name": "ShipStation", "kind": "shipstation", "source_names_text": "",
        "base_url": base_url, "api_key": "key", "api_secret": "secret", "is_enabled": "on",
    })


def test_shipstation_channel_form_and_polling_aim_no_request_at_internal_addresses(merchant_client, store, listener):
    sync_orders(store, [order_record("9001")])
    urls = [*bypass_urls(listener, "ssapi.shipstation.com"), f"https://ssapi.shipstation.com:{listener.port}"]
    for url in urls:
        _channel(merchant_client, store, url)
        for channel in Channel.objects.filter(kind="shipstation"):
            channel_poll(channel=channel)
            channel.refresh_from_db()
            assert "refused" in channel.last_error, (url, channel.last_error)
        Channel.objects.all().delete()
    assert listener.accepted == []


def test_a_channel_saved_with_a_bypass_url_before_the_fix_is_refused_when_used(store, listener):
    channel = Channel(store=store, kind="shipstation", api_key="k", api_secret="s",
                      base_url=f"https://127.0.0.1:{listener.port}\\@ssapi.shipstation.com")
    from oma.channels.connectors.base import ConnectorError

    with pytest.raises(ConnectorError, match="refused"):
        list(SHIPSTATION.fetch_shipments(channel, [PolledOrder(order_pk=1, external_order_id="1")], stats=PollStats()))
    assert listener.accepted == []


# --- redirects: an operator-allowed host answering 302 to an internal port ----------------------------------------


@pytest.fixture
def redirector(listener: Listener) -> Iterator[ScriptedServer]:
    server = ScriptedServer().start()
    target = f"http://127.0.0.1:{listener.port}/"

    def redirect(_seen):
        return Reply(302, {}, headers={"Location": target})

    for route in ("POST /oauth/token", "POST /track/v1/trackingnumbers", "GET /shipments",
                  "GET /api/202412/shops/info"):
        server.handle(route, redirect)
    yield server
    server.stop()


def _via_localhost(server: ScriptedServer) -> str:
    return server.base_url.replace("127.0.0.1", "localhost")


def test_no_client_follows_a_redirect_to_another_origin(merchant_client, store, listener, redirector, settings):
    settings.OMA_MERCHANT_API_HOSTS = ["localhost"]
    base = _via_localhost(redirector)

    assert _carrier_account(merchant_client, store, base).status_code == 302
    _poll_fedex(store)
    account = CarrierAccount.objects.get()
    assert "302" in account.last_error

    assert _channel(merchant_client, store, base).status_code == 302
    sync_orders(store, [order_record("9002")])
    channel_poll(channel=Channel.objects.get())
    assert "302" in Channel.objects.get().last_error

    response = _connect_store(merchant_client, api_base_url=base)
    assert response.status_code == 200 and "redirect" in response.content.decode()

    assert redirector.requests  # each client did ask the allowed host
    assert listener.accepted == []  # and none of them went where it pointed
