"""One `--since` parser: every command taking a time reads `6h`, `30m`, `2d`, `1w` and ISO dates the same way."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management.base import CommandError
from django.utils import timezone

from oma.core import cli
from oma.merchant.exports import orders_export_rows
from oma.orders.management.commands import sync_orders
from oma.stores.models import Store
from tests.admin.factories import OrderFactory
from tests.cli.conftest import run
from webhooks.models import WebhookDelivery
from webhooks.receive import delivery_receive

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("6h", NOW - timedelta(hours=6)),
        ("30m", NOW - timedelta(minutes=30)),
        ("2d", NOW - timedelta(days=2)),
        ("1w", NOW - timedelta(weeks=1)),
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
        ("2026-11-01T08:00:00Z", datetime(2026, 11, 1, 8, tzinfo=UTC)),
        ("2026-11-01T10:00+02:00", datetime(2026, 11, 1, 8, tzinfo=UTC)),
        ("2026-11-01T08:00", datetime(2026, 11, 1, 8, tzinfo=UTC)),  # no offset: UTC
    ],
)
def test_since_reads_how_long_ago_and_iso_dates(text, expected):
    assert cli.parse_since(text, now=NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "6 hours", "", "2026-13-01"])
def test_anything_else_is_refused_with_the_forms_it_takes(text):
    with pytest.raises(CommandError, match=r"ISO 8601 .* or how long ago \(90m, 6h, 2d, 1w\)"):
        cli.parse_since(text, now=NOW)


def test_sync_orders_uses_the_shared_parser():
    assert sync_orders.parse_since is cli.parse_since


@pytest.mark.django_db
def test_replay_webhooks_takes_6h():
    store = Store.objects.create(domain="shop1.genmystore.com", access_token="t", client_secret="s")
    ages = {"recent": timedelta(hours=2), "old": timedelta(hours=9)}
    for name, age in ages.items():
        received = delivery_receive(store=store, topic="orders/update", body=f'{{"order": "{name}"}}'.encode(),
                                    headers={})
        WebhookDelivery.objects.filter(pk=received.delivery_id).update(
            state=WebhookDelivery.State.FAILED, received_at=timezone.now() - age)

    assert run("replay_webhooks", "--since", "6h", "--dry-run").out.strip() == "1 delivery matches"
    assert run("replay_webhooks", "--since", "1d", "--dry-run").out.strip() == "2 deliveries match"
    refused = run("replay_webhooks", "--since", "6 hours", "--dry-run")
    assert refused.status == 1 and "how long ago" in refused.error


@pytest.mark.django_db
def test_export_orders_since_writes_only_the_orders_updated_since_then():
    store = Store.objects.create(domain="shop1.genmystore.com", access_token="t", client_secret="s")
    now = timezone.now()
    for order_id, age in (("1001", timedelta(hours=1)), ("1002", timedelta(days=3)), ("1003", timedelta(hours=30))):
        OrderFactory(store=store, order_id=order_id, genstore_updated_at=now - age)
    OrderFactory(store=store, order_id="1004", genstore_updated_at=None)  # never said: not "updated since"

    def exported(*args: str) -> list[str]:
        ran = run("export_orders", "--store", store.domain, *args)
        assert ran.status == 0, ran.error
        return [json.loads(line)["orderId"] for line in ran.out.splitlines()]

    assert exported("--since", "2d") == ["1001", "1003"]
    assert exported("--since", (now - timedelta(hours=2)).isoformat()) == ["1001"]
    assert exported() == ["1001", "1002", "1003", "1004"]
    assert [row["orderId"] for row in orders_export_rows(store=store, updated_since=now - timedelta(days=4))] == [
        "1001", "1002", "1003"]
    refused = run("export_orders", "--store", store.domain, "--since", "last week")
    assert refused.status == 1 and "how long ago" in refused.error
