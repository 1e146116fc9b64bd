"""Processing per topic, once per delivery, with retries, failures and replay (tasks run inline after commit)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from oma.orders.models import Order, Refund
from oma.stores.models import Store
from tests.genstore_sandbox import SANDBOX_SECRET
from tests.webhooks.payloads import BASE_TIME, encode, order_json, refund_json
from webhooks.models import WebhookDelivery
from webhooks.processing import deliveries_process
from webhooks.receive import delivery_receive

pytestmark = pytest.mark.django_db
State = WebhookDelivery.State


def test_order_deliveries_create_then_update_the_mirror(store, deliver):
    first = deliver(order_json("1001", version=1))
    second = deliver(order_json("1001", version=2, financial_status="refunded"))
    order = Order.objects.get(store=store, order_id="1001")
    assert order.financial_status == "refunded"
    assert order.genstore_updated_at == BASE_TIME + timedelta(minutes=2)
    assert str(order.total_price) == "12.00"
    assert sorted(order.line_items.values_list("line_item_id", "quantity")) == [("1001-1", 1), ("1001-2", 2)]
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.state, first.attempts, first.outcome) == (State.PROCESSED, 1, "order 1001 created")
    assert (second.state, second.attempts, second.outcome) == (State.PROCESSED, 1, "order 1001 updated")
    assert second.processed_at is not None and second.next_dispatch_at is None


def test_a_late_older_delivery_changes_nothing(store, deliver):
    deliver(order_json("1001", version=3))
    late = deliver(order_json("1001", version=1, financial_status="pending"), topic="orders/create")
    order = Order.objects.get(store=store, order_id="1001")
    assert order.financial_status == "paid"
    assert order.genstore_updated_at == BASE_TIME + timedelta(minutes=3)
    late.refresh_from_db()
    assert (late.state, late.outcome) == (State.PROCESSED, "order 1001 stale")


def test_a_delivery_is_processed_once_however_often_its_task_runs(store, deliver):
    delivery = deliver(order_json("1001"))
    assert deliveries_process(delivery_ids=[delivery.pk])[delivery.pk].state == "skipped"
    assert deliveries_process(delivery_ids=[delivery.pk])[delivery.pk].state == "skipped"
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == (State.PROCESSED, 1)


def test_a_claimed_delivery_is_left_alone_until_its_lease_runs_out(store):
    received = delivery_receive(store=store, topic="orders/update", body=encode(order_json("1001")), headers={})
    now = timezone.now()
    WebhookDelivery.objects.filter(pk=received.delivery_id).update(
        state=State.PROCESSING, attempts=1, lease_expires_at=now + timedelta(minutes=5)
    )
    assert deliveries_process(delivery_ids=[received.delivery_id])[received.delivery_id].state == "skipped"
    assert not Order.objects.exists()
    # The first attempt died (its worker was killed): once the lease is over, another attempt takes it.
    WebhookDelivery.objects.filter(pk=received.delivery_id).update(lease_expires_at=now - timedelta(seconds=1))
    assert deliveries_process(delivery_ids=[received.delivery_id])[received.delivery_id].state == State.PROCESSED
    delivery = WebhookDelivery.objects.get(pk=received.delivery_id)
    assert (delivery.state, delivery.attempts) == (State.PROCESSED, 2)
    assert Order.objects.filter(order_id="1001").exists()


def test_orders_cancelled_marks_the_order_cancelled(store, deliver):
    deliver(order_json("1001", version=1))
    deliver(order_json("1001", version=2, cancelled=True), topic="orders/cancelled")
    order = Order.objects.get(order_id="1001")
    assert order.is_cancelled
    assert order.cancel_reason == "customer"


def test_order_payload_lacking_line_items_is_completed_from_the_api(sandbox, sandbox_store, deliver):
    order_id = sandbox.order_ids("shop1")[0]
    thin = {"order": {"orderId": order_id, "updatedAt": BASE_TIME.isoformat(), "financialStatus": "paid"}}
    delivery = deliver(thin, secret=SANDBOX_SECRET)
    delivery.refresh_from_db()
    assert delivery.state == State.PROCESSED, delivery.last_error
    assert delivery.outcome == f"order {order_id} created (re-read from Genstore: payload had no lineItems)"
    truth = sandbox.canonical("shop1", order_id)
    order = Order.objects.get(store=sandbox_store, order_id=order_id)
    assert order.genstore_updated_at == truth["updatedAt"]
    assert sorted(order.line_items.values_list("line_item_id", flat=True)) == sorted(
        line.id for line in truth["lineItems"]
    )


def test_order_payload_without_updated_at_is_reread(sandbox, sandbox_store, deliver):
    order_id = sandbox.order_ids("shop1")[1]
    payload = {"order": {**sandbox.order("shop1", order_id)}}
    del payload["order"]["updatedAt"]
    delivery = deliver(payload, secret=SANDBOX_SECRET)
    delivery.refresh_from_db()
    assert delivery.outcome.endswith("(re-read from Genstore: payload had no updatedAt)")
    assert Order.objects.get(order_id=order_id).genstore_updated_at == sandbox.canonical("shop1", order_id)["updatedAt"]


def test_cancellation_without_cancelled_at_reads_the_order(sandbox, sandbox_store, deliver):
    order_id = sandbox.order_ids("shop1")[2]
    cancelled = sandbox.cancel_order("shop1", order_id)
    payload = {"order": {key: value for key, value in cancelled.items() if key != "cancelledAt"}}
    delivery = deliver(payload, topic="orders/cancelled", secret=SANDBOX_SECRET)
    delivery.refresh_from_db()
    assert delivery.state == State.PROCESSED, delivery.last_error
    assert Order.objects.get(order_id=order_id).is_cancelled


def test_refund_is_recorded_and_its_order_reread(sandbox, sandbox_store, deliver):
    order_id = sandbox.order_ids("shop1")[3]
    delivery = deliver(refund_json(order_id, refund_id="rf-77", amount="4.50"), topic="refunds/create",
                       secret=SANDBOX_SECRET)
    delivery.refresh_from_db()
    assert delivery.state == State.PROCESSED, delivery.last_error
    refund = Refund.objects.get(store=sandbox_store, refund_id="rf-77")
    assert (refund.order_id_text, str(refund.amount), refund.currency) == (order_id, "4.50", "USD")
    assert refund.order == Order.objects.get(order_id=order_id)  # the order was mirrored from the API
    assert delivery.resource_id == order_id
    # The same refund again (another delivery id) updates the one row.
    deliver(refund_json(order_id, refund_id="rf-77", amount="4.50"), topic="refunds/create", secret=SANDBOX_SECRET,
            webhook_id="again")
    assert Refund.objects.filter(refund_id="rf-77").count() == 1


def test_app_uninstalled_deactivates_the_store_and_keeps_its_data(store, deliver):
    deliver(order_json("1001"))
    delivery = deliver({"app": {"clientId": "c", "shopId": "s"}}, topic="app/uninstalled")
    store.refresh_from_db()
    assert store.is_active is False
    assert Order.objects.filter(store=store).count() == 1
    delivery.refresh_from_db()
    assert delivery.outcome.startswith("store deactivated")


@pytest.mark.parametrize(
    ("scopes", "expected"),
    [
        (["write_orders", "read_orders"], ["read_orders", "write_orders"]),
        ("read_orders,write_fulfillments", ["read_orders", "write_fulfillments"]),
        ("[read_orders, write_apps]", ["read_orders", "write_apps"]),
    ],
)
def test_scopes_update_records_the_current_scopes(store, deliver, scopes, expected):
    payload = {"authScope": {"clientId": "c", "shopId": "s", "previous": ["read_orders"], "current": scopes}}
    deliver(payload, topic="app/scopesUpdate")
    store.refresh_from_db()
    assert store.scopes == sorted(expected)


def test_transient_failures_are_retried_with_backoff_then_marked_failed(store, settings):
    settings.OMA_WEBHOOK_MAX_ATTEMPTS = 3
    settings.GENSTORE_MAX_RETRIES = 0  # the store's API is a closed port: every re-read fails at once
    thin = encode({"order": {"orderId": "1001", "updatedAt": BASE_TIME.isoformat()}})
    delivery_id = delivery_receive(store=store, topic="orders/update", body=thin, headers={}).delivery_id
    states = []
    for _ in range(5):
        result = deliveries_process(delivery_ids=[delivery_id])[delivery_id]
        states.append(result.state)
        # Before its backoff is over, a retry cannot be claimed (a stray copy of the task changes nothing)...
        assert deliveries_process(delivery_ids=[delivery_id])[delivery_id].state == "skipped"
        # ...after it, it can: let the backoff pass.
        WebhookDelivery.objects.filter(pk=delivery_id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert states == [State.RETRYING, State.RETRYING, State.FAILED, "skipped", "skipped"]
    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    assert (delivery.state, delivery.attempts) == (State.FAILED, 3)
    assert delivery.last_error.startswith("GenstoreTransportError")
    assert delivery.next_dispatch_at is None
    assert not Order.objects.exists()


def test_backoff_doubles_and_is_capped(settings):
    from webhooks.processing import retry_delay

    settings.OMA_WEBHOOK_RETRY_BASE_SECONDS = 30
    settings.OMA_WEBHOOK_RETRY_MAX_SECONDS = 1800
    for attempt, ceiling in [(1, 30), (2, 60), (3, 120), (7, 1800), (12, 1800)]:
        delay = retry_delay(attempt=attempt)
        assert ceiling / 2 <= delay <= ceiling


def test_a_failed_attempt_leaves_the_delivery_due_for_a_retry(store, settings):
    settings.GENSTORE_MAX_RETRIES = 0
    thin = encode({"order": {"orderId": "1001", "updatedAt": BASE_TIME.isoformat()}})
    received = delivery_receive(store=store, topic="orders/update", body=thin, headers={})
    result = deliveries_process(delivery_ids=[received.delivery_id])[received.delivery_id]
    assert result.state == State.RETRYING and result.retry_in is not None
    delivery = WebhookDelivery.objects.get(pk=received.delivery_id)
    assert delivery.state == State.RETRYING and delivery.attempts == 1
    # Should the retry message be lost, the outbox picks it up after the backoff.
    assert delivery.next_dispatch_at > timezone.now() + timedelta(seconds=result.retry_in)


def test_a_refused_token_fails_at_once_and_replay_processes_it_after_reconnecting(
    sandbox, sandbox_store, deliver, settings, django_capture_on_commit_callbacks
):
    settings.GENSTORE_MAX_RETRIES = 0
    order_id = sandbox.order_ids("shop1")[4]
    # Genstore refuses our token (a revoked install): no retry can help, so no retry is made.
    Store.objects.filter(pk=sandbox_store.pk).update(access_token="revoked-token")
    thin = {"order": {"orderId": order_id}}
    delivery = deliver(thin, secret=SANDBOX_SECRET)
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == (State.FAILED, 1)
    assert delivery.last_error.startswith("GenstoreAuthError")

    sandbox_store.save()  # the merchant reconnects: the right token is back
    with django_capture_on_commit_callbacks(execute=True):
        call_command("replay_webhooks", "--store", sandbox_store.domain, verbosity=0)
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.replay_count) == (State.PROCESSED, 1, 1)
    assert Order.objects.filter(order_id=order_id).exists()


def test_order_without_any_id_fails_permanently(store, deliver):
    delivery = deliver({"order": {"name": "#1", "updatedAt": BASE_TIME.isoformat()}})
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == (State.FAILED, 1)
    assert "GenstoreRecordError" in delivery.last_error


def test_ignored_topics_are_not_processed_or_replayed(store, post_webhook):
    post_webhook({"product": {"id": "1"}}, topic="products/create")
    from webhooks.replay import deliveries_replay

    assert deliveries_replay(deliveries=WebhookDelivery.objects.all()) == 0
    assert WebhookDelivery.objects.get().state == State.IGNORED


def test_a_batch_upserts_each_order_once_at_its_newest_version(store, other_store, settings):
    from webhooks.processing import deliveries_process

    settings.GENSTORE_MAX_RETRIES = 0

    def received(shop_store, payload) -> int:
        return delivery_receive(store=shop_store, topic="orders/update", body=encode(payload), headers={}).delivery_id

    ids = {
        "A2": received(store, order_json("A", version=2)),
        "A5": received(store, order_json("A", version=5)),
        "A1": received(store, order_json("A", version=1)),
        "B3": received(store, order_json("B", version=3)),
        "C1": received(other_store, order_json("C", version=1)),
        # Lacks updatedAt and the API is unreachable: this one fails alone, the rest of the batch goes through.
        "D": received(store, {"order": {"orderId": "D", "lineItems": []}}),
    }
    results = deliveries_process(delivery_ids=list(ids.values()))

    assert {name: results[pk].state for name, pk in ids.items()} == {
        "A2": State.PROCESSED, "A5": State.PROCESSED, "A1": State.PROCESSED, "B3": State.PROCESSED,
        "C1": State.PROCESSED, "D": State.RETRYING,
    }
    outcomes = dict(WebhookDelivery.objects.filter(pk__in=ids.values()).values_list("pk", "outcome"))
    assert outcomes[ids["A5"]] == "order A created"
    assert outcomes[ids["A2"]] == outcomes[ids["A1"]] == "order A stale"
    assert outcomes[ids["B3"]] == "order B created"
    order_a = Order.objects.get(store=store, order_id="A")
    assert order_a.genstore_updated_at == BASE_TIME + timedelta(minutes=5)
    assert Order.objects.get(order_id="C").store == other_store
    assert set(WebhookDelivery.objects.values_list("attempts", flat=True)) == {1}
    # A second run of the same batch (a redelivered message) finds nothing left to do, the retry included.
    assert {r.state for r in deliveries_process(delivery_ids=list(ids.values())).values()} == {"skipped"}


def test_order_payload_with_an_unreadable_line_item_is_completed_from_the_api(sandbox, sandbox_store, deliver):
    order_id = sandbox.order_ids("shop1")[6]
    payload = {"order": {**sandbox.order("shop1", order_id), "lineItems": ["not a line item"]}}
    delivery = deliver(payload, secret=SANDBOX_SECRET)
    delivery.refresh_from_db()
    assert delivery.outcome.endswith("(re-read from Genstore: payload had no lineItems)")
    truth = sandbox.canonical("shop1", order_id)
    assert Order.objects.get(order_id=order_id).line_items.count() == len(truth["lineItems"])
