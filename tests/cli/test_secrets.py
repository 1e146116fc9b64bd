"""Secrets never have to be on the command line: each secret option also reads an environment variable, standard
input (`-`), or a prompt without echo on a terminal; the command-line value still works."""

from __future__ import annotations

import io

import pytest

from oma.channels.models import Channel
from oma.core import cli
from oma.stores.models import Store
from tests.cli.conftest import Terminal, run
from tracking.models import CarrierAccount

pytestmark = pytest.mark.django_db


@pytest.fixture
def prompts(monkeypatch) -> list[str]:
    """getpass at the terminal's edge: answers "typed-<n>" and records each prompt."""
    asked: list[str] = []

    def getpass(prompt: str) -> str:
        asked.append(prompt)
        return f"typed-{len(asked)}"

    monkeypatch.setattr(cli, "getpass", getpass)
    return asked


@pytest.fixture
def store() -> Store:
    return Store.objects.create(domain="shop1.genmystore.com", access_token="t", client_secret="s")


def connect(*secret_args: str, stdin=None) -> Store:
    ran = run("connect_store", "--domain", "shop9.genmystore.com", "--no-verify", *secret_args, stdin=stdin)
    assert ran.status == 0, ran.error
    return Store.objects.get(domain="shop9.genmystore.com")


def test_connect_store_reads_its_secrets_from_the_environment(monkeypatch):
    monkeypatch.setenv("OMA_ACCESS_TOKEN", "token-from-env")
    monkeypatch.setenv("OMA_CLIENT_SECRET", "secret-from-env")
    store = connect()
    assert (store.access_token, store.client_secret) == ("token-from-env", "secret-from-env")


def test_connect_store_reads_dash_from_standard_input_one_line_each():
    store = connect("--access-token", "-", "--client-secret", "-", stdin=io.StringIO("token-in\nsecret-in\n"))
    assert (store.access_token, store.client_secret) == ("token-in", "secret-in")


def test_connect_store_asks_on_a_terminal_without_echo(prompts):
    store = connect(stdin=Terminal())
    assert (store.access_token, store.client_secret) == ("typed-1", "typed-2")
    assert prompts == ["access token: ", "client secret: "]


def test_connect_store_keeps_the_command_line_form():
    store = connect("--access-token", "argv-token", "--client-secret", "argv-secret")
    assert (store.access_token, store.client_secret) == ("argv-token", "argv-secret")


def test_a_missing_secret_without_a_terminal_says_every_way_to_give_it(prompts):
    ran = run("connect_store", "--domain", "shop9.genmystore.com", "--no-verify", stdin=io.StringIO(""))
    assert ran.status == 1 and "OMA_ACCESS_TOKEN" in ran.error and "--access-token -" in ran.error
    assert prompts == [] and not Store.objects.exists()
    empty = run("connect_store", "--domain", "shop9.genmystore.com", "--no-verify", "--access-token", "-",
                "--client-secret", "s", stdin=io.StringIO("\n"))
    assert empty.status == 1 and "standard input gave no access token" in empty.error


def test_channel_api_credentials_from_environment_stdin_or_prompt(store, monkeypatch, prompts):
    def add(name: str, *args: str, stdin=None) -> Channel:
        ran = run("channel", "add", "--store", store.domain, "--kind", "shipstation", "--name", name, *args,
                  stdin=stdin)
        assert ran.status == 0, ran.error
        return Channel.objects.get(name=name)

    piped = add("Piped", "--api-key", "-", "--api-secret", "-", stdin=io.StringIO("key-in\nsecret-in\n"))
    assert (piped.api_key, piped.api_secret) == ("key-in", "secret-in")
    asked = add("Asked", stdin=Terminal())
    assert (asked.api_key, asked.api_secret) == ("typed-1", "typed-2")
    monkeypatch.setenv("OMA_CHANNEL_API_KEY", "key-env")
    monkeypatch.setenv("OMA_CHANNEL_API_SECRET", "secret-env")
    from_env = add("Env")
    assert (from_env.api_key, from_env.api_secret) == ("key-env", "secret-env")
    # A kind that calls no API neither reads nor asks for credentials (the environment's are not taken either).
    ran = run("channel", "add", "--store", store.domain, "--kind", "csv", "--name", "Sheet", stdin=Terminal())
    assert ran.status == 0 and Channel.objects.get(name="Sheet").api_key == "" and len(prompts) == 2


def test_carrier_account_secrets_from_environment_stdin_or_prompt(monkeypatch, prompts):
    def add(*args: str, stdin=None) -> CarrierAccount:
        ran = run("carrier_account", "add", *args, stdin=stdin)
        assert ran.status == 0, ran.error
        return CarrierAccount.objects.get(pk=int(ran.out))

    ups = add("--carrier", "ups", "--client-id", "ID", "--client-secret", "-", stdin=io.StringIO("ups-secret\n"))
    assert ups.client_secret == "ups-secret"
    fedex = add("--carrier", "fedex", "--client-id", "ID", stdin=Terminal())
    assert fedex.client_secret == "typed-1" and prompts == ["fedex client secret: "]
    monkeypatch.setenv("OMA_CARRIER_API_KEY", "dhl-key")
    monkeypatch.setenv("OMA_CARRIER_CLIENT_SECRET", "never-read-for-an-api-key-carrier")
    dhl = add("--carrier", "dhl")
    assert (dhl.api_key, dhl.client_secret) == ("dhl-key", "")


def test_add_merchant_user_password_from_environment_stdin_or_prompt(store, monkeypatch, prompts):
    from django.contrib.auth import get_user_model

    def add(username: str, *args: str, stdin=None) -> None:
        ran = run("add_merchant_user", "--username", username, "--store", store.domain, *args, stdin=stdin)
        assert ran.status == 0, ran.error

    users = get_user_model().objects
    add("piped", "--password", "-", stdin=io.StringIO("Piped-Passphrase-42\n"))
    assert users.get(username="piped").check_password("Piped-Passphrase-42")
    monkeypatch.setattr(cli, "getpass", lambda prompt: prompts.append(prompt) or "Typed-Passphrase-42")
    add("asked", stdin=Terminal())
    assert users.get(username="asked").check_password("Typed-Passphrase-42")
    assert prompts == ["password for asked: ", "password for asked (again): "]
    monkeypatch.setenv("OMA_MERCHANT_PASSWORD", "Env-Passphrase-42")
    add("from-env")
    assert users.get(username="from-env").check_password("Env-Passphrase-42")
    monkeypatch.delenv("OMA_MERCHANT_PASSWORD")
    add("asked", stdin=Terminal())  # an existing user keeps the password: nothing is asked
    assert len(prompts) == 2 and users.get(username="asked").check_password("Typed-Passphrase-42")
