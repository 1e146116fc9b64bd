"""A carrier down for a while: polls of its shipments wait, the other carriers are not held up, nothing is lost.

The carrier sandbox answers 503 (with Retry-After) to everything UPS while a real worker runs `tracking.poll_due`
every second (as beat does every minute). Then UPS comes back.

Checked: during the outage USPS shipments are polled to their final status; UPS shipments stay due (not failed,
not dropped) and the UPS account is backed off, so UPS is asked far less than once a tick; /metrics shows the UPS
shipments due, the polling lag and the backed-off account. After the outage every UPS shipment reaches its final
status, no event is stored twice, and the account's failure count is reset.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.db.models import Count
from django.test import Client
from django.utils import timezone

from oma.stores.models import Store
from tests.fixtures_celery import wait_until
from tests.tracking.conftest import ALL_DONE, EPOCH, FAST_LIMITS, add_sandbox_account
from tracking.models import CarrierAccount, Shipment, TrackingEvent
from tracking.polling import forget_transports
from tracking.sandbox import CarrierSandbox, numbers_for
from tracking.services import shipment_add
from tracking.tasks import poll_due

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def carriers() -> Iterator[CarrierSandbox]:
    sandbox = CarrierSandbox(port=0, epoch=EPOCH, rate_limits=FAST_LIMITS).start()
    sandbox.set_clock(ALL_DONE)
    yield sandbox
    sandbox.stop()
    forget_transports()


def final(carriers: CarrierSandbox, shipments) -> bool:
    return all(s.status == carriers.expected_final_status(s.tracking_number) for s in shipments.all())  # fresh


def scrape() -> dict[str, float]:
    from oma.ops import metrics

    metrics._cache = None
    samples = {}
    for line in Client().get("/metrics").content.decode().splitlines():
        if not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_a_carrier_down_for_a_while_delays_its_polls_and_loses_none(
    transactional_db, broker, counters_in, app_env, celery_worker_factory, carriers
):
    store = Store.objects.create(domain="shop1.genmystore.com", access_token="token", client_secret="secret")
    for carrier in ("ups", "usps"):
        add_sandbox_account(carriers, carrier)
    for carrier in ("ups", "usps"):
        for number in numbers_for(carrier, 10, start=700):
            shipment_add(store=store, tracking_number=number, carrier=carrier)
    ups = Shipment.objects.filter(carrier="ups")
    usps = Shipment.objects.filter(carrier="usps")
    celery_worker_factory(env=app_env, concurrency=2)

    carriers.set_down("ups", retry_after=1)

    def usps_done_and_ups_backed_off() -> bool:
        poll_due.delay()
        return final(carriers, usps) and CarrierAccount.objects.filter(
            carrier="ups", backoff_until__isnull=False).exists()

    wait_until(usps_done_and_ups_backed_off, timeout=60, interval=1, what="USPS polled while UPS is down")
    carriers.reset_stats()
    outage_ticks = 6
    for _ in range(outage_ticks):  # the outage goes on; beat keeps ticking
        poll_due.delay()
        time.sleep(1)
    ups_requests_during_outage = carriers.stats()["requests_by_carrier"].get("ups", 0)
    assert all(s.status == "pending" and s.next_poll_at is not None for s in ups.all()), "UPS shipments must stay due"
    # Unbacked, it would be asked up to 3 times (attempts) every tick.
    assert ups_requests_during_outage <= outage_ticks * 3 // 2, "a backed-off carrier is not asked on every tick"
    def resting() -> bool:  # scrape while the account rests (its backoff is a few seconds at a time)
        poll_due.delay()
        return CarrierAccount.objects.filter(
            carrier="ups", is_active=True, backoff_until__gt=timezone.now() + timedelta(seconds=1)).exists()

    wait_until(resting, timeout=30, interval=0.2, what="the UPS account resting")
    during = scrape()
    assert during['oma_shipments_due{carrier="ups"}'] == 10
    assert during['oma_shipments_polling_lag_seconds{carrier="ups"}'] > 0
    assert during['oma_carrier_accounts_backed_off{carrier="ups"}'] == 1
    assert 'oma_shipments_due{carrier="usps"}' not in during

    carriers.set_down("ups", False)

    def ups_done() -> bool:
        poll_due.delay()
        return final(carriers, ups)

    wait_until(ups_done, timeout=60, interval=1, what="UPS polled after the outage")
    assert final(carriers, Shipment.objects.all())
    assert not TrackingEvent.objects.values("shipment", "key").annotate(n=Count("pk")).filter(n__gt=1).exists()
    assert CarrierAccount.objects.get(carrier="ups", is_active=True).consecutive_failures == 0
    after = scrape()
    assert 'oma_shipments_due{carrier="ups"}' not in after
    assert after.get('oma_carrier_accounts_backed_off{carrier="ups"}', 0) == 0
    print(f"\nUPS down: USPS polled meanwhile; UPS asked {ups_requests_during_outage} times in {outage_ticks} ticks "
          f"of the outage; all 20 shipments at their final status afterwards")
