"""The tracking commands: carrier_account, poll_tracking, track, carrier_sandbox; the beat task."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from oma.stores.models import Store
from tracking.carriers.serialize import result_to_json
from tracking.models import CarrierAccount, Shipment
from tracking.sandbox import CarrierSandbox, Scenario, numbers_for
from tracking.services import shipment_add

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_carrier_account_add_prints_the_id(store: Store) -> None:
    out, _ = run(
        "carrier_account", "add", "--carrier", "ups", "--client-id", "ID", "--client-secret", "S",
        "--base-url", "http://127.0.0.1:8200/", "--store", store.domain, "--rate-limit", "10/1",
    )
    account = CarrierAccount.objects.get(pk=int(out.strip()))
    assert (account.carrier, account.store, account.base_url) == ("ups", store, "http://127.0.0.1:8200")
    assert (account.client_id, account.client_secret) == ("ID", "S")
    assert (account.rate_limit_requests, account.rate_limit_per_seconds) == (10, 1.0)

    shared, _ = run("carrier_account", "add", "--carrier", "17track", "--api-key", "K")
    assert CarrierAccount.objects.get(pk=int(shared)).store is None

    listing, _ = run("carrier_account", "list")
    assert "ups" in listing and "shared" in listing and "S" not in listing.split() and "K" not in listing.split()
    run("carrier_account", "deactivate", shared.strip())
    assert not CarrierAccount.objects.get(pk=int(shared)).is_active


@pytest.mark.parametrize(
    "args",
    [
        ["--carrier", "ups", "--api-key", "K"],
        ["--carrier", "dhl"],
        ["--carrier", "fedex", "--client-id", "A", "--client-secret", "B", "--store", "nowhere.example.com"],
        ["--carrier", "usps", "--client-id", "A", "--client-secret", "B", "--rate-limit", "fast"],
    ],
)
def test_carrier_account_add_refuses_what_cannot_work(args: list[str]) -> None:
    with pytest.raises(CommandError):
        run("carrier_account", "add", *args)


def test_poll_tracking_ends_with_a_summary(
    store: Store, carrier_sandbox: CarrierSandbox, sandbox_accounts: dict[str, CarrierAccount]
) -> None:
    for number in numbers_for("fedex", 3):
        shipment_add(store=store, tracking_number=number)
    other = Store.objects.create(domain="shop2.genmystore.com", access_token="t", client_secret="s")
    shipment_add(store=other, tracking_number=next(numbers_for("ups", 1)))

    out, _ = run("poll_tracking", "--store", store.domain)

    assert out.strip().splitlines()[-1].startswith("polled 3 shipment(s)")
    assert "1 carrier request(s)" in out
    assert Shipment.objects.get(store=other).last_polled_at is None
    with pytest.raises(CommandError):
        run("poll_tracking", "--store", "nowhere.example.com")


def test_track_prints_the_timeline_and_stores_nothing(
    carrier_sandbox: CarrierSandbox, sandbox_accounts: dict[str, CarrierAccount]
) -> None:
    number = next(numbers_for("usps", 1))
    carrier_sandbox.script(number, Scenario.FAILED_ATTEMPT)

    out, _ = run("track", number)

    lines = out.strip().splitlines()
    assert lines[0].startswith(f"{number} (USPS): delivered")
    assert lines[1].startswith("delivered at ") and "J. SMITH" in lines[1]
    assert len(lines) == 2 + len(carrier_sandbox.journey(number))
    assert "attempt_failed" in out and not Shipment.objects.exists()


def test_track_json_is_the_parse_tracking_shape(
    carrier_sandbox: CarrierSandbox, sandbox_accounts: dict[str, CarrierAccount]
) -> None:
    from tracking.polling import lookup_tracking

    number = next(numbers_for("17track", 1))
    out, _ = run("track", number, "--json")
    printed = json.loads(out)

    expected = result_to_json(lookup_tracking(tracking_number=number).results[0])
    assert printed == expected
    assert {"trackingNumber", "status", "substatus", "events", "estimatedDelivery", "deliveredAt"} <= set(printed)
    assert printed["status"] == carrier_sandbox.expected_final_status(number)


def test_track_says_clearly_when_no_account_can_answer(db: None) -> None:
    with pytest.raises(CommandError, match="no carrier account"):
        run("track", "1Z5R89390357567127")


def test_track_with_an_explicit_carrier(
    carrier_sandbox: CarrierSandbox, sandbox_accounts: dict[str, CarrierAccount]
) -> None:
    number = next(numbers_for("dhl", 1))
    out, _ = run("track", number, "--carrier", "dhl")
    assert out.startswith(f"{number} (DHL): ")
    assert carrier_sandbox.stats()["requests"] == {"dhl.track": 1}


def test_the_beat_entry_and_task(store: Store, carrier_sandbox: CarrierSandbox, sandbox_accounts) -> None:
    from oma.celery import BEAT_SCHEDULE
    from tracking.tasks import poll_due

    entries = [entry for entry in BEAT_SCHEDULE.values() if entry["task"] == "tracking.poll_due"]
    assert len(entries) == 1 and entries[0]["schedule"] == 60
    shipment_add(store=store, tracking_number=next(numbers_for("ups", 1)))

    assert poll_due()["polled"] == 1
    assert poll_due()["polled"] == 0  # safe to run twice: nothing is due any more
    assert poll_due(store_id=store.pk + 1000) == {}


def test_carrier_sandbox_command_serves_the_apis() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "DEBUG": "1", "SECRET_KEY": "x", "DJANGO_SETTINGS_MODULE": "oma.settings"}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "carrier_sandbox", "--port", str(port), "--examples", "1"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/oauth2/v3/token", method="POST",
                    data=b"grant_type=client_credentials&client_id=a&client_secret=b",
                )
                with urllib.request.urlopen(request, timeout=2) as response:
                    assert json.loads(response.read())["access_token"]
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.2)
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=20)
    assert f"carrier sandbox on http://127.0.0.1:{port}" in out and "usps" in out
