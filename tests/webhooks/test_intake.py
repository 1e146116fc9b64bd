"""Group commit of the intake INSERT: request threads of one process share statements, never their outcomes.

Rows written by one statement share one transaction, which PostgreSQL shows as one `xmin`; the tests queue rows
while a write is in flight (as another request thread's would be), then end it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import DataError, IntegrityError, connection, transaction

from oma.stores.models import Store
from tests.webhooks.payloads import encode, order_json
from webhooks.intake import group_inserter
from webhooks.models import WebhookDelivery
from webhooks.receive import ReceiveResult, delivery_receive

pytestmark = [pytest.mark.postgres]


def receive(store: Any, key: str) -> ReceiveResult:
    return delivery_receive(store=store, topic="orders/update", body=encode(order_json(key)), headers={"A": "b"},
                            webhook_id=f"wh-{key}", resource_id=key)


def queued_while_a_write_is_in_flight(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run each call in its own thread while another thread's write is in flight, and return each call's result
    (or the exception it raised).

    The write in flight is real: another thread's INSERT waits for a row with the same key that this test's
    transaction holds uncommitted. Once every call has queued its row, the transaction is rolled back, that write
    ends, and the queued rows are written after it. The in-flight delivery is removed at the end.
    """
    blocker = Store.objects.create(domain="in-flight.genmystore.com", access_token="t", client_secret="s")
    results: list[Any] = [None] * len(calls)

    def run(call: Callable[[], Any], index: int | None = None) -> None:
        try:
            result = call()
        except Exception as error:
            result = error
        finally:
            connection.close()
        if index is not None:
            results[index] = result

    in_flight = threading.Thread(target=run, args=(lambda: receive(blocker, "in-flight"),))
    threads = [threading.Thread(target=run, args=(call, index)) for index, call in enumerate(calls)]
    with transaction.atomic():
        receive(blocker, "in-flight")  # uncommitted: the same delivery from another thread waits for this row
        in_flight.start()
        wait_until(lambda: group_inserter._writing, "the in-flight write never started")
        for thread in threads:
            thread.start()
        wait_until(lambda: len(group_inserter._queue) == len(calls), "the threads never queued their rows")
        assert in_flight.is_alive(), "the in-flight write ended before the rows queued behind it"
        transaction.set_rollback(True)
    for thread in [in_flight, *threads]:
        thread.join(timeout=30)
    WebhookDelivery.objects.filter(store=blocker).delete()
    blocker.delete()
    return results


def wait_until(condition: Callable[[], Any], failure: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, failure
        time.sleep(0.01)


def transactions_of(ids: list[int]) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(DISTINCT xmin::text) FROM webhooks_webhookdelivery WHERE id = ANY(%s)", [ids])
        return cursor.fetchone()[0]


@pytest.fixture
def shop(transactional_db: None) -> Store:
    return Store.objects.create(domain="shop1.genmystore.com", access_token="t", client_secret="s")


def test_rows_queued_together_are_written_by_one_statement_and_each_thread_gets_its_own_id(shop) -> None:
    results = queued_while_a_write_is_in_flight([lambda n=n: receive(shop, str(1000 + n)) for n in range(8)])
    ids = [result.delivery_id for result in results]
    assert all(isinstance(delivery_id, int) for delivery_id in ids) and len(set(ids)) == 8
    assert transactions_of(ids) == 1
    for result, n in zip(results, range(8), strict=True):  # each id is the row of that thread's delivery
        delivery = WebhookDelivery.objects.get(pk=result.delivery_id)
        assert (delivery.resource_id, delivery.webhook_id) == (str(1000 + n), f"wh-{1000 + n}")
        assert delivery.headers == {"A": "b"} and delivery.state == "received" and delivery.attempts == 0
        assert delivery.next_dispatch_at > delivery.received_at


def test_two_copies_in_one_statement_store_one_row_and_one_is_the_duplicate(shop) -> None:
    receive(shop, "2000")  # already stored before the batch
    results = queued_while_a_write_is_in_flight([
        lambda: receive(shop, "2001"), lambda: receive(shop, "2001"), lambda: receive(shop, "2000"),
    ])
    assert sorted(result.duplicate for result in results) == [False, True, True]
    assert WebhookDelivery.objects.filter(webhook_id="wh-2001").count() == 1
    assert WebhookDelivery.objects.count() == 2


def test_a_row_of_an_erased_store_fails_alone(shop) -> None:
    erased = Store.objects.create(domain="gone.genmystore.com", access_token="t", client_secret="s")
    erased_identity = type("Identity", (), {"pk": erased.pk, "domain": erased.domain})()
    Store.objects.filter(pk=erased.pk).delete()
    results = queued_while_a_write_is_in_flight([
        lambda: receive(shop, "3001"), lambda: receive(erased_identity, "3002"), lambda: receive(shop, "3003"),
    ])
    assert isinstance(results[1], IntegrityError)
    assert not results[0].duplicate and not results[2].duplicate
    assert sorted(WebhookDelivery.objects.values_list("resource_id", flat=True)) == ["3001", "3003"]


def test_a_row_the_database_refuses_fails_alone(shop) -> None:
    too_long = type("Identity", (), {"pk": shop.pk, "domain": "x" * 300})()  # shop_domain holds 255
    with connection.cursor() as cursor:  # and a value a constraint refuses
        cursor.execute("ALTER TABLE webhooks_webhookdelivery ADD CONSTRAINT test_no_4003 CHECK (resource_id <> '4003')")
    try:
        results = queued_while_a_write_is_in_flight([
            lambda: receive(shop, "4001"), lambda: receive(too_long, "4002"), lambda: receive(shop, "4003"),
            lambda: receive(shop, "4004"),
        ])
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE webhooks_webhookdelivery DROP CONSTRAINT test_no_4003")
    assert isinstance(results[1], DataError) and isinstance(results[2], IntegrityError)
    assert not results[0].duplicate and not results[3].duplicate  # answered 200; the others get a 5xx and come again
    assert sorted(WebhookDelivery.objects.values_list("resource_id", flat=True)) == ["4001", "4004"]


def test_inside_a_transaction_a_row_is_written_alone_in_it(shop) -> None:
    with transaction.atomic():
        result = receive(shop, "5001")
        transaction.set_rollback(True)
    assert result.delivery_id is not None
    assert not WebhookDelivery.objects.exists()  # it went with the caller's transaction
