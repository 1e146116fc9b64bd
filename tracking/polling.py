"""Polling: take the due shipments, ask each carrier account in full batches within its rate limit, store answers.

One run (`poll_due_shipments`, used by the beat task `tracking.poll_due` every minute and by
`manage.py poll_tracking`):

1. Plan: one GROUP BY gives the due shipments per (store, carrier); each pair is routed to the account that
   answers for it (the store's own, the shared one, else 17TRACK) — pairs with no account get a clear last_error
   and stay due, so they are polled as soon as an account is added. Backed-off accounts are skipped.
2. Claim: per account, chunks whose size is a multiple of the carrier's batch size (FedEx 30, 17TRACK 40,
   others 1), each a lease on the rows taken by one UPDATE that skips rows another dispatcher has locked
   (oma.core.leases), so two dispatchers never poll the same shipment and only the last chunk of an account can
   hold a partial batch.
3. Fetch: the HTTP work of each account runs in its own thread (accounts do not wait for each other); the
   transport paces requests with the account's rate bucket and retries transient failures.
4. Store: back in the calling thread, each chunk's answers are applied in bulk (constant queries per chunk).

A carrier outage or refused credentials back the account off (exponential, capped) and release the claims:
the shipments stay due and nothing is lost. Long waits are `next_poll_at` in the database, never broker countdowns.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from oma.core.leases import lease_release, lease_take
from oma.stores.models import Store
from tracking.carriers import seventeentrack
from tracking.carriers.base import CarrierSpec, RateLimit, TrackingResult
from tracking.carriers.registry import get_spec
from tracking.carriers.transport import (
    CarrierAuthError,
    CarrierConnection,
    CarrierError,
    CarrierTransport,
    CarrierUnavailable,
    RateBudgetExhausted,
    default_rate_limiter,
)
from tracking.detection import detect
from tracking.models import CarrierAccount, Shipment
from tracking.numbers import choose_candidate, normalize
from tracking.selectors import account_for, account_routes, active_accounts, due_groups, due_shipments
from tracking.services import shipments_apply_results, shipments_record_failure

logger = logging.getLogger(__name__)


# --- summary ------------------------------------------------------------------------------------------


@dataclass
class PollSummary:
    polled: int = 0  # shipments that got an answer (found or not)
    status_changed: int = 0
    events_added: int = 0
    not_found: int = 0  # answered "unknown number" (normal for new labels)
    expired: int = 0
    failed: int = 0  # the carrier could not answer for them (permanent error): retried later with backoff
    deferred: int = 0  # due but not polled this run (carrier down, account backed off, rate or time budget spent)
    without_account: int = 0  # due, but no account can answer for their carrier
    requests: int = 0  # carrier HTTP requests (tracking and registration)
    token_requests: int = 0
    rate_limited: int = 0  # 429 answers received
    accounts_backed_off: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        parts = [
            f"polled {self.polled} shipment(s)",
            f"{self.status_changed} status change(s)",
            f"{self.events_added} new event(s)",
            f"{self.not_found} not found",
            f"{self.expired} expired",
            f"{self.failed} failed",
            f"{self.deferred} deferred",
            f"{self.without_account} without a carrier account",
            f"{self.requests} carrier request(s)",
            f"{self.rate_limited} rate-limited",
        ]
        text = ", ".join(parts) + f" in {self.seconds:.1f} s"
        if self.accounts_backed_off:
            text += f"; backed off: {', '.join(self.accounts_backed_off)}"
        return text

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


# --- transports per account ----------------------------------------------------------------------------


class AccountTokenCache:
    """The OAuth token kept on the CarrierAccount row (encrypted), so every worker reuses one token.

    The transport may refresh from a fetch thread: the new token is kept in memory and written to the row by
    the polling thread (`persist`), so that no database work happens in fetch threads.
    """

    def __init__(self, account: CarrierAccount) -> None:
        self.account = account
        self._lock = threading.Lock()
        self._dirty = False

    def load(self) -> tuple[str, datetime] | None:
        with self._lock:
            if self.account.oauth_token and self.account.oauth_token_expires_at:
                return self.account.oauth_token, self.account.oauth_token_expires_at
            return None

    def save(self, token: str, expires_at: datetime) -> None:
        with self._lock:
            self.account.oauth_token = token
            self.account.oauth_token_expires_at = expires_at if token else None
            self._dirty = True

    def persist(self) -> None:
        with self._lock:
            if not self._dirty:
                return
            self._dirty = False
            token, expires_at = self.account.oauth_token, self.account.oauth_token_expires_at
        CarrierAccount.objects.filter(pk=self.account.pk).update(
            oauth_token=token, oauth_token_expires_at=expires_at
        )


_transports: dict[int, tuple[str, CarrierTransport]] = {}
_transports_lock = threading.Lock()


def _fingerprint(account: CarrierAccount) -> str:
    material = "\x1f".join(
        str(part)
        for part in (
            account.carrier, account.base_url, account.client_id, account.client_secret, account.api_key,
            account.rate_limit_requests, account.rate_limit_per_seconds,
        )
    )
    return hashlib.sha256(material.encode()).hexdigest()


def carrier_spec_for(account: CarrierAccount) -> CarrierSpec:
    return get_spec(account.carrier)


def account_rate_limit(account: CarrierAccount, spec: CarrierSpec) -> RateLimit:
    if account.rate_limit_requests and account.rate_limit_per_seconds:
        return RateLimit(requests=account.rate_limit_requests, per_seconds=account.rate_limit_per_seconds)
    return spec.default_rate_limit


def transport_for(account: CarrierAccount) -> tuple[CarrierTransport, AccountTokenCache]:
    """The account's transport (one requests.Session per account, reused while its settings are unchanged)."""
    fingerprint = _fingerprint(account)
    token_cache = AccountTokenCache(account)
    with _transports_lock:
        cached = _transports.get(account.pk)
        if cached is not None and cached[0] == fingerprint:
            transport = cached[1]
            transport.token_cache = token_cache
            return transport, token_cache
        if cached is not None:
            cached[1].close()
        spec = carrier_spec_for(account)
        transport = CarrierTransport(
            spec,
            CarrierConnection(
                base_url=account.base_url or spec.default_base_url,
                client_id=account.client_id or "",
                client_secret=account.client_secret or "",
                api_key=account.api_key or "",
                rate_limit=account_rate_limit(account, spec),
                limiter_key=f"carrier-account:{account.pk}",
            ),
            token_cache=token_cache,
            limiter=default_rate_limiter(),
            connect_timeout=settings.TRACKING_CONNECT_TIMEOUT,
            read_timeout=settings.TRACKING_READ_TIMEOUT,
            max_attempts=int(settings.TRACKING_MAX_ATTEMPTS),
            rate_limit_wait=settings.TRACKING_RATE_LIMIT_MAX_WAIT_SECONDS,
        )
        _transports[account.pk] = (fingerprint, transport)
        return transport, token_cache


