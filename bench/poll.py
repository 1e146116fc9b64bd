"""Carrier polling throughput: due shipments across the five carriers, polled against the carrier sandbox.

    python -m bench.poll [--shipments 10000]

The sandbox runs in its own process (its CPU is not counted against OMA's). Limits are set high so that the
figure measures OMA (claims, HTTP, parsing, bulk writes), not the carriers' quotas. Figures:
- shipments processed per second (first poll: every shipment new; second poll: nothing new to store);
- carrier requests per shipment, against the batch-optimal count (FedEx 30 a request, 17TRACK 40 + registration,
  the others 1; one OAuth token per account);
- database queries per 1,000 shipments (bounded: bulk reads and writes, no query per shipment);
- the floor, measured in the same run against the same sandbox: the same carrier requests (same endpoints, batches,
  chunks and concurrency, one OAuth token per account, 17TRACK's registrations) sent from a plain requests.Session
  and json-decoded, nothing else: no claims, no parsing into results, no normalising, no database. Each poll's time
  is compared with the floor of the same requests (the first poll registers 17TRACK numbers, the second does not),
  run just before and just after the poll, the faster of the two counting. No target was set for that ratio: it is
  printed with an empty target. On a shared machine wall time varies with the load: the CPU seconds of this
  process, the sandbox and PostgreSQL are printed for each run too.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import requests

from bench.common import (
    child_pids,
    figure,
    peak_rss_mb,
    postgres_cpu_between,
    postgres_database_cpu,
    process_tree_cpu_seconds,
    setup_django,
)
from tracking.carriers.registry import get_spec

CARRIERS = ("ups", "fedex", "usps", "dhl", "17track")
DETECTED = {"ups": "ups", "fedex": "fedex", "usps": "usps", "dhl": "dhl", "17track": "s10"}
BATCH = {"ups": 1, "fedex": 30, "usps": 1, "dhl": 1, "17track": 40}
OAUTH = ("ups", "fedex", "usps")
CLIENT_ID, CLIENT_SECRET, API_KEY = "bench-id", "bench-secret", "bench-key"
# The floor's own 17TRACK keys, one per run before and after a poll: the sandbox keeps registrations per key, so
# each floor of the first poll registers its numbers afresh (the same work as the poll) and never for OMA's account.
FLOOR_API_KEYS = ("bench-floor-key-1", "bench-floor-key-2")


def sandbox_pids() -> list[int]:
    """The carrier sandbox's process (a child of this one): its CPU shows whether it, not the client, paces a run."""
    found = []
    for pid in child_pids(os.getpid()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if b"tracking.sandbox" in cmdline.read():
                    found.append(pid)
        except OSError:
            continue
    return found


@dataclass(frozen=True)
class Spent:
    """What one run cost: wall seconds, and CPU seconds of this process (every thread), of the carrier sandbox and of
    the benchmark database's PostgreSQL backends (0 without PostgreSQL on this machine)."""

    seconds: float
    cpu: float
    sandbox_cpu: float
    database_cpu: float

    @property
    def all_cpu(self) -> float:
        return self.cpu + self.sandbox_cpu + self.database_cpu

    def line(self) -> str:
        return (f"{self.seconds:.2f} s; CPU s: {self.cpu:.2f} here, {self.sandbox_cpu:.2f} sandbox, "
                f"{self.database_cpu:.2f} PostgreSQL")


class Meter:
    def __init__(self, database: str | None) -> None:
        self.database = database
        self.sandbox = sandbox_pids()

    def _database_cpu(self) -> dict[int, float]:
        return postgres_database_cpu(self.database) if self.database else {}

    @contextmanager
    def measure(self, spent: list[Spent]) -> Iterator[None]:
        """Appends the block's Spent to `spent` when it ends."""
        cpu, sandbox, database = time.process_time(), process_tree_cpu_seconds(self.sandbox), self._database_cpu()
        started = time.perf_counter()
        yield
        spent.append(Spent(
            seconds=time.perf_counter() - started, cpu=time.process_time() - cpu,
            sandbox_cpu=process_tree_cpu_seconds(self.sandbox) - sandbox,
            database_cpu=postgres_cpu_between(database, self._database_cpu()),
        ))


# --- the floor: the same carrier requests, json-decoded, nothing else ---------------------------------------------


class _FloorAccount:
    """One carrier account's requests as the transport sends them (one session, a token fetched on first use),
    minus everything OMA adds: no rate bucket, no retries, no outbound checks, no parsing of the answers."""

    def __init__(
        self, carrier: str, base_url: str, timeout: tuple[float, float], tokens: dict[str, str], api_key: str
    ) -> None:
        self.spec = get_spec(carrier)
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers.update({"Accept": "application/json", "User-Agent": "OMA-tracking/1"})
        self.tokens = tokens  # OAuth tokens by carrier, kept between runs as the account rows keep OMA's
        self.api_key = api_key
        self.requests = 0

    def auth_headers(self) -> dict[str, str]:
        if self.spec.auth == "api_key_header":
            return {self.spec.api_key_header: self.api_key}
        if not self.tokens.get(self.spec.code):
            response = self.session.post(
                f"{self.base_url}{self.spec.token_path}",
                data={"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
                auth=(CLIENT_ID, CLIENT_SECRET), headers={"Content-Type": "application/x-www-form-urlencoded"},
                timeout=self.timeout,
            )
            self.requests += 1
            self.tokens[self.spec.code] = str(response.json()["access_token"])
        return {"Authorization": f"Bearer {self.tokens[self.spec.code]}"}

    def fetch(self, numbers: Sequence[str], *, register: bool) -> None:
        calls = list(self.spec.build_register_calls(numbers)) if register and self.spec.build_register_calls else []
        calls += self.spec.build_calls(numbers)
        for call in calls:
            response = self.session.request(
                call.method, f"{self.base_url}{call.path}", params=call.params or None, json=call.json,
                headers={**call.headers, **self.auth_headers()}, timeout=self.timeout,
            )
            self.requests += 1
            # 404 with JSON is how UPS, USPS and DHL say "unknown number": an answer like any other.
            if response.status_code not in (200, 404):
                raise SystemExit(f"floor: {self.spec.code} answered HTTP {response.status_code} to {call.path}")
            response.json()


def poll_floor(
    *, base_url: str, numbers: Mapping[str, Sequence[str]], register: bool, concurrency: int, claim_chunk: int,
    timeout: tuple[float, float], tokens: dict[str, str], api_key: str,
) -> int:
    """Send the requests a poll of `numbers` sends, the way poll_due_shipments schedules them: each account's
    numbers in chunks of its claim size (a multiple of its batch), one chunk in flight per account, the accounts on
    a pool of TRACKING_POLL_CONCURRENCY threads; each answer json-decoded and dropped. Returns the requests sent."""
    # Like the poll, an account with nothing due sends nothing and takes no thread.
    accounts = [_FloorAccount(carrier, base_url, timeout, tokens, api_key) for carrier, due in numbers.items() if due]
    pending: dict[_FloorAccount, list[list[str]]] = {}
    for account in accounts:
        batch = max(1, account.spec.batch_size)
        size = batch * max(1, claim_chunk // batch)
        every = list(numbers[account.spec.code])
        pending[account] = [every[start : start + size] for start in range(0, len(every), size)]
    with ThreadPoolExecutor(max_workers=min(concurrency, max(1, len(accounts))), thread_name_prefix="floor") as pool:
        in_flight: dict[Future[None], _FloorAccount] = {}

        def submit(account: _FloorAccount) -> None:
            if pending[account]:
                in_flight[pool.submit(account.fetch, pending[account].pop(0), register=register)] = account

        for account in accounts:
            submit(account)
        while in_flight:
            done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
            for future in done:
                account = in_flight.pop(future)
                future.result()
                submit(account)
    for account in accounts:
        account.session.close()
    return sum(account.requests for account in accounts)


class QueryCounter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shipments", type=int, default=10_000)
    args = parser.parse_args()
    per_carrier = max(1, args.shipments // len(CARRIERS))
    total = per_carrier * len(CARRIERS)

    vendor = setup_django("oma_bench_poll")
    from django.conf import settings
    from django.db import connection
    from django.utils import timezone

    from oma.stores.models import Store
    from tracking.models import Shipment, TrackingEvent
    from tracking.polling import poll_due_shipments
    from tracking.sandbox import SandboxProcess, numbers_for
    from tracking.selectors import due_shipments
    from tracking.services import carrier_account_add

    now = datetime.now(UTC).replace(microsecond=0)
    epoch = now - timedelta(days=9)
    limits = dict.fromkeys(CARRIERS, (100_000, 1.0))
    numbers = {carrier: list(numbers_for(carrier, per_carrier)) for carrier in CARRIERS}
    floor_tokens: dict[str, str] = {}
    spent: dict[str, list[Spent]] = {"first poll": [], "first floor": [], "second poll": [], "second floor": []}
    requests_seen: dict[str, list[int]] = {name: [] for name in spent}

    with SandboxProcess(epoch=epoch, clock=now, rate_limits=limits) as sandbox:
        meter = Meter(str(connection.settings_dict["NAME"]) if vendor == "postgresql" else None)

        def sandbox_requests() -> int:
            return sum(sandbox.stats()["requests"].values())

        def floor(name: str, numbers: Mapping[str, Sequence[str]], *, register: bool, api_key: str) -> None:
            # The first poll fetches an OAuth token per account, the second reuses it: so do their floors.
            tokens: dict[str, str] = {} if register else floor_tokens
            sandbox.reset_stats()
            with meter.measure(spent[name]):
                sent = poll_floor(
                    base_url=sandbox.base_url, numbers=numbers, register=register,
                    concurrency=max(1, int(settings.TRACKING_POLL_CONCURRENCY)),
                    claim_chunk=int(settings.TRACKING_CLAIM_CHUNK),
                    timeout=(settings.TRACKING_CONNECT_TIMEOUT, settings.TRACKING_READ_TIMEOUT), tokens=tokens,
                    api_key=api_key,
                )
            floor_tokens.update(tokens)
            requests_seen[name].append(sandbox_requests())
            assert sent == requests_seen[name][-1], (sent, requests_seen[name])

        store = Store.objects.create(domain="bench.genmystore.com", access_token="t", client_secret="s")
        for carrier in CARRIERS:
            credentials = (
                {"api_key": API_KEY} if carrier in ("dhl", "17track")
                else {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
            )
            carrier_account_add(carrier=carrier, base_url=sandbox.base_url, rate_limit=limits[carrier], **credentials)
        due = timezone.now()
        for carrier in CARRIERS:
            Shipment.objects.bulk_create(
                (
                    Shipment(store=store, tracking_number=n, carrier=DETECTED[carrier], next_poll_at=due)
                    for n in numbers[carrier]
                ),
                batch_size=2000,
            )

        # Each poll's floor runs just before and just after it (the faster counts: a burst of other work on the
        # machine during one of them does not lower the floor). The first poll's floors register 17TRACK numbers
        # as it does, each under a key of its own.
        key_before, key_after = FLOOR_API_KEYS
        floor("first floor", numbers, register=True, api_key=key_before)
        sandbox.reset_stats()
        queries = QueryCounter()
        with meter.measure(spent["first poll"]), connection.execute_wrapper(queries):
            first = poll_due_shipments(time_budget=3600)
        requests_seen["first poll"].append(sandbox_requests())
        floor("first floor", numbers, register=True, api_key=key_after)

        Shipment.objects.update(next_poll_at=timezone.now() - timedelta(seconds=1))
        # Delivered parcels are no longer polled: the second poll (and its floor) asks about the others only.
        account_carrier = {detected: carrier for carrier, detected in DETECTED.items()}
        still_due: dict[str, list[str]] = {carrier: [] for carrier in CARRIERS}
        for detected, number in (
            due_shipments(now=timezone.now()).order_by("next_poll_at", "id").values_list("carrier", "tracking_number")
        ):
            still_due[account_carrier[detected]].append(number)
        # The second poll's floors: the same requests without registrations (both floor keys have them by now).
        floor("second floor", still_due, register=False, api_key=key_before)
        sandbox.reset_stats()
        with meter.measure(spent["second poll"]):
            second = poll_due_shipments(time_budget=3600)
        requests_seen["second poll"].append(sandbox_requests())
        floor("second floor", still_due, register=False, api_key=key_after)
        events = TrackingEvent.objects.count()

    print(f"{vendor}: {first.line()}")
    print(f"{vendor}: {second.line()}")
    for name, runs in spent.items():
        for run, sent in zip(runs, requests_seen[name], strict=True):
            print(f"{name}: {sent} carrier requests, {run.line()}")
    first_run, second_run = spent["first poll"][0], spent["second poll"][0]
    first_floor = min(spent["first floor"], key=lambda run: run.seconds)
    second_floor = min(spent["second floor"], key=lambda run: run.seconds)
    optimal = sum(math.ceil(per_carrier / BATCH[c]) for c in CARRIERS) + math.ceil(per_carrier / 40) + len(OAUTH)
    figure("shipments", total)
    figure("first poll: shipments processed per second", first.polled / first_run.seconds, "shipments/s", ">= 200")
    figure("first poll: floor shipments/s (same requests, json-decoded only)", total / first_floor.seconds,
           "shipments/s")
    figure("first poll: time ratio poll/floor", first_run.seconds / first_floor.seconds, "x")
    figure("first poll: CPU ratio poll/floor (all processes)", first_run.all_cpu / max(first_floor.all_cpu, 1e-9), "x")
    figure("first poll: events stored per second", first.events_added / first_run.seconds, "events/s")
    figure("second poll (nothing new): shipments per second", second.polled / second_run.seconds, "shipments/s")
    figure("second poll: floor shipments/s (same requests, json-decoded only)",
           sum(map(len, still_due.values())) / second_floor.seconds, "shipments/s")
    figure("second poll: time ratio poll/floor", second_run.seconds / second_floor.seconds, "x")
    (first_requests,), (second_requests,) = requests_seen["first poll"], requests_seen["second poll"]
    figure("carrier requests per shipment", first_requests / total, "requests",
           f"= {optimal / total:.3f} (batch-optimal)")
    figure("carrier requests, first poll", first_requests, "requests", f"= {optimal}")
    figure("carrier requests, first poll's floors", " ".join(map(str, requests_seen["first floor"])), "requests",
           f"= {optimal}")
    figure("carrier requests, second poll (its floors)",
           f"{second_requests} ({' '.join(map(str, requests_seen['second floor']))})", "requests", "equal")
    figure("rate-limited answers (429)", first.rate_limited + second.rate_limited, "", "0")
    figure("database queries per 1,000 shipments", queries.count * 1000 / total, "queries", "bounded (no N+1)")
    figure("events stored (second poll added)", f"{events} ({second.events_added})", "", "+0")
    figure("peak RSS", peak_rss_mb(), "MB")


if __name__ == "__main__":
    main()
