"""The one retry policy for outbound HTTP: what is retried, how long to wait, when to give up.

Every OMA client (Genstore, the carrier transport, ShipStation) sends through `send_with_retries` and keeps only its
own specifics around it: what one attempt does (take a token from the shared bucket, add auth headers, count), what
a failure costs (penalize the shared bucket, count a 429), and how a final failure reads (its own exception types).

* Retried: answers whose status is in `RetryPolicy.retry_statuses` (by default 429 and 5xx) and transport failures
  (`TRANSIENT_EXCEPTIONS`: timeouts, connection errors, a connection dropped mid-answer). Anything else is handed
  back (an answer) or propagates (any other exception, e.g. oma.core.outbound's OutboundRefused): never retried.
* Never retried: an ambiguous write, i.e. a request that is not idempotent (a create without an idempotency key)
  whose bytes may have reached the server: a transport failure after the connection was made (read timeout, reset),
  or a 5xx. Retrying could act twice; the caller reads before it writes again. A 429 or a connection that was
  never made are safe to retry for any request. Callers say `idempotent=True` for a POST that is really a read.
* The wait: exponential backoff with jitter (`RetryPolicy.backoff`), unless the server said how long (Retry-After,
  read by `retry_after_seconds`, the one parser): then that long, or at least that long (`retry_after_is_floor`).
  A Retry-After longer than `max_retry_after` is not slept out in a worker: the loop gives up at once and the
  caller's exception carries the wait (a Celery countdown, an account backoff).

Plain Python (requests only): no Django, so every client can use it, sandboxes and scripts included.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_RETRY_STATUSES",
    "SERVER_ERRORS",
    "TRANSIENT_EXCEPTIONS",
    "Failure",
    "GaveUp",
    "RetryPolicy",
    "header_retry_after",
    "never_sent",
    "retry_after_seconds",
    "send_with_retries",
]

SERVER_ERRORS: frozenset[int] = frozenset(range(500, 600))
DEFAULT_RETRY_STATUSES: frozenset[int] = frozenset({429}) | SERVER_ERRORS
TRANSIENT_EXCEPTIONS: tuple[type[requests.RequestException], ...] = (
    requests.Timeout,
    requests.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
)


def retry_after_seconds(value: str | None, *, now: datetime) -> float | None:
    """A Retry-After header value as seconds from `now` (delta-seconds, or an HTTP date; never negative), or None
    when absent or unreadable. Not capped here: the caller's policy decides what is too long to wait."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def header_retry_after(response: requests.Response) -> float | None:
    """The answer's Retry-After, in seconds from now (the default reader of `send_with_retries`)."""
    return retry_after_seconds(response.headers.get("Retry-After"), now=datetime.now(UTC))


def rate_limit_retry_after(response: requests.Response) -> float | None:
    """Retry-After of a 429 only: a reader for clients that back off on their own schedule after a 5xx (a
    server under load may ask for 0 s or for minutes; neither should replace the jittered backoff)."""
    return header_retry_after(response) if response.status_code == 429 else None


def never_sent(exc: BaseException) -> bool:
    """True only when the request cannot have reached the server: the connection itself was never made."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError) and exc.args:
        reason = getattr(exc.args[0], "reason", None)
        return isinstance(reason, NewConnectionError | ConnectTimeoutError)
    return False


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How one client retries. The defaults are the Genstore client's; each client passes its own numbers."""

    max_attempts: int = 9  # attempts in all, the first one included
    backoff_base: float = 0.5  # the first retry waits up to this long, each later one up to twice the one before
    backoff_cap: float = 30.0  # no backoff step is longer
    jitter_floor: float = 0.0  # the part of each step always waited: 0 = full jitter, 0.5 = "equal jitter"
    max_retry_after: float = 60.0  # a longer Retry-After is handed to the caller instead of slept out
    retry_after_is_floor: bool = False  # True: wait max(backoff, Retry-After); False: exactly Retry-After
    retry_statuses: frozenset[int] = field(default=DEFAULT_RETRY_STATUSES)

    def backoff(self, retry: int) -> float:
        """The wait before retry number `retry` (0 for the first): random within the exponential step."""
        step = min(self.backoff_cap, self.backoff_base * 2.0 ** min(retry, 64))
        return step * self.jitter_floor + random.uniform(0, step * (1 - self.jitter_floor))


