"""The carrier transport against the carrier sandbox: tokens, refresh, rate limits, retries, error types."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from oma.core.ratelimit import LocalTokenBucket
from tests.tracking.conftest import ALL_DONE, EPOCH
from tracking.carriers.base import HttpCall, RateLimit
from tracking.carriers.registry import get_spec
from tracking.carriers.transport import (
    CarrierAuthError,
    CarrierConnection,
    CarrierError,
    CarrierTransport,
    CarrierUnavailable,
    MemoryTokenCache,
    RateBudgetExhausted,
)
from tracking.sandbox import CARRIERS, CarrierSandbox, numbers_for

FAST = RateLimit(requests=1000, per_seconds=1.0)


@pytest.fixture
def sandbox() -> Iterator[CarrierSandbox]:
    with CarrierSandbox(epoch=EPOCH, rate_limits=dict.fromkeys(CARRIERS, (1000, 1.0))) as running:
        running.set_clock(ALL_DONE)
        yield running


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def transport(
    sandbox: CarrierSandbox, carrier: str, *, rate_limit: RateLimit = FAST, **options: object
) -> CarrierTransport:
    credentials = (
        {"api_key": f"{carrier}-key"}
        if carrier in ("dhl", "17track")
        else {"client_id": f"{carrier}-id", "client_secret": f"{carrier}-secret"}
    )
    options.setdefault("limiter", LocalTokenBucket())
    options.setdefault("sleep", Sleeps())
    return CarrierTransport(
        get_spec(carrier),
        CarrierConnection(base_url=sandbox.base_url, rate_limit=rate_limit, limiter_key=carrier, **credentials),
        **options,
    )


def test_one_token_serves_many_calls_and_is_kept_in_the_cache(sandbox: CarrierSandbox) -> None:
    cache = MemoryTokenCache()
    ups = transport(sandbox, "ups", token_cache=cache)
    results = [ups.track([number])[0] for number in numbers_for("ups", 3)]
    assert all(result.found for result in results)
    assert sandbox.stats()["requests"]["ups.token"] == 1 and ups.stats.token_requests == 1
    token, expires_at = cache.load()
    assert token.startswith("ups-") and expires_at > datetime.now(UTC) + timedelta(minutes=55)

    # Another transport (another worker) sharing the cache reuses the token.
    other = transport(sandbox, "ups", token_cache=cache)
    other.track([next(numbers_for("ups", 1))])
    assert sandbox.stats()["requests"]["ups.token"] == 1


def test_the_token_is_refreshed_before_it_expires(sandbox: CarrierSandbox) -> None:
    clock = [datetime.now(UTC)]
    usps = transport(sandbox, "usps", now=lambda: clock[0])
    number = next(numbers_for("usps", 1))
    usps.track([number])
    clock[0] += timedelta(seconds=3600 - 30)  # still valid for 30 s: too close, refresh first
    usps.track([number])
    stats = sandbox.stats()["requests"]
    assert stats["usps.token"] == 2 and stats["usps.track"] == 2  # no request was sent with a dying token


def test_a_401_gets_one_fresh_token_and_the_call_succeeds(sandbox: CarrierSandbox) -> None:
    fedex = transport(sandbox, "fedex")
    numbers = list(numbers_for("fedex", 2))
    fedex.track(numbers)
    sandbox.revoke_tokens("fedex")

    results = fedex.track(numbers)

    assert [r.found for r in results] == [True, True]
    stats = sandbox.stats()
    assert stats["requests"]["fedex.token"] == 2 and stats["statuses"]["fedex.401"] == 1


def test_refused_client_credentials_raise_an_auth_error(sandbox: CarrierSandbox) -> None:
    sandbox.set_credentials("ups", client_id="real", client_secret="real")
    with pytest.raises(CarrierAuthError):
        transport(sandbox, "ups").track(list(numbers_for("ups", 1)))
    assert sandbox.stats()["requests"] == {"ups.token": 1}  # no retry of a refusal, no tracking call


def test_a_refused_api_key_raises_an_auth_error_without_retry(sandbox: CarrierSandbox) -> None:
    sandbox.set_credentials("dhl", api_key="the-real-key")
    with pytest.raises(CarrierAuthError):
        transport(sandbox, "dhl").track(list(numbers_for("dhl", 1)))
    assert sandbox.stats()["requests"]["dhl.track"] == 1


def test_transient_failures_are_retried_with_backoff(sandbox: CarrierSandbox) -> None:
    sleeps = Sleeps()
    dhl = transport(sandbox, "dhl", sleep=sleeps)
    sandbox.fail_next("dhl", 2, status=503)

    result = dhl.track(list(numbers_for("dhl", 1)))[0]

    assert result.found and dhl.stats.retries == 2 and len(sleeps.calls) == 2
    assert sandbox.stats()["requests"]["dhl.track"] == 3


def test_a_429_waits_for_retry_after(sandbox: CarrierSandbox) -> None:
    sleeps = Sleeps()
    dhl = transport(sandbox, "dhl", sleep=sleeps)
    sandbox.fail_next("dhl", 1, status=429)

    assert dhl.track(list(numbers_for("dhl", 1)))[0].found
    assert sleeps.calls and sleeps.calls[0] >= 1.0 and dhl.stats.rate_limited == 1


def test_a_carrier_that_stays_down_raises_unavailable_after_the_attempts(sandbox: CarrierSandbox) -> None:
    sandbox.fail_next("usps", 10, status=502)
    with pytest.raises(CarrierUnavailable) as caught:
        transport(sandbox, "usps", max_attempts=3).track(list(numbers_for("usps", 1)))
    assert caught.value.status_code == 502
    assert sandbox.stats()["statuses"]["usps.502"] == 3


def test_a_long_retry_after_is_not_waited_for_inside_a_call(sandbox: CarrierSandbox) -> None:
    sleeps = Sleeps()
    sandbox.set_down("17track", retry_after=120)
    with pytest.raises(CarrierUnavailable) as caught:
        transport(sandbox, "17track", sleep=sleeps).register(["RR000000014CN"])
    assert caught.value.retry_after == 120 and sleeps.calls == []


def test_a_permanent_error_is_not_retried(sandbox: CarrierSandbox) -> None:
    fedex = transport(sandbox, "fedex")
    numbers = tuple(numbers_for("fedex", 31))
    too_many = HttpCall(
        method="POST", path="/track/v1/trackingnumbers", numbers=numbers,
        json={"trackingInfo": [{"trackingNumberInfo": {"trackingNumber": n}} for n in numbers]},
    )
    with pytest.raises(CarrierError) as caught:
        fedex.execute(too_many)
    assert not isinstance(caught.value, CarrierUnavailable) and caught.value.status_code == 400
    assert sandbox.stats()["requests"]["fedex.track"] == 1


def test_timeouts_are_transient(sandbox: CarrierSandbox) -> None:
    sandbox.set_latency("dhl", 0.6)
    dhl = transport(sandbox, "dhl", read_timeout=0.15, max_attempts=2)
    with pytest.raises(CarrierUnavailable):
        dhl.track(list(numbers_for("dhl", 1)))
    assert dhl.stats.requests == 2


def test_an_unreachable_carrier_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dead = CarrierTransport(
        get_spec("dhl"), CarrierConnection(base_url=f"http://127.0.0.1:{port}", api_key="k", rate_limit=FAST),
        limiter=LocalTokenBucket(), sleep=Sleeps(), max_attempts=2,
    )
    with pytest.raises(CarrierUnavailable):
        dead.track(["3000000010"])


def test_requests_are_paced_to_the_rate_limit(sandbox: CarrierSandbox) -> None:
    """The sandbox enforces DHL's published 1 request a second; four paced requests meet no 429."""
    sandbox.set_rate_limit("dhl", 1, 1.0)
    dhl = transport(sandbox, "dhl", rate_limit=get_spec("dhl").default_rate_limit, sleep=time.sleep)
    results = dhl.track(list(numbers_for("dhl", 4)))
    assert len(results) == 4 and all(r.found for r in results)
    assert sandbox.stats()["rate_limited"]["dhl"] == 0 and dhl.stats.rate_limited == 0


