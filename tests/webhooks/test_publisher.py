"""The web process's publisher thread, over real HTTP: gunicorn, a Redis broker of the test's own, no worker.

Each delivery is published once, right after its commit, many to a message; the outbox is not needed for any.
"""

from __future__ import annotations

import base64
import json
from collections import Counter

import pytest
import redis
from django.conf import settings

from oma.stores.models import Store
from tests.fixtures_celery import subprocess_env, wait_until
from tests.webhooks.payloads import SECRET, SHOP, encode, order_json
from tests.webhooks.sender import post_all, signed_delivery
from webhooks.dispatch import BATCH_SIZE
from webhooks.models import WebhookDelivery

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _published_ids(client: redis.Redis) -> list[list[int]]:
    """The delivery ids of each processing message waiting in the broker, in the webhook workload's queue."""
    messages = []
    for raw in client.lrange(settings.CELERY_TASK_ROUTES["webhooks.process_deliveries"]["queue"], 0, -1):
        message = json.loads(raw)
        assert message["headers"]["task"] == "webhooks.process_deliveries"
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        messages.append(args[0])
    return messages


def test_each_delivery_is_published_once_after_its_commit_many_to_a_message(
    transactional_db, private_redis, gunicorn_factory
) -> None:
    Store.objects.create(domain=SHOP, access_token="token", client_secret=SECRET, api_base_url="http://127.0.0.1:9")
    env = subprocess_env(broker_url=private_redis.url(), settings_module="tests.webhooks.server_settings",
                         extra={"LOG_LEVEL": "WARNING"})
    web = gunicorn_factory(env=env, workers=2, threads=8)
    deliveries = [
        signed_delivery(encode(order_json(str(5000 + n))), topic="orders/update", shop=SHOP, secret=SECRET,
                        webhook_id=f"wh-publish-{n}")
        for n in range(400)
    ]
    report = post_all(f"{web.base_url}/webhooks/genstore/", deliveries, concurrency=16)
    assert Counter(report.statuses) == {200: 400}, report.errors[:3]

    broker = redis.Redis.from_url(private_redis.url())
    stored = set(WebhookDelivery.objects.values_list("pk", flat=True))
    assert len(stored) == 400

    def all_published() -> bool:
        return sum(len(ids) for ids in _published_ids(broker)) >= len(stored)

    wait_until(all_published, timeout=15, what="every stored delivery published")
    messages = _published_ids(broker)
    published = Counter(delivery_id for ids in messages for delivery_id in ids)
    assert set(published) == stored and set(published.values()) == {1}
    assert all(len(ids) <= BATCH_SIZE for ids in messages)
    # Many to a message: 400 deliveries in a burst from two web processes need a few messages, not 400.
    assert len(messages) <= 400 // 10, [len(ids) for ids in messages]
    # The fast path did it all: no delivery had to wait for the outbox.
    assert set(WebhookDelivery.objects.values_list("dispatch_count", flat=True)) == {0}
