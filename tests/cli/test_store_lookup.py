"""Every command that takes a store finds it one way and says one thing when it is not there (issue 17, item 5)."""

from __future__ import annotations

import pytest
from django.core.management.base import CommandError

from oma.stores.cli import store_for_cli
from oma.stores.models import Store
from tests.cli.conftest import run

pytestmark = pytest.mark.django_db

NOPE = "nope.genmystore.com"
COMMANDS_TAKING_A_STORE = [
    ("sync_orders", "--store", NOPE),
    ("export_orders", "--store", NOPE),
    ("register_webhooks", "--store", NOPE, "--address", "https://oma.example.com/webhooks/genstore/"),
    ("replay_webhooks", "--store", NOPE),
    ("push_fulfillments", "--store", NOPE),
    ("reconcile", "--store", NOPE),
    ("poll_tracking", "--store", NOPE),
    ("track", "1Z999AA10123456784", "--store", NOPE),
    ("carrier_account", "add", "--carrier", "dhl", "--api-key", "k", "--store", NOPE),
    ("channel", "add", "--store", NOPE, "--kind", "csv", "--name", "Sheet"),
    ("channel", "list", "--store", NOPE),
    ("import_tracking", "tracking.csv", "--store", NOPE),
    ("add_merchant_user", "--username", "ann", "--password", "a-long-Passphrase-9", "--store", NOPE),
    ("shipstation_sandbox", "--from-store", NOPE, "--port", "0"),
]


@pytest.mark.parametrize("args", COMMANDS_TAKING_A_STORE, ids=lambda args: " ".join(args[:2]))
def test_an_unknown_store_is_named_with_the_stores_there_are(args):
    first = run(*args)
    assert (first.status, first.error) == (1, f"unknown store {NOPE!r}; no stores yet: connect one with connect_store")

    Store.objects.create(domain="b.genmystore.com", access_token="t", client_secret="s")
    Store.objects.create(domain="a.genmystore.com", access_token="t", client_secret="s")
    second = run(*args)
    assert (second.status, second.error) == (
        1, f"unknown store {NOPE!r}; known stores: a.genmystore.com, b.genmystore.com")
    assert not Store.objects.filter(domain=NOPE).exists()


def test_a_store_is_found_by_its_domain_as_typed_or_pasted_or_by_its_id():
    store = Store.objects.create(domain="shop1.genmystore.com", access_token="t", client_secret="s")
    typed_forms = ("shop1.genmystore.com", " SHOP1.genmystore.com ", "https://shop1.genmystore.com/x", str(store.pk))
    for typed in typed_forms:
        assert store_for_cli(typed) == store
    store.is_active = False
    store.save()
    with pytest.raises(CommandError, match="inactive"):
        store_for_cli("shop1.genmystore.com", active=True)
