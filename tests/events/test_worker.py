"""End to end through a real Celery worker: a failure committed in this process becomes an alert.* event that the
worker (its own process, on the `pushes` queue) delivers to the receiver, signed, exactly once."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from django.db import transaction

from oma.events.models import EventDelivery
from oma.fulfillment.models import FulfillmentPush
from tests.admin.factories import OrderFactory, ShipmentFactory
from tests.events.conftest import Receiver, signature_valid, subscribe
from tests.faults.processes import celery_app_publishing_to
from tests.fixtures_celery import (  # noqa: F401 (fixtures)
    CeleryWorker,
    RedisServer,
    celery_worker_factory,
    private_redis,
    subprocess_env,
    wait_until,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def test_a_worker_delivers_the_alert_of_a_committed_failure_once(
    transactional_db, store, receiver: Receiver, trusted_localhost, private_redis: RedisServer,  # noqa: F811
    celery_worker_factory: Callable[..., CeleryWorker],  # noqa: F811
):
    subscription = subscribe(store, receiver, "alert.push_failed")
    env = subprocess_env(broker_url=private_redis.url(),
                         extra={"LOG_LEVEL": "WARNING", "OMA_MERCHANT_API_HOSTS": "127.0.0.1"})
    celery_worker_factory(env=env, concurrency=1, queues="pushes")
    order = OrderFactory(store=store)
    shipment = ShipmentFactory(order=order)
    push = FulfillmentPush.objects.create(
        key=FulfillmentPush.key_for(store_id=store.pk, order_id=order.order_id, shipment_id=shipment.pk),
        store=store, order=order, shipment=shipment,
    )
    with celery_app_publishing_to(private_redis.url()), transaction.atomic():
        push.state, push.last_error = FulfillmentPush.State.FAILED, "Genstore refused the push"
        push.save(update_fields=["state", "last_error"])
        time.sleep(0.5)
        assert receiver.received == []  # nothing leaves before the commit

    wait_until(lambda: EventDelivery.objects.filter(state="delivered").exists(), timeout=30, what="the delivery")
    time.sleep(1.0)  # a second send would arrive by now
    (request,) = receiver.received
    assert signature_valid(secret=subscription.secret, headers=request.headers, body=request.body)
    assert request.json["type"] == "alert.push_failed"
    assert request.json["data"]["push"]["id"] == push.pk
