"""Fixtures for the tracking engine's tests: stores, the carrier sandbox (a real HTTP server) and accounts on it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from oma.core.ratelimit import LocalTokenBucket
from oma.stores.models import Store
from tracking import polling
from tracking.models import CarrierAccount
from tracking.polling import forget_transports
from tracking.sandbox import CARRIERS, CarrierSandbox, SandboxProcess
from tracking.services import carrier_account_add

# Journeys start within the 48 h after the epoch and last at most ~6 days: nine days ago, every journey has ended
# by yesterday, and its events are recent enough not to expire.
EPOCH = (datetime.now(UTC) - timedelta(days=9)).replace(second=0, microsecond=0)
ALL_DONE = datetime.now(UTC).replace(microsecond=0)
# Generous limits for functional tests (rate limiting has its own tests with the published figures).
FAST_LIMITS = {carrier: (1000, 1.0) for carrier in CARRIERS}


def make_store(domain: str = "shop1.genmystore.com", **fields: object) -> Store:
    return Store.objects.create(domain=domain, access_token="token", client_secret="secret", **fields)


@pytest.fixture(autouse=True)
def own_rate_buckets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test paces carrier calls with its own in-process buckets: Redis db 15 is shared with parallel test
    runs (which flush it), and account ids repeat between runs, so a shared bucket would not be this test's."""
    bucket = LocalTokenBucket()
    monkeypatch.setattr(polling, "default_rate_limiter", lambda: bucket)
    forget_transports()


@pytest.fixture
def store(db: None) -> Store:
    return make_store()


@pytest.fixture
def carrier_sandbox() -> Iterator[CarrierSandbox]:
    sandbox = CarrierSandbox(port=0, epoch=EPOCH, rate_limits=FAST_LIMITS).start()
    sandbox.set_clock(ALL_DONE)
    try:
        yield sandbox
    finally:
        sandbox.stop()
        forget_transports()  # sessions point at this server's port


def add_sandbox_account(
    sandbox: CarrierSandbox | SandboxProcess,
    carrier: str,
    *,
    store: Store | None = None,
    rate_limit: tuple[int, float] | None = None,
) -> CarrierAccount:
    credentials = (
        {"api_key": f"{carrier}-key"}
        if carrier in ("dhl", "17track")
        else {"client_id": f"{carrier}-id", "client_secret": f"{carrier}-secret"}
    )
    limit = rate_limit or FAST_LIMITS[carrier]
    return carrier_account_add(
        carrier=carrier, store=store, base_url=sandbox.base_url, rate_limit=limit, **credentials
    )


@pytest.fixture
def sandbox_accounts(db: None, carrier_sandbox: CarrierSandbox) -> dict[str, CarrierAccount]:
    """A shared account for each of the five APIs, on the sandbox."""
    return {carrier: add_sandbox_account(carrier_sandbox, carrier) for carrier in CARRIERS}
