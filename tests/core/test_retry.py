"""oma.core.retry (the one retry policy and Retry-After parser) and the outbound session's timeout and observers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests
from requests.adapters import BaseAdapter
from urllib3.exceptions import MaxRetryError, NewConnectionError

from oma.core.outbound import (
    DEFAULT_TIMEOUT,
    add_response_observer,
    outbound_session,
    remove_response_observer,
)
from oma.core.retry import (
    Failure,
    GaveUp,
    RetryPolicy,
    rate_limit_retry_after,
    retry_after_seconds,
    send_with_retries,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


# --- Retry-After ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("2", 2.0),
        (" 1.5 ", 1.5),
        ("-3", 0.0),
        (format_datetime(NOW + timedelta(seconds=90), usegmt=True), 90.0),
        (format_datetime(NOW - timedelta(seconds=90), usegmt=True), 0.0),
        ("Thu, 01 Jan 2026 12:00:30", 30.0),  # a date without a zone is read as UTC
        (None, None),
        ("", None),
        ("soon", None),
        ("inf", None),
        ("nan", None),
    ],
)
def test_retry_after_reads_seconds_and_http_dates(value: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(value, now=NOW) == (pytest.approx(seconds) if seconds is not None else None)


# --- the policy ----------------------------------------------------------------------------------------------------


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    policy = RetryPolicy(backoff_base=0.5, backoff_cap=3.0)
    for retry, step in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 3.0), (10, 3.0)]:
        waits = [policy.backoff(retry) for _ in range(200)]
        assert all(0 <= wait <= step for wait in waits)
        assert min(waits) < step / 2 < max(waits)


def test_a_jitter_floor_always_waits_that_part_of_the_step() -> None:
    policy = RetryPolicy(backoff_base=0.5, backoff_cap=8.0, jitter_floor=0.5)
    waits = [policy.backoff(2) for _ in range(200)]
    assert all(1.0 <= wait <= 2.0 for wait in waits)


# --- the loop ------------------------------------------------------------------------------------------------------


def answer(status: int, headers: dict[str, str] | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers or {})
    response._content = b"{}"
    return response


def refused() -> requests.ConnectionError:
    """What requests raises when the connection was never made."""
    reason = NewConnectionError(None, "refused")  # type: ignore[arg-type]
    return requests.ConnectionError(MaxRetryError(None, "/", reason))  # type: ignore[arg-type]


class Script:
    """`send` for the loop: hands out (or raises) the scripted outcomes in order; records the sleeps."""

    def __init__(self, *outcomes: requests.Response | Exception) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0
        self.sleeps: list[float] = []
        self.failures: list[Failure] = []

    def send(self) -> requests.Response:
        outcome = self.outcomes[min(self.calls, len(self.outcomes) - 1)]
        self.calls += 1
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def run(
        self, *, policy: RetryPolicy | None = None, idempotent: bool = True, **options: object
    ) -> requests.Response:
        return send_with_retries(
            self.send, policy=policy or RetryPolicy(max_attempts=4), idempotent=idempotent,
            sleep=self.sleeps.append, on_failure=self.failures.append, **options,  # type: ignore[arg-type]
        )


def test_transient_answers_are_retried_until_one_is_not() -> None:
    script = Script(answer(503), answer(429, {"Retry-After": "2"}), answer(404))
    assert script.run().status_code == 404  # not retried: handed back to the client to map
    assert script.calls == 3
    assert len(script.sleeps) == 2 and script.sleeps[1] == 2.0
    assert [(f.status, f.gives_up) for f in script.failures] == [(503, False), (429, False)]


def test_out_of_attempts_gives_up_with_the_last_failure() -> None:
    script = Script(answer(500))
    with pytest.raises(GaveUp) as info:
        script.run(policy=RetryPolicy(max_attempts=3))
    assert script.calls == 3 and len(script.sleeps) == 2
    failure = info.value.failure
    assert (failure.status, failure.attempt, failure.retries, failure.ambiguous) == (500, 3, 2, False)


@pytest.mark.parametrize("outcome", [answer(500), answer(503), requests.ReadTimeout("read timed out")])
def test_an_ambiguous_write_is_never_retried(outcome: requests.Response | Exception) -> None:
    script = Script(outcome, answer(201))
    with pytest.raises(GaveUp) as info:
        script.run(idempotent=False)
    assert script.calls == 1 and script.sleeps == []
    assert info.value.failure.ambiguous is True


@pytest.mark.parametrize("outcome", [answer(429, {"Retry-After": "1"}), refused(), requests.ConnectTimeout("x")])
def test_a_write_the_server_cannot_have_acted_on_is_retried(outcome: requests.Response | Exception) -> None:
    script = Script(outcome, answer(201))
    assert script.run(idempotent=False).status_code == 201
    assert script.calls == 2


def test_the_same_failures_are_retried_when_the_caller_says_the_request_is_idempotent() -> None:
    script = Script(requests.ReadTimeout("read timed out"), answer(502), answer(200))
    assert script.run(idempotent=True).status_code == 200
    assert script.calls == 3


def test_a_retry_after_longer_than_the_policy_allows_is_handed_to_the_caller() -> None:
    script = Script(answer(429, {"Retry-After": "3600"}))
    with pytest.raises(GaveUp) as info:
        script.run(policy=RetryPolicy(max_attempts=5, max_retry_after=60))
    failure = info.value.failure
    assert script.calls == 1 and script.sleeps == []
    assert failure.too_long and failure.retry_after == failure.delay == 3600


def test_retry_after_as_a_floor_under_the_backoff() -> None:
    policy = RetryPolicy(max_attempts=3, backoff_base=100.0, backoff_cap=100.0, retry_after_is_floor=True)
    script = Script(answer(503, {"Retry-After": "1"}), answer(503, {"Retry-After": "1"}), answer(200))
    script.run(policy=policy)
    assert all(wait >= 1.0 for wait in script.sleeps)


def test_the_caller_reads_its_own_retry_after_and_chooses_its_statuses() -> None:
    script = Script(answer(408, {"X-Reset": "7"}), answer(200))
    script.run(
        policy=RetryPolicy(max_attempts=2, retry_statuses=frozenset({408})),
        read_retry_after=lambda response: float(response.headers["X-Reset"]),
    )
    assert script.sleeps == [7.0]


def test_other_exceptions_propagate_untouched() -> None:
    script = Script(requests.exceptions.InvalidURL("bad"))
    with pytest.raises(requests.exceptions.InvalidURL):
        script.run()
    assert script.calls == 1


# --- the outbound session: default timeout and observers -----------------------------------------------------------


class RecordingAdapter(BaseAdapter):
    def __init__(self, outcome: Callable[[requests.PreparedRequest], requests.Response]) -> None:
        super().__init__()
        self.outcome = outcome
        self.timeouts: list[object] = []

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: object = None,
             verify: object = True, cert: object = None, proxies: object = None) -> requests.Response:
        self.timeouts.append(timeout)
        response = self.outcome(request)
        response.request, response.url = request, request.url or ""
        return response

    def close(self) -> None:
        pass


@pytest.fixture
def seen() -> Iterator[list[tuple[str, object]]]:
    outcomes: list[tuple[str, object]] = []

    def observer(host: str, outcome: int | requests.RequestException) -> None:
        outcomes.append((host, outcome))

    add_response_observer(observer)
    add_response_observer(observer)  # registering twice keeps one
    yield outcomes
    remove_response_observer(observer)


def test_a_request_without_a_timeout_gets_the_default_and_every_answer_is_observed(seen) -> None:
    session = outbound_session(base_url="http://127.0.0.1:8099", own_hosts=())
    adapter = RecordingAdapter(lambda request: answer(503))
    session.mount("http://", adapter)
    session.get("http://127.0.0.1:8099/a")
    session.get("http://127.0.0.1:8099/b", timeout=(1, 2))
    assert adapter.timeouts == [DEFAULT_TIMEOUT, (1, 2)]
    assert seen == [("127.0.0.1:8099", 503), ("127.0.0.1:8099", 503)]


def test_a_failed_request_is_observed_with_its_exception(seen) -> None:
    def fail(request: requests.PreparedRequest) -> requests.Response:
        raise refused()

    session = outbound_session(base_url="http://127.0.0.1", own_hosts=())
    session.mount("http://", RecordingAdapter(fail))
    with pytest.raises(requests.ConnectionError):
        session.get("http://127.0.0.1/a")
    ((host, outcome),) = seen
    assert host == "127.0.0.1" and isinstance(outcome, requests.ConnectionError)


def test_a_failing_observer_does_not_fail_the_request(seen) -> None:
    def broken(host: str, outcome: int | requests.RequestException) -> None:
        raise RuntimeError("metrics down")

    add_response_observer(broken)
    try:
        session = outbound_session(base_url="http://127.0.0.1", own_hosts=())
        session.mount("http://", RecordingAdapter(lambda request: answer(200)))
        assert session.get("http://127.0.0.1/").status_code == 200
    finally:
        remove_response_observer(broken)
    assert seen == [("127.0.0.1", 200)]


def test_a_client_reading_only_429s_retry_after_backs_off_on_its_own_after_a_5xx() -> None:
    """Genstore and ShipStation: a 503 asking for 0 s or for minutes still gets the jittered backoff, not a hot
    loop and not an early give-up; a 429's Retry-After is still obeyed."""
    policy = RetryPolicy(max_attempts=4, backoff_base=1.0, backoff_cap=1.0, jitter_floor=1.0, max_retry_after=60)
    script = Script(answer(503, {"Retry-After": "0"}), answer(503, {"Retry-After": "120"}),
                    answer(429, {"Retry-After": "7"}), answer(200))
    assert script.run(policy=policy, read_retry_after=rate_limit_retry_after).status_code == 200
    assert script.sleeps == [1.0, 1.0, 7.0]