def forget_transports() -> None:
    """Close every cached session (tests, and after credentials change in bulk)."""
    with _transports_lock:
        for _, transport in _transports.values():
            transport.close()
        _transports.clear()


# --- fetching (no database access here: it runs in worker threads) ----------------------------------------


@dataclass
class FetchOutcome:
    results: dict[str, TrackingResult] = field(default_factory=dict)  # normalized number -> answer
    failed: dict[str, str] = field(default_factory=dict)  # number -> why the carrier could not answer
    unanswered: set[str] = field(default_factory=set)  # not asked: the account failed first (stay due)
    registered: set[str] = field(default_factory=set)  # registered with the aggregator during this fetch
    account_error: CarrierError | None = None
    requests: int = 0
    token_requests: int = 0
    rate_limited: int = 0


def fetch_numbers(
    transport: CarrierTransport, numbers: Sequence[str], *, register: Sequence[str] = ()
) -> FetchOutcome:
    """Ask the carrier about `numbers` (registering `register` first, for 17TRACK). Never raises CarrierError."""
    outcome = FetchOutcome()
    before = (transport.stats.requests, transport.stats.token_requests, transport.stats.rate_limited)
    spec = transport.spec
    to_track = list(numbers)
    try:
        if register and spec.build_register_calls is not None:
            for call in spec.build_register_calls(list(register)):
                try:
                    transport.register(call.numbers)
                except (CarrierUnavailable, CarrierAuthError):
                    raise
                except CarrierError as exc:
                    # The aggregator refused these numbers; tracking them anyway gives each its own answer.
                    logger.warning("%s: registration refused for %d number(s): %s", spec.code, len(call.numbers), exc)
                outcome.registered.update(call.numbers)
        _track(transport, to_track, outcome)
        # 17TRACK forgot a number we registered (or it was registered with another token): register, ask again.
        forgotten = [n for n, result in outcome.results.items() if _needs_registration(spec, result)]
        if forgotten and spec.build_register_calls is not None:
            for call in spec.build_register_calls(forgotten):
                transport.register(call.numbers)
                outcome.registered.update(call.numbers)
            for number in forgotten:
                del outcome.results[number]
            _track(transport, forgotten, outcome)
    except (CarrierUnavailable, CarrierAuthError) as exc:
        outcome.account_error = exc
        outcome.unanswered.update(n for n in to_track if n not in outcome.results and n not in outcome.failed)
    after = (transport.stats.requests, transport.stats.token_requests, transport.stats.rate_limited)
    outcome.requests, outcome.token_requests, outcome.rate_limited = (a - b for a, b in zip(after, before, strict=True))
    return outcome


