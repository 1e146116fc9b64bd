"""The unified status write and the order upsert lock orders in the same order: they wait, never deadlock."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction

from oma.fulfillment.services.unified_status import orders_unified_status_refresh
from oma.orders.models import Order
from oma.stores.models import Store

pytestmark = [pytest.mark.postgres]


def _waiting_for_a_lock() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # inside a transaction the view would not change
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        return cursor.fetchone()[0]


def test_a_status_refresh_waits_for_an_upsert_holding_its_orders_instead_of_deadlocking(transactional_db) -> None:
    store = Store.objects.create(domain="locks.genmystore.com", access_token="t", client_secret="s")
    # Created in reverse: the ids run against the orderId order in which the upsert locks them.
    second = Order.objects.create(store=store, order_id="B-2", financial_status="paid")
    first = Order.objects.create(store=store, order_id="A-1", financial_status="paid")
    errors: list[BaseException] = []
    first_locked = threading.Event()

    def upsert_like_writer() -> None:
        """What orders_upsert_page does: lock the page's orders in orderId order, holding each until commit."""
        try:
            with transaction.atomic():
                list(Order.objects.select_for_update().filter(pk=first.pk))
                first_locked.set()
                deadline = time.monotonic() + 10
                while _waiting_for_a_lock() == 0 and time.monotonic() < deadline:  # the refresh waits for us
                    time.sleep(0.02)
                list(Order.objects.select_for_update().filter(pk=second.pk))
                Order.objects.filter(pk__in=[first.pk, second.pk]).update(name="written by the upsert")
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    def refresh() -> None:
        try:
            orders_unified_status_refresh(order_ids=[second.pk, first.pk])
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    writer = threading.Thread(target=upsert_like_writer)
    writer.start()
    assert first_locked.wait(10)
    refresher = threading.Thread(target=refresh)
    refresher.start()
    writer.join(30)
    refresher.join(30)
    assert errors == []
    for order in Order.objects.filter(pk__in=[first.pk, second.pk]):
        assert order.name == "written by the upsert" and order.unified_status != ""