@dataclass(frozen=True, slots=True)
class Failure:
    """One transient failure: an answer with a retried status, or a transport error (exactly one is set)."""

    attempt: int  # 1 for the first attempt
    response: requests.Response | None
    error: requests.RequestException | None
    retry_after: float | None  # how long the server asked us to wait, when it said so
    delay: float  # the wait before the next attempt (what it would have been, when the loop gives up)
    ambiguous: bool  # a write that may have reached the server: never retried
    gives_up: bool
    too_long: bool  # the server asked for a wait longer than the policy's max_retry_after

    @property
    def retries(self) -> int:
        """Retries made before this failure."""
        return self.attempt - 1

    @property
    def status(self) -> int | None:
        return None if self.response is None else self.response.status_code


class GaveUp(Exception):
    """`send_with_retries` stopped on a transient failure: out of attempts, an ambiguous write, or a Retry-After
    longer than the policy allows. The client turns `failure` into its own exception (from `__cause__`, when a
    transport error)."""

    def __init__(self, failure: Failure) -> None:
        what = f"HTTP {failure.status}" if failure.response is not None else type(failure.error).__name__
        super().__init__(f"gave up after {failure.attempt} attempt(s): {what}")
        self.failure = failure


def _failure(
    attempt: int,
    response: requests.Response | None,
    error: requests.RequestException | None,
    *,
    policy: RetryPolicy,
    idempotent: bool,
    read_retry_after: Callable[[requests.Response], float | None],
) -> Failure:
    retry_after = read_retry_after(response) if response is not None else None
    backoff = policy.backoff(attempt - 1)
    if retry_after is None:
        delay = backoff
    else:
        delay = max(backoff, retry_after) if policy.retry_after_is_floor else retry_after
    if error is not None:
        ambiguous = not idempotent and not never_sent(error)
    else:
        ambiguous = not idempotent and response is not None and response.status_code in SERVER_ERRORS
    too_long = retry_after is not None and retry_after > policy.max_retry_after
    return Failure(
        attempt=attempt,
        response=response,
        error=error,
        retry_after=retry_after,
        delay=delay,
        ambiguous=ambiguous,
        gives_up=ambiguous or too_long or attempt >= policy.max_attempts,
        too_long=too_long,
    )


def send_with_retries(
    send: Callable[[], requests.Response],
    *,
    policy: RetryPolicy,
    idempotent: bool,
    sleep: Callable[[float], None],
    label: str = "request",
    read_retry_after: Callable[[requests.Response], float | None] = header_retry_after,
    on_failure: Callable[[Failure], None] | None = None,
) -> requests.Response:
    """Call `send` (one attempt: the client's token, headers and counting, then the session's request) until it
    answers with a status the policy does not retry; return that answer.

    Each transient failure is first handed to `on_failure` (counters, a shared-bucket penalty), then either slept
    out (`policy`) or ended with GaveUp. Exceptions other than TRANSIENT_EXCEPTIONS propagate from `send` as they
    are. `label` names the call in the log lines (never a URL with credentials)."""
    attempt = 0
    while True:
        attempt += 1
        response: requests.Response | None = None
        error: requests.RequestException | None = None
        try:
            response = send()
        except TRANSIENT_EXCEPTIONS as exc:
            error = exc
        if response is not None and response.status_code not in policy.retry_statuses:
            return response
        failure = _failure(
            attempt, response, error, policy=policy, idempotent=idempotent, read_retry_after=read_retry_after
        )
        if on_failure is not None:
            on_failure(failure)
        if failure.gives_up:
            raise GaveUp(failure) from error
        what = f"HTTP {failure.status}" if response is not None else f"{type(error).__name__}: {error}"
        logger.info("%s: %s; retry %d in %.2fs", label, what, attempt, failure.delay)
        sleep(failure.delay)