def _track(transport: CarrierTransport, numbers: Sequence[str], outcome: FetchOutcome) -> None:
    spec = transport.spec
    calls = spec.build_calls(list(numbers))
    for index, call in enumerate(calls):
        try:
            results = transport.execute(call)
        except (CarrierUnavailable, CarrierAuthError):
            for later in calls[index:]:
                outcome.unanswered.update(later.numbers)
            raise
        except CarrierError as exc:
            for number in call.numbers:
                outcome.failed[number] = str(exc)
            continue
        answered = {normalize(result.tracking_number): result for result in results}
        for number in call.numbers:
            result = answered.get(normalize(number))
            if result is None:
                outcome.failed[number] = f"{spec.display_name} gave no answer for this number"
            else:
                outcome.results[number] = result


def _needs_registration(spec: CarrierSpec, result: TrackingResult) -> bool:
    if spec.build_register_calls is None or result.found:
        return False

    return spec.code == seventeentrack.CODE and seventeentrack.needs_registration(result)


# --- claiming -----------------------------------------------------------------------------------------


def _route_filter(pairs: Sequence[tuple[int, str]]) -> Q:
    stores_by_carrier: dict[str, list[int]] = defaultdict(list)
    for store_id, carrier in pairs:
        stores_by_carrier[carrier].append(store_id)
    condition = Q(pk__in=[])
    for carrier, store_ids in stores_by_carrier.items():
        condition |= Q(carrier=carrier, store_id__in=store_ids)
    return condition


def claim_shipments(
    *, route: Q, limit: int, now: datetime, store: Store | None = None, lease: timedelta | None = None
) -> tuple[str, list[Shipment]]:
    """Claim up to `limit` due shipments matching `route`: (claim token, shipments), oldest due first."""
    lease = lease or timedelta(seconds=settings.TRACKING_CLAIM_LEASE_SECONDS)
    token = uuid.uuid4().hex
    # One UPDATE of the first `limit` due rows that no other dispatcher has locked; the lease holds after it (during
    # the HTTP work) until the results are stored, the claim is released, or it runs out.
    taken = lease_take(
        due_shipments(now=now, store=store).filter(route).order_by("next_poll_at", "id"),
        holder=token, ttl=lease, now=now, limit=limit,
        holder_field="poll_claim_token", until_field="poll_claimed_until",
    )
    if not taken:
        return token, []
    return token, list(Shipment.objects.filter(pk__in=taken).order_by("next_poll_at", "id"))


def release_claims(*, token: str, numbers: Sequence[str] | None = None) -> int:
    """Give claimed shipments back untouched (they stay due)."""
    queryset = Shipment.objects.all()
    if numbers is not None:
        queryset = queryset.filter(tracking_number__in=list(numbers))
    return lease_release(queryset, holder=token, holder_field="poll_claim_token", until_field="poll_claimed_until")


# --- account health -----------------------------------------------------------------------------------


def account_back_off(*, account: CarrierAccount, error: CarrierError, now: datetime) -> datetime:
    """Exponential backoff of a failing account (doubling from TRACKING_BACKOFF_BASE_SECONDS, capped)."""
    account.consecutive_failures += 1
    base = settings.TRACKING_BACKOFF_BASE_SECONDS
    cap = settings.TRACKING_BACKOFF_MAX_SECONDS
    if isinstance(error, CarrierAuthError):
        base = max(base, 300)  # credentials rarely fix themselves within a minute
    delay = min(cap, base * 2 ** min(account.consecutive_failures - 1, 20))
    retry_after = getattr(error, "retry_after", None)
    if retry_after:
        delay = max(delay, min(retry_after, cap))
    account.backoff_until = now + timedelta(seconds=delay)
    account.last_error = str(error)[:2000]
    account.last_failure_at = now
    account.save(update_fields=["consecutive_failures", "backoff_until", "last_error", "last_failure_at", "updated_at"])
    logger.warning("carrier account %s backed off for %ds: %s", account, delay, error)
    return account.backoff_until


