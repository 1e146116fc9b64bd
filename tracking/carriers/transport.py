"""The generic carrier transport: executes a CarrierSpec's HttpCalls and hands the decoded JSON to `spec.parse`.

One `CarrierTransport` per carrier account, holding one `requests.Session`. It owns everything the pure carrier
modules leave out: base URL, timeouts on every call, authentication (OAuth client-credentials token cache with
refresh before expiry and once on a 401, or an API-key header), the account's rate limit (oma.core.ratelimit's
shared token bucket), and retries for transient failures only (oma.core.retry's policy with the carrier's numbers:
408, 429, 500, 502, 503, 504, timeouts, connection errors; Retry-After is a floor under the jittered backoff; a
429 penalizes the account's bucket for every worker). Tracking calls are reads, even when sent as a POST, and are
retried as such. It knows no Django model: the account's credentials come in a `CarrierConnection`, and the OAuth
token is persisted through a `TokenCache`.

Errors are ours: `CarrierAuthError` (credentials refused), `CarrierUnavailable` (transient: the carrier is down
or throttling after our retries, or our own rate budget is spent), `CarrierError` (anything else, permanent).
Their messages carry a status code and a fixed phrase, never the answer's body: the account's base URL may point
at a host that is not the carrier, whose answer must not come back through the error text shown in admin.

The session is oma.core.outbound's: it calls the base URL's origin only, follows no redirect to another origin (the
3xx comes back as an answer, and is refused below), and checks where the carrier's own hosts resolve.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

import requests

from oma.core.outbound import OutboundRefused, hosts_of, outbound_session
from oma.core.ratelimit import RateLimiter, RateLimiterTimeout, rate_limiter_for
from oma.core.redis import get_redis
from oma.core.retry import Failure, GaveUp, RetryPolicy, send_with_retries
from tracking.carriers.base import CarrierSpec, HttpCall, RateLimit, TrackingResult

logger = logging.getLogger(__name__)

TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Our pace stays this fraction under the carrier's limit, so network jitter that bunches two requests
# together never turns our own correct pacing into a 429 at the carrier.
RATE_SAFETY_FACTOR = 0.9


class CarrierError(Exception):
    """A carrier call failed in a way a retry will not fix (bad request, unparseable answer...). `body` is for
    callers' own diagnostics; the transport never puts a response body there or in the message."""

    def __init__(self, message: str, *, status_code: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body[:500]


class CarrierAuthError(CarrierError):
    """The carrier refused our credentials (token endpoint, or a 401/403 that a fresh token did not fix)."""


class CarrierAccountRefused(CarrierAuthError):
    """OMA refused to call this account's base URL (oma.core.outbound: an ambiguous URL, or a carrier host that
    resolves to an internal address). Like refused credentials, only a change to the account helps: the account
    backs off and says why, nothing was sent."""


class CarrierUnavailable(CarrierError):
    """Transient: the carrier is down, timing out or throttling us; try again later (retry_after seconds)."""

    def __init__(
        self, message: str, *, status_code: int | None = None, body: str = "", retry_after: float | None = None
    ) -> None:
        super().__init__(message, status_code=status_code, body=body)
        self.retry_after = retry_after


class RateBudgetExhausted(CarrierUnavailable):
    """Our own rate limiter has no request left for this account within the allowed wait: nothing was sent."""


# --- collaborators ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CarrierConnection:
    """What the transport needs to know about one carrier account."""

    base_url: str
    client_id: str = ""
    client_secret: str = ""
    api_key: str = ""
    rate_limit: RateLimit | None = None  # None: the spec's published default
    limiter_key: str = ""  # the rate bucket's name; accounts sharing credentials should share it


class TokenCache(Protocol):
    """Where an OAuth token lives between transports (the account row, so every worker reuses it)."""

    def load(self) -> tuple[str, datetime] | None: ...

    def save(self, token: str, expires_at: datetime) -> None: ...


class MemoryTokenCache:
    def __init__(self) -> None:
        self._value: tuple[str, datetime] | None = None

    def load(self) -> tuple[str, datetime] | None:
        return self._value

    def save(self, token: str, expires_at: datetime) -> None:
        self._value = (token, expires_at)


def default_rate_limiter() -> RateLimiter:
    """The limiter carrier transports share: Redis-backed when REDIS_URL is set (every worker paces together),
    else one bucket per process."""
    try:
        redis_client = get_redis()
    except Exception:  # no Django settings (a script using the transport alone): pace per process
        redis_client = None
    return rate_limiter_for(redis_client)


def bucket_parameters(rate_limit: RateLimit) -> tuple[int, float]:
    """(capacity, refill per second) of the bucket that keeps us within `rate_limit` with a safety margin."""
    capacity = max(1, int(rate_limit.requests))
    refill = rate_limit.requests / rate_limit.per_seconds * RATE_SAFETY_FACTOR
    return capacity, refill


# --- the transport -----------------------------------------------------------------------------------


@dataclass(slots=True)
class TransportStats:
    requests: int = 0  # HTTP requests sent to the tracking endpoints (not counting token requests)
    token_requests: int = 0
    retries: int = 0
    rate_limited: int = 0  # 429 answers received
    by_path: dict[str, int] = field(default_factory=dict)


class CarrierTransport:
    """Executes one carrier account's calls. Thread-safe for tokens; use one thread per transport for requests."""

    def __init__(
        self,
        spec: CarrierSpec,
        connection: CarrierConnection,
        *,
        token_cache: TokenCache | None = None,
        limiter: RateLimiter | None = None,
        connect_timeout: float = 3.05,
        read_timeout: float = 10.0,
        max_attempts: int = 3,
        backoff_base: float = 0.5,
        max_retry_after: float = 10.0,
        rate_limit_wait: float | None = 5.0,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.spec = spec
        self.connection = connection
        self.base_url = (connection.base_url or spec.default_base_url).rstrip("/")
        self.rate_limit = connection.rate_limit or spec.default_rate_limit
        self.limiter_key = connection.limiter_key or f"carrier:{spec.code}:{self.base_url}"
        self.token_cache = token_cache or MemoryTokenCache()
        self.limiter = limiter or default_rate_limiter()
        self.timeout = (connect_timeout, read_timeout)
        self.max_attempts = max(1, max_attempts)
        self.backoff_base = backoff_base
        self.max_retry_after = max_retry_after
        self.rate_limit_wait = rate_limit_wait
        self.session = session or outbound_session(
            base_url=self.base_url, own_hosts=hosts_of([spec.default_base_url, *spec.test_base_urls])
        )
        self.session.headers.update({"Accept": "application/json", "User-Agent": "OMA-tracking/1"})
        self._sleep = sleep
        self._now = now
        self._token_lock = threading.Lock()
        self._token: tuple[str, datetime] | None = None
        self.stats = TransportStats()

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts,
            backoff_base=self.backoff_base,
            backoff_cap=math.inf,
            max_retry_after=self.max_retry_after,
            retry_after_is_floor=True,  # never before the carrier's Retry-After, and never without jitter
            retry_statuses=TRANSIENT_STATUSES,
        )

    # -- public ----------------------------------------------------------------------------------

    def track(self, numbers: Sequence[str]) -> list[TrackingResult]:
        """Results for `numbers`, in as few requests as the carrier allows (the spec batches them)."""
        results: list[TrackingResult] = []
        for call in self.spec.build_calls(list(numbers)):
            results.extend(self.execute(call))
        return results

    def register(self, numbers: Sequence[str]) -> dict[str, object]:
        """Aggregators only (17TRACK): register numbers before asking for them. Returns the decoded answers."""
        if self.spec.build_register_calls is None:
            return {}
        answers: dict[str, object] = {}
        for call in self.spec.build_register_calls(list(numbers)):
            _, body = self._send(call)
            for number in call.numbers:
                answers[number] = body
        return answers

    def execute(self, call: HttpCall) -> list[TrackingResult]:
        """Send one call and parse its answer. Raises CarrierError / CarrierAuthError / CarrierUnavailable."""
        status, body = self._send(call)
        try:
            results = self.spec.parse(body, call.numbers)
        except Exception as exc:
            raise CarrierError(
                f"{self.spec.display_name}: could not read the answer to {call.method} {call.path} "
                f"(HTTP {status}): {type(exc).__name__}",
                status_code=status,
            ) from exc
        if status >= 400 and not results:
            raise CarrierError(
                f"{self.spec.display_name} refused {call.method} {call.path}: HTTP {status}", status_code=status
            )
        return results

    def close(self) -> None:
        self.session.close()

    # -- HTTP ------------------------------------------------------------------------------------

    def _send(self, call: HttpCall) -> tuple[int, object]:
        """One request with auth, rate limit and transient retries; returns (status, decoded JSON body).

        Returns 2xx answers, and 404 answers with a JSON body (UPS, USPS and DHL say "unknown number" that way:
        the parser turns them into not-found results). Raises for everything else: a 400 is our mistake or a
        number the carrier rejects, and retrying it would not help.
        """
        url = f"{self.base_url}{call.path}"
        refreshed_token = False

        def once() -> requests.Response:
            self._take_rate_token()
            headers = {**call.headers, **self._auth_headers()}
            self.stats.requests += 1
            self.stats.by_path[call.path] = self.stats.by_path.get(call.path, 0) + 1
            return self.session.request(
                call.method, url, params=call.params or None, json=call.json, headers=headers, timeout=self.timeout,
            )

        def attempt() -> requests.Response:
            nonlocal refreshed_token
            response = once()
            if response.status_code == 401 and self.spec.auth == "oauth_client_credentials" and not refreshed_token:
                # The token may have been revoked or expired early: one fresh token, then give up.
                refreshed_token = True
                self._invalidate_token()
                response = once()
            return response

        name = self.spec.display_name
        response = self._retried(
            attempt, label=f"{name} {call.method} {call.path}", on_failure=self._count_failure,
            unreachable=f"{name} unreachable at {url}",
            answered=lambda failure: f"{name} answered HTTP {failure.status} {failure.attempt} time(s) for {call.path}",
            refused=f"{name}: request refused", failed=f"{name}: request to {url} failed",
        )
        status = response.status_code
        if status in (401, 403):
            raise CarrierAuthError(
                f"{self.spec.display_name} refused our credentials (HTTP {status})", status_code=status
            )
        body = _json_or_none(response)
        if 200 <= status < 300:
            if body is None:
                raise CarrierError(
                    f"{self.spec.display_name} answered HTTP {status} without JSON for {call.path}",
                    status_code=status,
                )
            return status, body
        if status == 404 and body is not None:
            return status, body  # carriers answer "unknown number" this way: the parser makes results of it
        raise CarrierError(
            f"{self.spec.display_name} refused {call.method} {call.path}: HTTP {status}"
            + (" (a redirect to another host, not followed)" if 300 <= status < 400 else ""),
            status_code=status,
        )

    def _retried(
        self,
        attempt: Callable[[], requests.Response],
        *,
        label: str,
        on_failure: Callable[[Failure], None],
        unreachable: str,
        answered: Callable[[Failure], str],
        refused: str,
        failed: str,
    ) -> requests.Response:
        """One request through the shared retry loop (every carrier call is a read, even a POST: idempotent). A
        give-up becomes CarrierUnavailable, a refusal by oma.core.outbound CarrierAccountRefused, any other request
        error CarrierError; the phrases name the call, never the answer's body."""
        try:
            return send_with_retries(
                attempt, policy=self.retry_policy, idempotent=True, sleep=self._sleep, label=label,
                on_failure=on_failure,
            )
        except GaveUp as exc:
            failure = exc.failure
            if failure.response is None:
                raise CarrierUnavailable(f"{unreachable}: {failure.error}") from failure.error
            raise CarrierUnavailable(
                answered(failure), status_code=failure.status, retry_after=failure.retry_after
            ) from None
        except OutboundRefused as exc:
            raise CarrierAccountRefused(f"{refused}: {exc}") from exc
        except requests.RequestException as exc:
            raise CarrierError(f"{failed}: {exc}") from exc

    def _count_failure(self, failure: Failure) -> None:
        if failure.status == 429:
            # Someone else spent the carrier's budget too (another app on the same credentials):
            # everyone using this bucket waits, not just this call.
            self.stats.rate_limited += 1
            self.limiter.penalize(
                self.limiter_key, seconds=failure.retry_after if failure.retry_after is not None else 1.0
            )
        self._count_retry(failure)

    def _count_retry(self, failure: Failure) -> None:
        if not failure.gives_up:
            self.stats.retries += 1

    def _take_rate_token(self) -> None:
        capacity, refill = bucket_parameters(self.rate_limit)
        try:
            self.limiter.acquire(
                self.limiter_key, capacity=capacity, refill_per_second=refill, timeout=self.rate_limit_wait
            )
        except RateLimiterTimeout as exc:
            raise RateBudgetExhausted(
                f"{self.spec.display_name}: rate limit {self.rate_limit.requests}/{self.rate_limit.per_seconds:g}s "
                "spent for now",
                retry_after=exc.wait,
            ) from exc

    # -- authentication --------------------------------------------------------------------------

    def _auth_headers(self) -> dict[str, str]:
        if self.spec.auth == "api_key_header":
            if not self.connection.api_key:
                raise CarrierAuthError(f"{self.spec.display_name}: this account has no API key")
            return {self.spec.api_key_header: self.connection.api_key}
        if self.spec.auth == "oauth_client_credentials":
            return {"Authorization": f"Bearer {self._access_token()}"}
        return {}

    def _invalidate_token(self) -> None:
        with self._token_lock:
            self._token = None
            self.token_cache.save("", datetime(1970, 1, 1, tzinfo=UTC))

    def _access_token(self) -> str:
        with self._token_lock:
            now = self._now()
            for candidate in (self._token, self.token_cache.load()):
                if candidate and candidate[0] and _still_fresh(candidate[1], now):
                    self._token = candidate
                    return candidate[0]
            token, expires_at = self._fetch_token()
            self._token = (token, expires_at)
            self.token_cache.save(token, expires_at)
            return token

    def _fetch_token(self) -> tuple[str, datetime]:
        if not (self.connection.client_id and self.connection.client_secret):
            raise CarrierAuthError(f"{self.spec.display_name}: this account has no client id / secret")
        url = f"{self.base_url}{self.spec.token_path}"
        # UPS reads HTTP Basic, FedEx and USPS read the form fields: sending both satisfies all three.
        data = {
            "grant_type": "client_credentials",
            "client_id": self.connection.client_id,
            "client_secret": self.connection.client_secret,
        }

        def attempt() -> requests.Response:
            self.stats.token_requests += 1
            return self.session.post(
                url, data=data, auth=(self.connection.client_id, self.connection.client_secret),
                headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=self.timeout,
            )

        name = self.spec.display_name
        response = self._retried(
            attempt, label=f"{name} token", on_failure=self._count_retry,
            unreachable=f"{name} token endpoint unreachable",
            answered=lambda failure: f"{name} token endpoint answered HTTP {failure.status}",
            refused=f"{name}: token request refused", failed=f"{name}: token request failed",
        )
        body = _json_or_none(response)
        if response.status_code >= 400 or not isinstance(body, dict) or not body.get("access_token"):
            raise CarrierAuthError(
                f"{self.spec.display_name} refused the client credentials (HTTP {response.status_code})",
                status_code=response.status_code,
            )
        try:
            lifetime = float(body.get("expires_in") or 3600)
        except (TypeError, ValueError):
            lifetime = 3600.0
        return str(body["access_token"]), self._now() + timedelta(seconds=lifetime)


def _still_fresh(expires_at: datetime, now: datetime) -> bool:
    # Refresh a minute early, so that a token never expires between our check and the carrier's.
    return expires_at - timedelta(seconds=60) > now


def _json_or_none(response: requests.Response) -> object:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None
