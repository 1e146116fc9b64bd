"""Webhook load for the outage scenarios: signed deliveries sent the way Genstore sends them (a non-2xx answer or
a dropped connection is sent again later), and the checks that each was processed once, to the newest version."""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlsplit

from oma.orders.models import Order
from oma.stores.models import Store
from tests.fixtures_celery import wait_until
from tests.webhooks.payloads import BASE_TIME, SECRET, SHOP, encode, order_json
from tests.webhooks.sender import Delivery, signed_delivery
from webhooks.models import WebhookDelivery

State = WebhookDelivery.State


def order_deliveries(order_ids: list[str], versions: int, *, seed: int) -> list[Delivery]:
    """Every version of every order (half with a webhook id, half deduplicated by body), shuffled."""
    deliveries = []
    for index, order_id in enumerate(order_ids):
        for version in range(1, versions + 1):
            webhook_id = f"wh-{order_id}-{version}" if index % 2 == 0 else None
            deliveries.append(signed_delivery(encode(order_json(order_id, version=version)), topic="orders/update",
                                              shop=SHOP, secret=SECRET, webhook_id=webhook_id))
    random.Random(seed).shuffle(deliveries)
    return deliveries


def webhook_store() -> Store:
    # A closed API port: the deliveries carry everything, nothing may call Genstore.
    return Store.objects.create(domain=SHOP, access_token="token-faults", client_secret=SECRET,
                                api_base_url="http://127.0.0.1:9")


@dataclass
class GenstoreLikeSender:
    """Sends each delivery until it gets a 2xx, pausing `retry_pause` after a failure (Genstore retries too)."""

    url: str
    deliveries: list[Delivery]
    concurrency: int = 2
    pace: float = 0.03  # pause between two sends of one thread: a steady stream rather than one burst
    retry_pause: float = 0.5
    give_up_after: float = 120.0
    final: list[int] = field(default_factory=list)
    answers: Counter = field(default_factory=Counter)  # every status seen, retries included (-1: no answer)
    done: int = 0

    def __post_init__(self) -> None:
        self.final = [0] * len(self.deliveries)
        self._lock = threading.Lock()
        self._next = 0
        self._threads: list[threading.Thread] = []

    def start(self) -> GenstoreLikeSender:
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(self.concurrency)]
        for thread in self._threads:
            thread.start()
        return self

    def join(self, timeout: float = 180) -> None:
        for thread in self._threads:
            thread.join(timeout=timeout)

    def _send(self, connection: http.client.HTTPConnection, path: str, delivery: Delivery) -> int:
        try:
            connection.request("POST", path, body=delivery.body, headers=delivery.headers)
            response = connection.getresponse()
            response.read()
            return response.status
        except (OSError, http.client.HTTPException):
            connection.close()
            return -1

    def _run(self) -> None:
        parts = urlsplit(self.url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=15)
        while True:
            with self._lock:
                index = self._next
                self._next += 1
            if index >= len(self.deliveries):
                break
            deadline = time.monotonic() + self.give_up_after
            while True:
                status = self._send(connection, parts.path, self.deliveries[index])
                with self._lock:
                    self.answers[status] += 1
                if 200 <= status < 300 or time.monotonic() > deadline:
                    break
                time.sleep(self.retry_pause)
            with self._lock:
                self.final[index] = status
                self.done += 1
            time.sleep(self.pace)
        connection.close()


def http_status(url: str) -> tuple[int, dict]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request("GET", parts.path)
        response = connection.getresponse()
        body = response.read()
        try:
            return response.status, json.loads(body)
        except ValueError:
            return response.status, {}
    except (OSError, http.client.HTTPException):
        return -1, {}
    finally:
        connection.close()


def wait_until_processed(expected: int, *, timeout: float, worker_log: str = "") -> None:
    def finished() -> bool:
        return WebhookDelivery.objects.filter(state=State.PROCESSED).count() >= expected

    try:
        wait_until(finished, timeout=timeout, interval=0.5, what=f"{expected} deliveries processed")
    except TimeoutError:
        states = Counter(WebhookDelivery.objects.values_list("state", flat=True))
        raise AssertionError(f"not all processed: {dict(states)}\n{worker_log}") from None


def assert_orders_at_version(store: Store, order_ids: list[str], version: int) -> None:
    orders = {order.order_id: order for order in Order.objects.filter(store=store)}
    assert set(orders) == set(order_ids)
    wrong = [order_id for order_id, order in orders.items()
             if order.genstore_updated_at != BASE_TIME + timedelta(minutes=version)
             or order.raw.get("note") != f"version {version}"]
    assert wrong == [], f"{len(wrong)} orders not at version {version}, e.g. {wrong[:5]}"


def assert_stored_once_and_processed(expected: int) -> Counter:
    """One row per distinct delivery, every one processed; returns the count of processing attempts per row."""
    assert WebhookDelivery.objects.count() == expected
    assert dict(Counter(WebhookDelivery.objects.values_list("state", flat=True))) == {State.PROCESSED: expected}
    return Counter(WebhookDelivery.objects.values_list("attempts", flat=True))