def test_the_sandbox_refuses_what_the_limit_does_not_allow(sandbox: CarrierSandbox) -> None:
    """The same calls with no pacing on our side: the sandbox's 429 proves the limit is real."""
    sandbox.set_rate_limit("dhl", 1, 1.0)
    unpaced = transport(sandbox, "dhl", rate_limit=RateLimit(1000, 1.0), max_attempts=1)
    numbers = list(numbers_for("dhl", 2))
    unpaced.track(numbers[:1])
    with pytest.raises(CarrierUnavailable):
        unpaced.track(numbers[1:])
    assert sandbox.stats()["rate_limited"]["dhl"] == 1


def test_when_the_rate_budget_is_spent_nothing_is_sent(sandbox: CarrierSandbox) -> None:
    usps = transport(sandbox, "usps", rate_limit=RateLimit(1, 3600.0), rate_limit_wait=0.01)
    numbers = list(numbers_for("usps", 2))
    usps.track(numbers[:1])
    with pytest.raises(RateBudgetExhausted) as caught:
        usps.track(numbers[1:])
    assert caught.value.retry_after > 60 and sandbox.stats()["requests"]["usps.track"] == 1


def test_17track_answers_only_for_registered_numbers(sandbox: CarrierSandbox) -> None:
    from tracking.carriers.seventeentrack import needs_registration

    seventeen = transport(sandbox, "17track")
    numbers = list(numbers_for("17track", 45))
    before = seventeen.track(numbers[:2])
    assert all(needs_registration(result) for result in before)

    seventeen.register(numbers)
    after = seventeen.track(numbers)

    assert len(after) == 45 and all(result.found for result in after)
    requests = sandbox.stats()["requests"]
    assert requests["17track.register"] == 2 and requests["17track.gettrackinfo"] == 3
    assert sandbox.registered_numbers("17track-key") == set(numbers)
