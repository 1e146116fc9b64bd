"""The contract between carrier modules (pure: build requests, parse answers) and the generic transport.

A carrier module (tracking/carriers/ups.py, fedex.py, usps.py, dhl.py, seventeentrack.py) exposes one
`CarrierSpec` instance named `SPEC`. It never performs I/O: it says how to authenticate, how to batch numbers
into HTTP calls, and how to turn a decoded response into `TrackingResult`s. tracking/carriers/transport.py
executes the calls (one session per carrier account, timeouts, token cache and refresh, rate limit, retries
for transient failures only) and hands the decoded JSON back to `SPEC.parse`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

AuthKind = Literal["oauth_client_credentials", "api_key_header", "none"]


@dataclass(frozen=True, slots=True)
class TrackingEventRecord:
    occurred_at: datetime  # timezone-aware, converted to UTC with the carrier's offset (never a local time as UTC)
    status: str  # one of tracking.vocabulary.STATUSES
    substatus: str = ""
    raw_code: str = ""
    raw_text: str = ""
    location: str = ""


@dataclass(frozen=True, slots=True)
class TrackingResult:
    tracking_number: str
    carrier: str  # our carrier code: ups, fedex, usps, dhl, or the 17TRACK carrier for the long tail
    found: bool = True
    status: str = "unknown"
    substatus: str = ""
    raw_code: str = ""
    raw_text: str = ""
    events: tuple[TrackingEventRecord, ...] = ()  # newest first, deduplicated
    estimated_delivery: datetime | date | None = None
    delivered_at: datetime | None = None
    signed_by: str = ""
    error: str = ""  # the carrier's message when not found or rejected


@dataclass(frozen=True, slots=True)
class HttpCall:
    """One HTTP request to make, relative to the account's base URL; auth headers are added by the transport."""

    method: Literal["GET", "POST"]
    path: str
    numbers: tuple[str, ...]  # tracking numbers this call covers
    params: dict[str, str] = field(default_factory=dict)
    json: object = None  # the JSON body, sent as requests' json=
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RateLimit:
    requests: int
    per_seconds: float


@dataclass(frozen=True, slots=True)
class CarrierSpec:
    code: str  # ups, fedex, usps, dhl, 17track
    display_name: str
    default_base_url: str
    auth: AuthKind
    batch_size: int  # numbers per tracking request (FedEx 30, 17TRACK 40, others 1)
    default_rate_limit: RateLimit
    build_calls: Callable[[Sequence[str]], list[HttpCall]]
    parse: Callable[[object, Sequence[str]], list[TrackingResult]]  # (decoded JSON, numbers asked) -> results
    token_path: str = ""  # OAuth client-credentials token endpoint, relative to the base URL
    api_key_header: str = ""  # e.g. "DHL-API-Key", "17token"
    # 17TRACK only: numbers must be registered before gettrackinfo answers for them.
    build_register_calls: Callable[[Sequence[str]], list[HttpCall]] | None = None
    tracking_url: Callable[[str], str] = lambda number: ""
    # The carrier's own test environments: merchants may point their accounts there (see oma.core.outbound).
    test_base_urls: tuple[str, ...] = ()
