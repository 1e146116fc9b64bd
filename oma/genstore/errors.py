"""Our own exceptions for everything the Genstore client can run into.

Callers decide on retries with one attribute: `transient` is True when trying again later may succeed (rate limit,
server error, network trouble) and False when it will not (bad token, unknown order, rejected body).
`ambiguous` is True when a write may have reached Genstore although we got no answer: the caller must read before
it writes again (Genstore has no idempotency keys).
"""

from __future__ import annotations

from typing import TypedDict, Unpack


class ErrorFields(TypedDict, total=False):
    """GenstoreError's keyword arguments, as a subclass passes them on."""

    status: int | None
    error_text: str | None
    url: str | None
    ambiguous: bool


class GenstoreError(Exception):
    """Base class. `error_text` is Genstore's own `error` string when the response carried one."""

    transient: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_text: str | None = None,
        url: str | None = None,
        ambiguous: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_text = error_text
        self.url = url
        self.ambiguous = ambiguous

    def __str__(self) -> str:
        return self.message


class GenstoreAuthError(GenstoreError):
    """401/403: the token is invalid, revoked, or lacks a scope. Re-authorising is the only cure."""


class GenstoreNotFound(GenstoreError):
    """404: the order, fulfillment or subscription does not exist (or is outside the 60-day window)."""


class GenstoreUnprocessable(GenstoreError):
    """400/422: Genstore rejected the request body; `error_text` says why (e.g. quantity above fulfillable)."""


class GenstoreClientError(GenstoreError):
    """Any other 4xx (and unexpected 3xx): our request is wrong in a way retrying will not fix."""


class GenstoreRateLimited(GenstoreError):
    """429 answers kept coming after every retry, or the wait for a token would be too long.

    `retry_after` is how many seconds Genstore (or our shared bucket) asked us to wait, when known: a Celery task
    can use it as its countdown instead of sleeping in a worker slot.
    """

    transient = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Unpack[ErrorFields]) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class GenstoreServerError(GenstoreError):
    """5xx after every retry (or at once for a create, whose write may have happened)."""

    transient = True


class GenstoreTransportError(GenstoreError):
    """Timeouts and connection errors after every retry (or at once for a create sent but not answered)."""

    transient = True


class GenstoreResponseError(GenstoreError):
    """A 2xx whose body is not JSON or not the shape the contract describes."""


class GenstoreRecordError(GenstoreResponseError):
    """A record that cannot be used at all (e.g. an order with neither `orderId` nor `id`).

    Raised by the parsers so the caller counts the record as an error instead of silently dropping it.
    """

    def __init__(self, message: str, *, raw: object = None, **kwargs: Unpack[ErrorFields]) -> None:
        super().__init__(message, **kwargs)
        self.raw = raw
