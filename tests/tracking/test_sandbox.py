"""The carrier sandbox: wire formats the carrier parsers read, journeys, clock, limits, faults, counters."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta

import pytest

from oma.core.ratelimit import LocalTokenBucket
from tests.tracking.conftest import ALL_DONE, EPOCH
from tracking.carriers.registry import get_spec
from tracking.carriers.transport import CarrierConnection, CarrierTransport
from tracking.detection import detect
from tracking.sandbox import CARRIERS, CarrierSandbox, SandboxProcess, Scenario, numbers_for, scenario_for
from tracking.sandbox.journeys import FINAL_STATUS, ROTATION, journey

DETECTED = {"ups": "ups", "fedex": "fedex", "usps": "usps", "dhl": "dhl", "17track": "s10"}


@pytest.fixture
def sandbox() -> Iterator[CarrierSandbox]:
    with CarrierSandbox(epoch=EPOCH, rate_limits=dict.fromkeys(CARRIERS, (1000, 1.0))) as running:
        running.set_clock(ALL_DONE)
        yield running


def client(sandbox: CarrierSandbox, carrier: str) -> CarrierTransport:
    return CarrierTransport(
        get_spec(carrier),
        CarrierConnection(base_url=sandbox.base_url, client_id="id", client_secret="secret", api_key="key"),
        limiter=LocalTokenBucket(),
    )


def call(sandbox: CarrierSandbox, method: str, path: str, body: object = None, headers: dict | None = None):
    request = urllib.request.Request(
        sandbox.base_url + path, method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null"), dict(error.headers)


@pytest.mark.parametrize("carrier", CARRIERS)
def test_every_scenario_parses_to_its_final_status_in_the_carriers_wire_format(
    sandbox: CarrierSandbox, carrier: str
) -> None:
    """Sandbox -> transport -> the carrier module's own parser: the formats agree, for every journey."""
    numbers = list(numbers_for(carrier, len(ROTATION)))
    for number, scenario in zip(numbers, ROTATION, strict=True):
        sandbox.script(number, scenario)
    transport = client(sandbox, carrier)
    transport.register(numbers)

    results = transport.track(numbers)

    assert [r.tracking_number for r in results] == numbers
    for result in results:
        steps = sandbox.journey(result.tracking_number)
        assert result.found and result.status == sandbox.expected_final_status(result.tracking_number), result
        assert len(result.events) == len(steps)
        # Event times are the journey's UTC times, whatever local offset the carrier wrote them with.
        assert sorted(e.occurred_at for e in result.events) == [step.at for step in steps]
        if result.status == "delivered":
            assert result.delivered_at == steps[-1].at


@pytest.mark.parametrize("carrier", CARRIERS)
def test_numbers_are_valid_for_their_carrier(carrier: str) -> None:
    for number in numbers_for(carrier, 25, start=1000):
        best = next(c for c in detect(number) if c.valid)
        assert best.carrier == DETECTED[carrier], number


def test_journeys_are_deterministic_and_cover_every_scenario() -> None:
    numbers = [n for carrier in CARRIERS for n in numbers_for(carrier, 200)]
    assert {scenario_for(n) for n in numbers} == set(ROTATION)
    assert journey(numbers[0], EPOCH) == journey(numbers[0], EPOCH)
    assert FINAL_STATUS[Scenario.NEVER_FOUND] == "pending"


def test_what_is_visible_follows_the_clock(sandbox: CarrierSandbox) -> None:
    number = next(numbers_for("usps", 1))
    sandbox.script(number, Scenario.NOT_FOUND_FIRST)
    usps = client(sandbox, "usps")
    start = sandbox.journey(number)[0].at

    sandbox.set_clock(start - timedelta(hours=1))
    assert not usps.track([number])[0].found  # a 404 the parser turns into "not found"
    sandbox.set_clock(start + timedelta(hours=6))
    assert usps.track([number])[0].status == "in_transit"
    sandbox.advance(timedelta(days=5))
    assert usps.track([number])[0].status == "delivered"


def test_batch_limits_rate_limits_and_faults(sandbox: CarrierSandbox) -> None:
    fedex_token = call(sandbox, "POST", "/oauth/token")  # no form: refused
    assert fedex_token[0] == 400
    too_many = [{"number": f"N{i}"} for i in range(41)]
    status, body, _ = call(sandbox, "POST", "/track/v2.2/gettrackinfo", too_many, {"17token": "k"})
    assert status == 400 and body["code"] != 0

    sandbox.set_rate_limit("dhl", 2, 60.0)
    statuses = [
        call(sandbox, "GET", "/track/shipments?trackingNumber=3000000010", None, {"DHL-API-Key": "k"})
        for _ in range(3)
    ]
    assert [s[0] for s in statuses] == [200, 200, 429] and int(statuses[2][2]["Retry-After"]) >= 1

    sandbox.set_down("ups")
    assert call(sandbox, "POST", "/security/v1/oauth/token")[0] == 503
    sandbox.set_down("ups", False)
    status, body, _ = call(sandbox, "GET", "/api/track/v1/details/1Z", None, {"Authorization": "Bearer nope"})
    assert status == 401 and body["response"]["errors"][0]["code"] == "250002"

    stats = sandbox.stats()
    assert stats["rate_limited"]["dhl"] == 1 and stats["requests"]["dhl.track"] == 3
    assert stats["statuses"]["ups.503"] == 1 and stats["max_batch"].get("17track", 0) == 0
    sandbox.reset_stats()
    assert sandbox.stats()["requests"] == {}


def test_the_sandbox_as_its_own_process() -> None:
    number = next(numbers_for("dhl", 1))
    with SandboxProcess(epoch=EPOCH, clock=ALL_DONE, rate_limits={"dhl": (50, 1.0)}) as remote:
        remote.script(number, Scenario.PICKUP)
        dhl = CarrierTransport(
            get_spec("dhl"), CarrierConnection(base_url=remote.base_url, api_key="key"),
            limiter=LocalTokenBucket(),
        )
        assert dhl.track([number])[0].status == remote.expected_final_status(number) == "available_for_pickup"
        remote.set_down("dhl")
        assert remote.stats()["requests"] == {"dhl.track": 1}
        remote.set_clock(EPOCH)
        assert remote.now() == EPOCH
