"""The `channel` command: its JSON output and its errors."""

from __future__ import annotations

import base64
import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from oma.channels.models import Channel

pytestmark = pytest.mark.django_db


def run(*args: str) -> list[dict]:
    out = io.StringIO()
    call_command("channel", *args, stdout=out)
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def test_add_webhook_prints_slug_path_and_a_standard_webhooks_secret(store):
    (created,) = run("add", "--store", store.domain, "--kind", "webhook", "--name", "Instagram Shop",
                     "--source-names", "instagram, facebook")
    assert created["slug"] == "shop1-instagram-shop"
    assert created["webhookPath"] == "/webhooks/channels/shop1-instagram-shop/"
    assert created["sourceNames"] == ["instagram", "facebook"]  # as typed: the first is the sourceName orders get
    assert created["secret"].startswith("whsec_")
    assert len(base64.b64decode(created["secret"].removeprefix("whsec_"), validate=True)) == 32
    channel = Channel.objects.get(slug=created["slug"])
    assert channel.signing_secret == created["secret"]
    # Stored encrypted: the column holds a Fernet token, not the secret.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT signing_secret FROM channels_channel WHERE id = %s", [channel.pk])
        assert "whsec_" not in cursor.fetchone()[0]


def test_add_csv_has_no_secret_and_names_are_unique_per_store(store):
    (created,) = run("add", "--store", store.domain, "--kind", "csv", "--name", "3PL sheet")
    assert "secret" not in created and "webhookPath" not in created
    with pytest.raises(CommandError, match="already has a channel named '3PL sheet'"):
        run("add", "--store", store.domain, "--kind", "csv", "--name", "3PL sheet")
    (second,) = run("add", "--store", store.domain, "--kind", "webhook", "--name", "3PL-sheet")
    assert second["slug"] == "shop1-3pl-sheet-2"  # same slug base: numbered


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kind", "webhook", "--name", "X", "--api-key", "k", "--api-secret", "s"], "takes no API key"),
        (["--kind", "shipstation", "--name", "X", "--api-key", "k"],
         "a ShipStation channel needs --api-key and --api-secret"),
        (["--kind", "shipstation", "--name", "X", "--api-key", "k", "--api-secret", "s", "--base-url", "ftp://x"],
         "base URL must be an http"),
    ],
)
def test_add_refuses_settings_that_cannot_work(store, args, message):
    with pytest.raises(CommandError, match=message):
        run("add", "--store", store.domain, *args)
    assert not Channel.objects.exists()


def test_unknown_store_and_kind(store):
    with pytest.raises(CommandError, match="unknown store"):
        run("add", "--store", "nope.genmystore.com", "--kind", "csv", "--name", "X")
    with pytest.raises(CommandError, match="invalid choice"):
        run("add", "--store", store.domain, "--kind", "amazon", "--name", "X")


def test_list_and_rotate_secret(store):
    (created,) = run("add", "--store", store.domain, "--kind", "webhook", "--name", "Hook")
    (rotated,) = run("rotate-secret", "--slug", created["slug"])
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != created["secret"]
    channel = Channel.objects.get()
    assert channel.previous_signing_secret == created["secret"] and channel.previous_signing_secret_expires_at
    (listed,) = run("list", "--store", store.domain)
    assert listed["slug"] == created["slug"] and "secret" not in listed
    assert listed["records"] == {"unmatched": 0, "matched": 0, "rejected": 0, "withdrawn": 0}
    with pytest.raises(CommandError, match="no channel with slug"):
        run("rotate-secret", "--slug", "nope")
