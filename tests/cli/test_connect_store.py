"""connect_store checks what it can before any request: the domain (also with --no-verify) and the API address."""

from __future__ import annotations

import pytest

from oma.stores.models import Store
from tests.cli.conftest import run
from tests.genstore_sandbox import SANDBOX_SECRET, SANDBOX_TOKEN

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("domain", ["not a domain", "bad..domain", "shop1.genmystore.com.evil.example",
                                    "shop_1.genmystore.com"])
@pytest.mark.parametrize("verify", [True, False])
def test_a_bad_domain_is_refused_in_one_line_before_any_request(sandbox, domain, verify):
    args = ["connect_store", "--domain", domain, "--access-token", SANDBOX_TOKEN, "--client-secret", SANDBOX_SECRET,
            "--api-base-url", sandbox.base_url_for("shop1")]
    ran = run(*args, *([] if verify else ["--no-verify"]))
    assert ran.status == 1
    assert "is not a Genstore shop domain" in ran.error and "\n" not in ran.error
    assert sandbox.stats("shop1")["requests"] == 0
    assert not Store.objects.exists()


def test_a_bad_api_address_is_refused_before_any_request(sandbox):
    ran = run("connect_store", "--domain", "shop1.genmystore.com", "--access-token", "t", "--client-secret", "s",
              "--api-base-url", "http://user@127.0.0.1:8100")
    assert ran.status == 1 and ran.error.startswith("--api-base-url 'http://user@127.0.0.1:8100': ")
    ran = run("connect_store", "--domain", "shop1.genmystore.com", "--access-token", "t", "--client-secret", "s",
              "--api-base-url", sandbox.base_url_for("shop1"), "--register-webhooks", "http://oma.example.com/hook")
    assert ran.status == 1 and "--register-webhooks" in ran.error
    assert sandbox.stats("shop1")["requests"] == 0
    assert not Store.objects.exists()


def test_a_good_domain_connects_with_one_check_request_more(sandbox):
    ran = run("connect_store", "--domain", "SHOP1.genmystore.com", "--access-token", SANDBOX_TOKEN,
              "--client-secret", SANDBOX_SECRET, "--api-base-url", sandbox.base_url_for("shop1"))
    assert ran.status == 0, ran.error
    store = Store.objects.get()
    assert store.domain == "shop1.genmystore.com" and store.access_token == SANDBOX_TOKEN
    assert sandbox.stats("shop1")["requests"] == 2  # the reachability check, then the verification

    ran = run("connect_store", "--domain", "shop1.genmystore.com", "--access-token", "wrong-token",
              "--client-secret", SANDBOX_SECRET)  # the address saved before is the one checked
    assert ran.status == 1 and "Genstore refused the connection" in ran.error and "401" in ran.error
    store.refresh_from_db()
    assert store.access_token == SANDBOX_TOKEN