def account_recovered(*, account: CarrierAccount, now: datetime) -> None:
    account.consecutive_failures = 0
    account.backoff_until = None
    account.last_error = ""
    account.last_success_at = now
    account.save(update_fields=["consecutive_failures", "backoff_until", "last_error", "last_success_at", "updated_at"])


# --- the run ------------------------------------------------------------------------------------------


@dataclass
class _AccountWork:
    account: CarrierAccount
    transport: CarrierTransport
    token_cache: AccountTokenCache
    route: Q
    chunk_size: int
    answered_any: bool = False
    failed: bool = False


NO_ACCOUNT_ERROR = (
    "No carrier account can track this shipment: add one for {carrier} or a 17TRACK account "
    "(manage.py carrier_account add --carrier ...)"
)


def poll_due_shipments(
    *, store: Store | None = None, limit: int | None = None, now: datetime | None = None,
    time_budget: float | None = None,
) -> PollSummary:
    """Poll every due shipment (of `store`, at most `limit`) once; see the module docstring."""
    started = time.monotonic()
    now = now or timezone.now()
    if time_budget is None:
        time_budget = settings.TRACKING_POLL_TIME_BUDGET_SECONDS
    deadline = started + time_budget
    summary = PollSummary()
    remaining = limit if limit is not None else float("inf")

    groups = due_groups(now=now, store=store)
    if not groups:
        summary.seconds = time.monotonic() - started
        return summary
    routes = account_routes(pairs=groups, accounts=active_accounts(store_ids={s for s, _ in groups}))

    pairs_by_account: dict[int, list[tuple[int, str]]] = defaultdict(list)
    accounts: dict[int, CarrierAccount] = {}
    for pair, account in routes.items():
        if account is None:
            summary.without_account += groups[pair]
            store_id, carrier = pair
            message = NO_ACCOUNT_ERROR.format(carrier=carrier or "this carrier")
            due_shipments(now=now).filter(store_id=store_id, carrier=carrier).exclude(last_error=message).update(
                last_error=message
            )
            continue
        accounts[account.pk] = account
        pairs_by_account[account.pk].append(pair)

    work: list[_AccountWork] = []
    for account_id, pairs in pairs_by_account.items():
        account = accounts[account_id]
        if account.backoff_until and account.backoff_until > now:
            summary.deferred += sum(groups[pair] for pair in pairs)
            continue
        try:
            transport, token_cache = transport_for(account)
        except LookupError as exc:
            summary.errors.append(f"{account}: {exc}")
            continue
        batch = max(1, transport.spec.batch_size)
        chunk = batch * max(1, int(settings.TRACKING_CLAIM_CHUNK) // batch)
        work.append(_AccountWork(account, transport, token_cache, _route_filter(pairs), chunk))

    def claim_next(item: _AccountWork) -> tuple[str, list[Shipment]] | None:
        nonlocal remaining
        if item.failed or remaining <= 0 or time.monotonic() > deadline:
            return None
        size = int(min(item.chunk_size, remaining))
        token, shipments = claim_shipments(route=item.route, limit=size, now=now, store=store)
        if not shipments:
            return None
        remaining -= len(shipments)
        return token, shipments

    concurrency = max(1, int(settings.TRACKING_POLL_CONCURRENCY))
    with ThreadPoolExecutor(max_workers=min(concurrency, max(1, len(work))), thread_name_prefix="poll") as pool:
        in_flight: dict[Future[FetchOutcome], tuple[_AccountWork, str, list[Shipment]]] = {}

        def submit(item: _AccountWork) -> None:
            claimed = claim_next(item)
            if claimed is None:
                return
            token, shipments = claimed
            register = [
                s.tracking_number for s in shipments
                if item.transport.spec.build_register_calls is not None and s.registered_with_id != item.account.pk
            ]
            future = pool.submit(
                fetch_numbers, item.transport, [s.tracking_number for s in shipments], register=register
            )
            in_flight[future] = (item, token, shipments)

        for item in work:
            submit(item)
        while in_flight:
            done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
            for future in done:
                item, token, shipments = in_flight.pop(future)
                outcome = future.result()
                if outcome.account_error is None:
                    submit(item)  # the account's next chunk travels while this one is stored
                _store_outcome(item, token, shipments, outcome, now, summary)

    for item in work:
        if item.answered_any and not item.failed and (item.account.consecutive_failures or item.account.backoff_until):
            account_recovered(account=item.account, now=now)
    summary.seconds = time.monotonic() - started
    logger.info("tracking poll: %s", summary.line())
    return summary


def _store_outcome(
    item: _AccountWork, token: str, shipments: list[Shipment], outcome: FetchOutcome, now: datetime,
    summary: PollSummary,
) -> None:
    account = item.account
    summary.requests += outcome.requests
    summary.token_requests += outcome.token_requests
    summary.rate_limited += outcome.rate_limited
    item.token_cache.persist()

    if outcome.registered:
        Shipment.objects.filter(poll_claim_token=token, tracking_number__in=list(outcome.registered)).update(
            registered_with=account
        )
    answered: list[tuple[Shipment, TrackingResult]] = []
    failed: list[Shipment] = []
    for shipment in shipments:
        if shipment.tracking_number in outcome.registered:
            shipment.registered_with = account
        result = outcome.results.get(shipment.tracking_number)
        if result is not None:
            shipment.carrier_account = account
            answered.append((shipment, result))
        elif shipment.tracking_number in outcome.failed:
            failed.append(shipment)
    if answered:
        item.answered_any = True
        for (_, result), applied in zip(answered, shipments_apply_results(pairs=answered, now=now), strict=True):
            summary.polled += 1
            summary.status_changed += applied.status_changed
            summary.events_added += applied.events_added
            summary.expired += applied.expired
            summary.not_found += not result.found
    if failed:
        by_error: dict[str, list[Shipment]] = defaultdict(list)
        for shipment in failed:
            by_error[outcome.failed[shipment.tracking_number]].append(shipment)
        for error, group in by_error.items():
            shipments_record_failure(shipments=group, error=error, now=now)
        summary.failed += len(failed)
    # Whatever was claimed and not stored (the account failed first) goes back untouched: it stays due.
    summary.deferred += release_claims(token=token)
    if outcome.account_error is not None:
        item.failed = True
        if isinstance(outcome.account_error, RateBudgetExhausted):
            return  # our own pacing: nothing is wrong with the carrier, the rest waits for the next run
        until = account_back_off(account=account, error=outcome.account_error, now=now)
        summary.accounts_backed_off.append(f"{account} until {until.astimezone(UTC):%H:%M:%S}Z")
        summary.errors.append(f"{account}: {outcome.account_error}")


# --- one-off lookups ----------------------------------------------------------------------------------


class NoCarrierAccount(LookupError):
    """No active account can answer for this carrier (nor a 17TRACK account)."""


@dataclass(frozen=True)
class Lookup:
    number: str
    carrier: str  # detected or given (a courier code)
    account: CarrierAccount
    results: list[TrackingResult]


def lookup_tracking(*, tracking_number: str, carrier: str | None = None, store: Store | None = None) -> Lookup:
    """Ask the carrier about one number now, through the configured account; stores nothing but the OAuth token.

    Without a carrier, detection picks it (using the store's priority list). Raises NoCarrierAccount, or the
    transport's CarrierError / CarrierAuthError / CarrierUnavailable.
    """
    number = normalize(tracking_number)
    if not number:
        raise ValueError("tracking number is blank")
    chosen = (carrier or "").strip().lower()
    if not chosen:
        priority = tuple(store.carrier_priority or ()) if store is not None else ()
        candidate = choose_candidate(detect(number, priority=priority))
        if candidate is not None:
            chosen, number = candidate.carrier, candidate.tracking_number or number
    account = account_for(store=store, carrier=chosen)
    if account is None:
        raise NoCarrierAccount(
            f"no carrier account for {chosen or 'this number'} and no 17TRACK account: "
            "add one with manage.py carrier_account add"
        )
    transport, token_cache = transport_for(account)
    try:
        if transport.spec.build_register_calls is not None:
            transport.register([number])
        results = transport.track([number])
    finally:
        token_cache.persist()
    return Lookup(number=number, carrier=chosen or account.carrier, account=account, results=results)
