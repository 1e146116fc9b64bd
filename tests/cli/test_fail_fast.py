"""Interactive commands stop at once, in one line, when the API address does not resolve or refuses connections
(no eight retries); the clients of background work keep their retries."""

from __future__ import annotations

import time

import pytest
from django.conf import settings

from oma.orders.models import SyncRun
from oma.stores.models import Store
from oma.stores.services import genstore_client_for
from tests.cli.conftest import run

pytestmark = pytest.mark.django_db

UNRESOLVABLE = "https://shop1.invalid"  # RFC 6761: never resolves


@pytest.fixture(params=["refused", "dns"])
def dead_address(request, closed_port) -> tuple[str, str]:
    if request.param == "refused":
        return f"http://127.0.0.1:{closed_port}", "connection refused"
    return UNRESOLVABLE, "the host name does not resolve (DNS)"


def timed(*args: str):
    started = time.monotonic()
    ran = run(*args)
    return ran, time.monotonic() - started


def test_connect_store_ends_in_one_line_within_seconds(dead_address):
    address, reason = dead_address
    ran, seconds = timed("connect_store", "--domain", "shop1.genmystore.com", "--access-token", "t",
                         "--client-secret", "s", "--api-base-url", address)
    assert seconds < 3
    assert ran.status == 1
    assert ran.error == f"cannot reach Genstore for shop1.genmystore.com at {address}: {reason}"
    assert not Store.objects.exists()


@pytest.mark.parametrize("command", [
    ("register_webhooks", "--address", "https://oma.example.com/webhooks/genstore/"),
    ("sync_orders",),
    ("sync_orders", "--full"),
    ("push_fulfillments",),
    ("reconcile",),
])
def test_commands_on_a_store_end_in_one_line_within_seconds(dead_address, command):
    address, reason = dead_address
    store = Store.objects.create(domain="shop1.genmystore.com", api_base_url=address, access_token="t",
                                 client_secret="s")
    ran, seconds = timed(command[0], "--store", store.domain, *command[1:])
    assert seconds < 3
    assert ran.status == 1
    assert ran.error == f"cannot reach Genstore for shop1.genmystore.com at {address}: {reason}"
    assert not SyncRun.objects.exists()


def test_background_clients_keep_their_retries(closed_port):
    store = Store.objects.create(domain="shop1.genmystore.com", api_base_url=f"http://127.0.0.1:{closed_port}",
                                 access_token="t", client_secret="s")
    run("sync_orders", "--store", store.domain)
    with genstore_client_for(store) as client:
        assert client.max_retries == settings.GENSTORE_MAX_RETRIES > 0
