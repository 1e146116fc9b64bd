"""register_webhooks against the Genstore sandbox, replay_webhooks filters, and a sandbox-sent delivery end to end."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from oma.orders.models import Order
from oma.stores.subscriptions import subscribable_topics, webhook_subscriptions_register
from tests.genstore_sandbox import SANDBOX_SECRET, SANDBOX_TOKEN
from tests.webhooks.payloads import encode, order_json
from webhooks.models import WebhookDelivery
from webhooks.receive import delivery_receive

pytestmark = pytest.mark.django_db
State = WebhookDelivery.State
ADDRESS = "https://oma.example.com/webhooks/genstore/"


def _run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_register_webhooks_creates_the_missing_subscriptions_once(sandbox, sandbox_store):
    first = json.loads(_run("register_webhooks", "--store", sandbox_store.domain, "--address", ADDRESS))
    assert sorted(first["created"]) == sorted(subscribable_topics())
    assert first["existing"] == []
    assert "orders/partiallyFulfilled" in first["created"] and "app/uninstalled" in first["created"]
    # Compliance topics are configured on the app, not subscribed per store.
    assert "shop/redact" not in first["created"]

    second = json.loads(_run("register_webhooks", "--store", sandbox_store.domain, "--address", ADDRESS))
    assert second["created"] == []
    assert sorted(second["existing"]) == sorted(subscribable_topics())
    subscriptions = sandbox.webhook_subscriptions("shop1")
    assert sorted(s["topic"] for s in subscriptions) == sorted(subscribable_topics())
    assert {s["address"] for s in subscriptions} == {ADDRESS}


def test_register_webhooks_adds_only_what_a_partial_setup_lacks(sandbox, sandbox_store):
    from oma.stores.services import genstore_client_for

    genstore_client_for(sandbox_store).create_webhook(address=ADDRESS, topic="orders/update")
    result = webhook_subscriptions_register(store=sandbox_store, address=ADDRESS)
    assert result.existing == ["orders/update"]
    assert "orders/update" not in result.created and len(result.created) == len(subscribable_topics()) - 1


def test_register_webhooks_refuses_plain_http_and_unknown_stores(sandbox_store):
    with pytest.raises(CommandError, match="https"):
        _run("register_webhooks", "--store", sandbox_store.domain, "--address", "http://oma.example.com/hook")
    with pytest.raises(CommandError, match="unknown store"):
        _run("register_webhooks", "--store", "nobody.genmystore.com", "--address", ADDRESS)


def test_connect_store_registers_webhooks_through_this_service(sandbox):
    domain = sandbox.domain_for("shop1")
    output = _run(
        "connect_store", "--domain", domain, "--access-token", SANDBOX_TOKEN, "--client-secret", SANDBOX_SECRET,
        "--api-base-url", sandbox.base_url_for("shop1"), "--register-webhooks", ADDRESS,
    )
    assert sorted(json.loads(output)["webhooks"]["created"]) == sorted(subscribable_topics())


def test_replay_webhooks_selects_by_store_state_and_time(store, other_store, eager_celery,
                                                        django_capture_on_commit_callbacks):
    now = timezone.now()

    def stored(shop_store, order_id: str, state: str, age: timedelta) -> WebhookDelivery:
        result = delivery_receive(store=shop_store, topic="orders/update", body=encode(order_json(order_id)),
                                  headers={})
        WebhookDelivery.objects.filter(pk=result.delivery_id).update(state=state, received_at=now - age)
        return WebhookDelivery.objects.get(pk=result.delivery_id)

    old_failed = stored(store, "1", State.FAILED, timedelta(days=3))
    new_failed = stored(store, "2", State.FAILED, timedelta(hours=1))
    processed = stored(store, "3", State.PROCESSED, timedelta(hours=1))
    other_failed = stored(other_store, "4", State.FAILED, timedelta(hours=1))
    since = (now - timedelta(days=1)).isoformat()

    dry_run = _run("replay_webhooks", "--store", store.domain, "--since", since, "--dry-run")
    assert dry_run.strip() == "1 delivery matches"
    with django_capture_on_commit_callbacks(execute=True):
        output = _run("replay_webhooks", "--store", store.domain, "--since", since)
    assert output.strip() == "1 delivery queued for processing again"
    states = dict(WebhookDelivery.objects.values_list("pk", "state"))
    assert states == {old_failed.pk: State.FAILED, new_failed.pk: State.PROCESSED,
                      processed.pk: State.PROCESSED, other_failed.pk: State.FAILED}
    with django_capture_on_commit_callbacks(execute=True):
        assert _run("replay_webhooks", "--state", "any", "--since", "2000-01-01").startswith("4 deliveries")
    assert set(WebhookDelivery.objects.values_list("state", flat=True)) == {State.PROCESSED}
    with pytest.raises(CommandError, match="ISO"):
        _run("replay_webhooks", "--since", "yesterday")


def test_sandbox_webhooks_reach_a_live_server_and_are_processed(
    sandbox, transactional_db, live_server, eager_celery
):
    """Genstore (the sandbox) sends signed deliveries over HTTP to subscriptions registered through the API."""
    from tests.genstore_sandbox import connect

    store = connect(sandbox)
    address = f"{live_server.url}/webhooks/genstore/"
    webhook_subscriptions_register(store=store, address=address)
    order_id = sandbox.order_ids("shop1")[5]
    sandbox.cancel_order("shop1", order_id)
    assert sandbox.wait_for_webhooks(timeout=20)
    attempts = sandbox.webhook_attempts("shop1", topic="orders/cancelled")
    assert [attempt.status for attempt in attempts] == [200]
    delivery = WebhookDelivery.objects.get(topic="orders/cancelled")
    assert delivery.state == State.PROCESSED, delivery.last_error
    assert delivery.webhook_id  # the sandbox sends X-Genstore-Webhook-Id
    assert Order.objects.get(store=store, order_id=order_id).is_cancelled
