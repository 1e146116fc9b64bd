"""Polling end to end against the carrier sandbox: batching, statuses, idempotency, outages, routing, claims."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from oma.stores.models import Store
from tests.tracking.conftest import ALL_DONE, EPOCH, add_sandbox_account, make_store
from tracking.models import CarrierAccount, Shipment, TrackingEvent
from tracking.polling import claim_shipments, poll_due_shipments, release_claims
from tracking.sandbox import CARRIERS, CarrierSandbox, Scenario, numbers_for
from tracking.sandbox.journeys import ROTATION
from tracking.services import shipment_add

pytestmark = pytest.mark.django_db

DETECTED = {"ups": "ups", "fedex": "fedex", "usps": "usps", "dhl": "dhl", "17track": "s10"}


def add_shipments(store: Store, carrier: str, count: int, *, start: int = 1) -> list[Shipment]:
    return [
        shipment_add(store=store, tracking_number=number, source=Shipment.Source.MANUAL)
        for number in numbers_for(carrier, count, start=start)
    ]


def bulk_shipments(store: Store, carrier: str, count: int, *, start: int = 1) -> None:
    """Many due shipments at once (detection is tested elsewhere: the carrier is set as detection would)."""
    Shipment.objects.bulk_create(
        Shipment(store=store, tracking_number=number, carrier=DETECTED[carrier], next_poll_at=timezone.now())
        for number in numbers_for(carrier, count, start=start)
    )


def make_due(queryset=None) -> None:
    (queryset if queryset is not None else Shipment.objects.all()).update(
        next_poll_at=timezone.now() - timedelta(seconds=1)
    )


def test_every_carrier_and_scenario_ends_in_its_scripted_status(
    store: Store, carrier_sandbox: CarrierSandbox, sandbox_accounts: dict[str, CarrierAccount]
) -> None:
    for carrier in CARRIERS:
        for index, number in enumerate(numbers_for(carrier, len(ROTATION))):
            carrier_sandbox.script(number, ROTATION[index])
        add_shipments(store, carrier, len(ROTATION))
    assert set(Shipment.objects.values_list("carrier", flat=True)) == set(DETECTED.values())

    summary = poll_due_shipments()

    assert summary.polled == 5 * len(ROTATION) and summary.failed == 0 and summary.rate_limited == 0
    for shipment in Shipment.objects.all():
        assert shipment.status == carrier_sandbox.expected_final_status(shipment.tracking_number), shipment
        assert shipment.events.exists()
        assert shipment.last_event_at == shipment.events.order_by("-occurred_at").first().occurred_at
    delivered = Shipment.objects.filter(status="delivered")
    assert delivered.count() == 5 * 4  # delivered, delayed, failed attempt then delivered, not found at first
    assert all(s.delivered_at is not None and s.next_poll_at is None for s in delivered)
    assert Shipment.objects.filter(status="available_for_pickup", next_poll_at__isnull=False).count() == 5
    # Each answer was stored against the account that gave it; 17TRACK numbers were registered once.
    assert not Shipment.objects.filter(carrier_account__isnull=True).exists()
    assert Shipment.objects.filter(registered_with=sandbox_accounts["17track"]).count() == len(ROTATION)


def test_requests_are_batch_optimal_and_a_second_poll_adds_no_event(
    store: Store, carrier_sandbox: CarrierSandbox, sandbox_accounts: dict[str, CarrierAccount]
) -> None:
    counts = {"ups": 3, "fedex": 65, "usps": 2, "dhl": 4, "17track": 81}
    for carrier, count in counts.items():
        bulk_shipments(store, carrier, count)

    first = poll_due_shipments()
    stats = carrier_sandbox.stats()
    requests = stats["requests"]
    assert requests["ups.track"] == 3 and requests["usps.track"] == 2 and requests["dhl.track"] == 4
    assert requests["fedex.track"] == math.ceil(65 / 30) == 3
    assert requests["17track.register"] == requests["17track.gettrackinfo"] == math.ceil(81 / 40) == 3
    assert requests["ups.token"] == requests["fedex.token"] == requests["usps.token"] == 1
    assert stats["max_batch"]["fedex"] == 30 and stats["max_batch"]["17track"] == 40
    assert sum(stats["rate_limited"].values()) == 0
    assert first.polled == sum(counts.values())
    # The OAuth token lives on the account row (encrypted), for every worker to reuse.
    ups_account = CarrierAccount.objects.get(pk=sandbox_accounts["ups"].pk)
    assert ups_account.oauth_token.startswith("ups-") and ups_account.oauth_token_expires_at > timezone.now()
    with connection.cursor() as cursor:
        cursor.execute("SELECT oauth_token FROM tracking_carrieraccount WHERE id = %s", [ups_account.pk])
        assert not cursor.fetchone()[0].startswith("ups-")
    events = TrackingEvent.objects.count()
    assert first.events_added == events > 0

    make_due(Shipment.objects.all())
    still_moving = Shipment.objects.exclude(status__in=["delivered", "cancelled", "expired"]).exclude(
        substatus="returned_completed"
    )
    second = poll_due_shipments()
    assert second.polled == still_moving.count() > 0  # terminal shipments are never asked again
    assert second.events_added == 0 and second.status_changed == 0
    assert TrackingEvent.objects.count() == events
    # Registered numbers are not registered again; tokens are reused from the account rows.
    assert carrier_sandbox.stats()["requests"]["17track.register"] == 3
    assert carrier_sandbox.stats()["requests"]["ups.token"] == 1


def test_journeys_advance_with_the_sandbox_clock(
    store: Store, carrier_sandbox: CarrierSandbox, sandbox_accounts: dict[str, CarrierAccount]
) -> None:
    number = next(numbers_for("ups", 1))
    carrier_sandbox.script(number, Scenario.FAILED_ATTEMPT)
    shipment = shipment_add(store=store, tracking_number=number)
    start = carrier_sandbox.journey(number)[0].at

    carrier_sandbox.set_clock(start + timedelta(hours=10))  # picked up and departed
    poll_due_shipments()
    shipment.refresh_from_db()
    assert shipment.status == "in_transit" and shipment.events.count() == 3
    in_transit_poll = shipment.next_poll_at

    carrier_sandbox.set_clock(start + timedelta(hours=52))  # out for delivery, then the failed attempt
    make_due(Shipment.objects.filter(pk=shipment.pk))
    poll_due_shipments()
    shipment.refresh_from_db()
    assert shipment.status == "attempt_failed" and shipment.events.count() == 6
    assert in_transit_poll is not None

    carrier_sandbox.set_clock(ALL_DONE)
    make_due(Shipment.objects.filter(pk=shipment.pk))
    poll_due_shipments()
    shipment.refresh_from_db()
    assert shipment.status == "delivered" and shipment.events.count() == 8 and shipment.next_poll_at is None
    assert shipment.signed_by == "J. SMITH"


def test_not_found_at_first_stays_pending_and_is_asked_again_soon(
    store: Store, carrier_sandbox: CarrierSandbox, sandbox_accounts: dict[str, CarrierAccount]
) -> None:
    number = next(numbers_for("dhl", 1))
    carrier_sandbox.script(number, Scenario.NOT_FOUND_FIRST)
    shipment = shipment_add(store=store, tracking_number=number)
    carrier_sandbox.set_clock(EPOCH)

    summary = poll_due_shipments()

    shipment.refresh_from_db()
    assert summary.not_found == 1 and summary.failed == 0
    assert shipment.status == "pending" and shipment.last_error and shipment.consecutive_failures == 0
    assert timedelta(minutes=20) < shipment.next_poll_at - timezone.now() < timedelta(hours=1)


def test_a_carrier_outage_backs_the_account_off_and_loses_nothing(
    store: Store, carrier_sandbox: CarrierSandbox, sandbox_accounts: dict[str, CarrierAccount]
) -> None:
    add_shipments(store, "fedex", 40)
    add_shipments(store, "ups", 3)
    carrier_sandbox.set_down("fedex")

    summary = poll_due_shipments()

    fedex = sandbox_accounts["fedex"]
    fedex.refresh_from_db()
    assert fedex.backoff_until is not None and fedex.backoff_until > timezone.now()
    assert fedex.consecutive_failures == 1 and "503" in fedex.last_error
    assert summary.deferred == 40 and summary.polled == 3 and summary.accounts_backed_off
    fedex_shipments = Shipment.objects.filter(carrier="fedex")
    # Nothing lost: every FedEx shipment is still due, unclaimed, untouched.
    assert fedex_shipments.filter(next_poll_at__lte=timezone.now(), poll_claim_token="", status="pending").count() == 40
    assert not TrackingEvent.objects.filter(shipment__carrier="fedex").exists()

    # While backed off, the account is not asked at all.
    requests_before = carrier_sandbox.stats()["requests_by_carrier"]["fedex"]
    again = poll_due_shipments()
    assert again.deferred == 40 and carrier_sandbox.stats()["requests_by_carrier"]["fedex"] == requests_before

    # A second failure doubles the backoff.
    CarrierAccount.objects.filter(pk=fedex.pk).update(backoff_until=timezone.now() - timedelta(seconds=1))
    poll_due_shipments()
    fedex.refresh_from_db()
    assert fedex.consecutive_failures == 2
    assert timedelta(seconds=100) < fedex.backoff_until - timezone.now() <= timedelta(seconds=120)

    # The carrier is back and the backoff is over: everything is polled, and the account is healthy again.
    carrier_sandbox.set_down("fedex", False)
    CarrierAccount.objects.filter(pk=fedex.pk).update(backoff_until=timezone.now() - timedelta(seconds=1))
    recovered = poll_due_shipments()
    fedex.refresh_from_db()
    assert recovered.polled == 40 and fedex.consecutive_failures == 0 and fedex.backoff_until is None
    assert not fedex_shipments.filter(status="pending").exists()


def test_refused_credentials_back_the_account_off(
    store: Store, carrier_sandbox: CarrierSandbox, sandbox_accounts: dict[str, CarrierAccount]
) -> None:
    carrier_sandbox.set_credentials("usps", client_id="right", client_secret="right")
    add_shipments(store, "usps", 2)

    summary = poll_due_shipments()

    usps = sandbox_accounts["usps"]
    usps.refresh_from_db()
    assert summary.deferred == 2 and usps.backoff_until is not None and "credentials" in usps.last_error
    assert usps.backoff_until - timezone.now() >= timedelta(minutes=4)
    assert Shipment.objects.filter(carrier="usps", next_poll_at__lte=timezone.now()).count() == 2


def test_transient_failures_are_retried_within_the_poll(
    store: Store, carrier_sandbox: CarrierSandbox, sandbox_accounts: dict[str, CarrierAccount]
) -> None:
    add_shipments(store, "dhl", 3)
    carrier_sandbox.fail_next("dhl", 2, status=502)

    summary = poll_due_shipments()

    assert summary.polled == 3 and summary.failed == 0 and summary.deferred == 0
    assert carrier_sandbox.stats()["requests"]["dhl.track"] == 5


def test_numbers_without_an_account_go_to_17track_or_wait_with_a_clear_error(
    store: Store, carrier_sandbox: CarrierSandbox
) -> None:
    ups = add_shipments(store, "ups", 2)
    s10 = add_shipments(store, "17track", 1)

    summary = poll_due_shipments()

    assert summary.without_account == 3 and summary.polled == 0
    for shipment in Shipment.objects.all():
        assert "No carrier account" in shipment.last_error
        assert shipment.next_poll_at <= timezone.now()  # still due: polled as soon as an account exists

    seventeen = add_sandbox_account(carrier_sandbox, "17track")
    summary = poll_due_shipments()
    assert summary.polled == 3 and summary.without_account == 0
    for shipment in [*ups, *s10]:
        shipment.refresh_from_db()
        assert shipment.carrier_account == seventeen and shipment.last_error == ""
        assert shipment.status == carrier_sandbox.expected_final_status(shipment.tracking_number)
    assert carrier_sandbox.stats()["requests"]["17track.gettrackinfo"] == 1
    assert "ups.track" not in carrier_sandbox.stats()["requests"]


def test_a_stores_own_account_wins_over_the_shared_one(
    store: Store, carrier_sandbox: CarrierSandbox, sandbox_accounts: dict[str, CarrierAccount]
) -> None:
    other = make_store("shop2.genmystore.com")
    own = add_sandbox_account(carrier_sandbox, "dhl", store=store)
    mine = add_shipments(store, "dhl", 2)
    theirs = add_shipments(other, "dhl", 2, start=100)

    poll_due_shipments()

    assert {s.carrier_account_id for s in Shipment.objects.filter(pk__in=[s.pk for s in mine])} == {own.pk}
    shared = sandbox_accounts["dhl"].pk
    assert {s.carrier_account_id for s in Shipment.objects.filter(pk__in=[s.pk for s in theirs])} == {shared}


def test_inactive_stores_terminal_and_future_shipments_are_not_polled(
    store: Store, carrier_sandbox: CarrierSandbox, sandbox_accounts: dict[str, CarrierAccount]
) -> None:
    paused = make_store("paused.genmystore.com", is_active=False)
    add_shipments(paused, "ups", 1)
    later = add_shipments(store, "ups", 1, start=50)[0]
    Shipment.objects.filter(pk=later.pk).update(next_poll_at=timezone.now() + timedelta(hours=1))
    done = add_shipments(store, "ups", 1, start=60)[0]
    Shipment.objects.filter(pk=done.pk).update(status="delivered")

    summary = poll_due_shipments()

    assert summary.polled == 0 and "ups.track" not in carrier_sandbox.stats()["requests"]


def test_poll_of_one_store_and_limit(
    store: Store, carrier_sandbox: CarrierSandbox, sandbox_accounts: dict[str, CarrierAccount]
) -> None:
    other = make_store("shop2.genmystore.com")
    add_shipments(store, "ups", 3)
    add_shipments(other, "ups", 3, start=10)

    assert poll_due_shipments(store=other).polled == 3
    assert Shipment.objects.filter(store=store, last_polled_at__isnull=True).count() == 3
    assert poll_due_shipments(limit=2).polled == 2


def test_two_dispatchers_never_claim_the_same_shipment(store: Store) -> None:
    for number in numbers_for("ups", 10):
        Shipment.objects.create(store=store, tracking_number=number, carrier="ups", next_poll_at=timezone.now())
    from django.db.models import Q

    everything = Q(carrier="ups")
    token_a, first = claim_shipments(route=everything, limit=6, now=timezone.now())
    token_b, second = claim_shipments(route=everything, limit=6, now=timezone.now())

    assert len(first) == 6 and len(second) == 4
    assert not {s.pk for s in first} & {s.pk for s in second}
    assert claim_shipments(route=everything, limit=6, now=timezone.now())[1] == []
    # A released claim makes the shipments due again; an expired lease does too.
    assert release_claims(token=token_a) == 6
    assert len(claim_shipments(route=everything, limit=10, now=timezone.now())[1]) == 6
    expired = timezone.now() + timedelta(hours=1)
    assert len(claim_shipments(route=everything, limit=10, now=expired)[1]) == 10
    assert token_b


def test_the_rate_limit_is_kept_with_the_published_figures(
    store: Store, carrier_sandbox: CarrierSandbox
) -> None:
    """17TRACK allows 3 requests a second: 9 requests go through without a single 429."""
    carrier_sandbox.set_rate_limit("17track", 3, 1.0)
    add_sandbox_account(carrier_sandbox, "17track", rate_limit=(3, 1.0))
    bulk_shipments(store, "17track", 160)

    summary = poll_due_shipments()

    stats = carrier_sandbox.stats()
    assert summary.polled == 160 and summary.rate_limited == 0
    assert stats["requests"]["17track.register"] == 4 and stats["requests"]["17track.gettrackinfo"] == 4
    assert stats["rate_limited"]["17track"] == 0


def test_the_rate_budget_of_a_run_is_bounded_and_the_rest_stays_due(
    store: Store, carrier_sandbox: CarrierSandbox, settings
) -> None:
    """USPS's 60 requests an hour: a run sends what the bucket allows and leaves the rest due, unclaimed."""
    settings.TRACKING_RATE_LIMIT_MAX_WAIT_SECONDS = 0.05
    carrier_sandbox.set_rate_limit("usps", 2, 3600.0)
    add_sandbox_account(carrier_sandbox, "usps", rate_limit=(2, 3600.0))
    add_shipments(store, "usps", 5)

    summary = poll_due_shipments()

    assert summary.polled == 2 and summary.deferred == 3 and not summary.accounts_backed_off
    assert carrier_sandbox.stats()["rate_limited"]["usps"] == 0
    assert Shipment.objects.filter(next_poll_at__lte=timezone.now(), poll_claim_token="").count() == 3
