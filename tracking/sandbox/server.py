"""The carrier sandbox: one real HTTP server speaking all five tracking APIs, for `make run`, tests and benchmarks.

Standard library only (ThreadingHTTPServer), no Django. Every carrier keeps its real paths, so one base URL serves
them all and a carrier account's `base_url` simply points here:

    UPS      POST /security/v1/oauth/token          GET  /api/track/v1/details/{n}
    FedEx    POST /oauth/token                      POST /track/v1/trackingnumbers (at most 30 numbers, else 400)
    USPS     POST /oauth2/v3/token                  GET  /tracking/v3/tracking/{n}?expand=DETAIL
    DHL      header DHL-API-Key                     GET  /track/shipments?trackingNumber=...
    17TRACK  header 17token                         POST /track/v2.2/register, /track/v2.2/gettrackinfo (at most 40)

Parcels follow scripted journeys keyed by their number (tracking/sandbox/journeys.py) and move with the sandbox
clock, which tests set (`set_clock`, `advance`). Each carrier has a rate limit (a token bucket per credential:
429 with Retry-After when exceeded), request counters per endpoint (`stats`), and faults on demand: `set_down`
(503 for a while), `fail_next` (the next N requests fail), `set_latency`, `revoke_tokens` (401 until a new token).
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import tracking.sandbox.carriers as carriers
from tracking.carriers.registry import get_spec
from tracking.sandbox.journeys import FINAL_STATUS, Scenario, Step, journey, scenario_for

logger = logging.getLogger(__name__)

CARRIERS = ("ups", "fedex", "usps", "dhl", "17track")
FEDEX_MAX_NUMBERS = 30
SEVENTEEN_MAX_NUMBERS = 40


@dataclass(frozen=True, slots=True)
class Limit:
    requests: int
    per_seconds: float


def published_limits() -> dict[str, Limit]:
    """The carrier modules' published defaults (one source of truth), or the same figures if they are absent."""
    fallback = {
        "ups": Limit(5, 1.0),
        "fedex": Limit(1400, 10.0),
        "usps": Limit(60, 3600.0),
        "dhl": Limit(1, 1.0),
        "17track": Limit(3, 1.0),
    }
    limits = {}
    for code in CARRIERS:
        try:
            limit = get_spec(code).default_rate_limit
            limits[code] = Limit(limit.requests, limit.per_seconds)
        except (KeyError, LookupError):
            limits[code] = fallback[code]
    return limits


class _Bucket:
    """Token bucket with the carrier's limit: capacity `requests`, refilled at requests/per_seconds."""

    def __init__(self, limit: Limit) -> None:
        self.limit = limit
        self.tokens = float(limit.requests)
        self.at = time.monotonic()

    def take(self) -> float:
        """0 when a request may pass, else the seconds until one may."""
        now = time.monotonic()
        rate = self.limit.requests / self.limit.per_seconds
        self.tokens = min(float(self.limit.requests), self.tokens + (now - self.at) * rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / rate


class CarrierSandbox:
    """A running sandbox: `CarrierSandbox(port=0).start()`, then `.base_url`; `.stop()` when done."""

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        *,
        epoch: datetime | None = None,
        rate_limits: dict[str, Limit | tuple[int, float]] | None = None,
        token_ttl: float = 3600.0,
        time_scale: float = 1.0,
    ) -> None:
        self.host = host
        self.port = port
        real_now = datetime.now(UTC)
        # Journeys start within 48 h after the epoch: by default two days ago, so that a fresh sandbox already
        # shows parcels at every stage.
        self.epoch = epoch or (real_now - timedelta(days=2)).replace(second=0, microsecond=0)
        self.token_ttl = token_ttl
        self._lock = threading.RLock()
        self._clock_base = real_now
        self._clock_real = time.monotonic()
        self._clock_scale = time_scale
        self._limits = published_limits()
        for code, limit in (rate_limits or {}).items():
            self._limits[code] = limit if isinstance(limit, Limit) else Limit(*limit)
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._credentials: dict[str, dict[str, str]] = {}
        self._tokens: dict[str, tuple[str, str, float]] = {}  # token -> (carrier, client id, expires monotonic)
        self._registered: dict[str, set[str]] = defaultdict(set)  # 17token -> numbers
        self._scripted: dict[str, Scenario] = {}
        self._down_until: dict[str, float] = {}
        self._down_retry_after: dict[str, int] = {}
        self._fail_next: dict[str, list[int]] = defaultdict(list)
        self._latency: dict[str, float] = {}
        self._requests: Counter[str] = Counter()
        self._statuses: Counter[str] = Counter()
        self._numbers: Counter[str] = Counter()
        self._max_batch: Counter[str] = Counter()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle --------------------------------------------------------------------------------------

    def start(self) -> CarrierSandbox:
        handler = type("SandboxHandler", (_Handler,), {"sandbox": self})
        self._server = ThreadingHTTPServer((self.host, self.port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="carrier-sandbox", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Run in the calling thread (the management command)."""
        handler = type("SandboxHandler", (_Handler,), {"sandbox": self})
        self._server = ThreadingHTTPServer((self.host, self.port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._server.serve_forever()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> CarrierSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # --- clock and journeys --------------------------------------------------------------------------------

    def now(self) -> datetime:
        with self._lock:
            elapsed = (time.monotonic() - self._clock_real) * self._clock_scale
            return self._clock_base + timedelta(seconds=elapsed)

    def set_clock(self, moment: datetime, *, running: bool = False) -> None:
        """Set the simulated time; it stands still there unless `running` (then it runs at time_scale)."""
        if moment.tzinfo is None:
            raise ValueError("the sandbox clock needs an aware datetime")
        with self._lock:
            self._clock_base = moment.astimezone(UTC)
            self._clock_real = time.monotonic()
            if not running:
                self._clock_scale = 0.0

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self.set_clock(self.now() + delta, running=self._clock_scale != 0.0)
            return self.now()

    def script(self, number: str, scenario: Scenario | str) -> None:
        """Give a number a scenario of your choice instead of the one its hash picks."""
        with self._lock:
            self._scripted[number.upper()] = Scenario(scenario)

    def scenario(self, number: str) -> Scenario:
        with self._lock:
            return self._scripted.get(number.upper()) or scenario_for(number)

    def journey(self, number: str) -> list[Step]:
        return journey(number, self.epoch, self.scenario(number))

    def visible(self, number: str) -> tuple[list[Step], list[Step]]:
        steps = self.journey(number)
        now = self.now()
        return [step for step in steps if step.at <= now], steps

    def expected_final_status(self, number: str) -> str:
        """The normalized status a poller must reach once the whole journey is visible."""
        return FINAL_STATUS[self.scenario(number)]

    # --- configuration and faults --------------------------------------------------------------------------

    def set_credentials(
        self, carrier: str, *, client_id: str = "", client_secret: str = "", api_key: str = ""
    ) -> None:
        """Only these credentials are accepted for the carrier (by default any non-empty ones are)."""
        with self._lock:
            self._credentials[carrier] = {"client_id": client_id, "client_secret": client_secret, "api_key": api_key}

    def set_rate_limit(self, carrier: str, requests: int, per_seconds: float) -> None:
        with self._lock:
            self._limits[carrier] = Limit(requests, per_seconds)
            for key in [key for key in self._buckets if key[0] == carrier]:
                del self._buckets[key]

    def rate_limit(self, carrier: str) -> Limit:
        return self._limits[carrier]

    def set_down(
        self, carrier: str, down: bool = True, *, seconds: float | None = None, retry_after: int = 30
    ) -> None:
        """The carrier answers 503 (with Retry-After) to everything, tokens too, until set up again or `seconds`
        have passed."""
        with self._lock:
            if down:
                self._down_until[carrier] = time.monotonic() + (seconds if seconds is not None else 10**9)
                self._down_retry_after[carrier] = retry_after
            else:
                self._down_until.pop(carrier, None)

    def fail_next(self, carrier: str, count: int = 1, *, status: int = 503) -> None:
        """The carrier's next `count` tracking requests fail with `status` (429 comes with Retry-After: 1)."""
        with self._lock:
            self._fail_next[carrier].extend([status] * count)

    def set_latency(self, carrier: str, seconds: float) -> None:
        with self._lock:
            self._latency[carrier] = seconds

    def revoke_tokens(self, carrier: str | None = None) -> None:
        """Every OAuth token issued (for one carrier) becomes invalid: the next call gets a 401."""
        with self._lock:
            for token in [t for t, (c, _, _) in self._tokens.items() if carrier in (None, c)]:
                del self._tokens[token]

    # --- statistics --------------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters since start (or reset_stats): requests per endpoint, answers per carrier and status, etc."""
        with self._lock:
            by_carrier: Counter[str] = Counter()
            for endpoint, count in self._requests.items():
                by_carrier[endpoint.split(".", 1)[0]] += count
            return {
                "requests": dict(self._requests),
                "requests_by_carrier": dict(by_carrier),
                "statuses": dict(self._statuses),
                "rate_limited": {
                    carrier: self._statuses.get(f"{carrier}.429", 0) for carrier in CARRIERS
                },
                "numbers": dict(self._numbers),
                "max_batch": dict(self._max_batch),
            }

    def reset_stats(self) -> None:
        with self._lock:
            self._requests.clear()
            self._statuses.clear()
            self._numbers.clear()
            self._max_batch.clear()

    def registered_numbers(self, api_key: str) -> set[str]:
        with self._lock:
            return set(self._registered.get(api_key, set()))

    # --- request handling (called by the handler threads) --------------------------------------------------

    def _count(self, endpoint: str, status: int, numbers: int = 0) -> None:
        carrier = endpoint.split(".", 1)[0]
        with self._lock:
            self._requests[endpoint] += 1
            self._statuses[f"{carrier}.{status}"] += 1
            if numbers:
                self._numbers[carrier] += numbers
                self._max_batch[carrier] = max(self._max_batch[carrier], numbers)

    def _fault(self, carrier: str) -> tuple[int, dict[str, str]] | None:
        with self._lock:
            latency = self._latency.get(carrier, 0.0)
            until = self._down_until.get(carrier)
            if until is not None and time.monotonic() >= until:
                del self._down_until[carrier]
                until = None
            forced = self._fail_next[carrier].pop(0) if until is None and self._fail_next[carrier] else None
            retry_after = self._down_retry_after.get(carrier, 30)
        if latency:
            time.sleep(latency)
        if until is not None:
            return 503, {"Retry-After": str(retry_after)}
        if forced is not None:
            return forced, ({"Retry-After": "1"} if forced == 429 else {})
        return None

    def _throttle(self, carrier: str, credential: str) -> float:
        with self._lock:
            key = (carrier, credential)
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(self._limits[carrier])
            return bucket.take()

    def _check_client(self, carrier: str, client_id: str, client_secret: str) -> bool:
        if not (client_id and client_secret):
            return False
        expected = self._credentials.get(carrier)
        return expected is None or (
            expected["client_id"] == client_id and expected["client_secret"] == client_secret
        )

    def _check_key(self, carrier: str, api_key: str) -> bool:
        if not api_key:
            return False
        expected = self._credentials.get(carrier)
        return expected is None or expected["api_key"] == api_key

    def _issue_token(self, carrier: str, client_id: str) -> str:
        token = f"{carrier}-{secrets.token_urlsafe(24)}"
        with self._lock:
            self._tokens[token] = (carrier, client_id, time.monotonic() + self.token_ttl)
        return token

    def _bearer_client(self, carrier: str, authorization: str) -> str | None:
        """The client id behind a valid bearer token of this carrier, or None."""
        if not authorization.lower().startswith("bearer "):
            return None
        token = authorization[7:].strip()
        with self._lock:
            entry = self._tokens.get(token)
            if entry is None or entry[0] != carrier or entry[2] < time.monotonic():
                return None
            return entry[1]


# --- HTTP ------------------------------------------------------------------------------------------------

Response = tuple[int, Any, dict[str, str]]


class _Handler(BaseHTTPRequestHandler):
    sandbox: CarrierSandbox
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse their connection, as with the real APIs
    # Headers and body leave in one segment: otherwise Nagle + delayed ACK cost ~40 ms per keep-alive request.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True
    server_version = "OMA-CarrierSandbox/1"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("carrier sandbox: " + format, *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    # --- plumbing --------------------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        self._numbers_asked = 0
        length = int(self.headers.get("Content-Length") or 0)
        self._body = self.rfile.read(length) if length else b""
        self._query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        if url.path.startswith("/_sandbox/"):
            try:
                status, body = self._control(method, url.path[len("/_sandbox/"):])
            except (KeyError, TypeError, ValueError) as exc:
                status, body = 400, {"error": f"bad control request: {exc}"}
            self._send(status, body)
            return
        route = self._route(method, url.path)
        if route is None:
            self._send(404, {"error": f"no such endpoint: {method} {url.path}"})
            return
        endpoint, carrier, handler = route
        fault = self.sandbox._fault(carrier)
        if fault is not None:
            status, headers = fault
            self.sandbox._count(endpoint, status)
            self._send(status, {"error": "service unavailable" if status >= 500 else "fault"}, headers)
            return
        try:
            status, body, headers = handler()
        except _Reject as reject:
            status, body, headers = reject.status, reject.body, reject.headers
        self.sandbox._count(endpoint, status, getattr(self, "_numbers_asked", 0))
        self._send(status, body, headers)

    def _control(self, method: str, action: str) -> tuple[int, Any]:
        """Remote control for a sandbox in another process (tracking/sandbox/remote.py): clock, limits, faults."""
        sandbox = self.sandbox
        body = self._json_body() if method == "POST" else None
        if method == "GET" and action == "stats":
            return 200, sandbox.stats()
        if method == "GET" and action == "clock":
            return 200, {"now": sandbox.now().isoformat(), "epoch": sandbox.epoch.isoformat()}
        if method != "POST" or not isinstance(body, dict):
            return 404, {"error": f"no control action {method} {action}"}
        if action == "clock":
            sandbox.set_clock(datetime.fromisoformat(body["now"]), running=bool(body.get("running", False)))
        elif action == "reset_stats":
            sandbox.reset_stats()
        elif action == "rate_limit":
            sandbox.set_rate_limit(body["carrier"], int(body["requests"]), float(body["per_seconds"]))
        elif action == "down":
            sandbox.set_down(body["carrier"], bool(body.get("down", True)), seconds=body.get("seconds"))
        elif action == "fail_next":
            sandbox.fail_next(body["carrier"], int(body.get("count", 1)), status=int(body.get("status", 503)))
        elif action == "script":
            sandbox.script(body["number"], body["scenario"])
        elif action == "credentials":
            sandbox.set_credentials(
                body["carrier"], client_id=body.get("client_id", ""), client_secret=body.get("client_secret", ""),
                api_key=body.get("api_key", ""),
            )
        else:
            return 404, {"error": f"no control action {action}"}
        return 200, {"ok": True}

    def _route(self, method: str, path: str) -> tuple[str, str, Callable[[], Response]] | None:
        if method == "POST" and path == "/security/v1/oauth/token":
            return "ups.token", "ups", lambda: self._token("ups", basic_only=True)
        if method == "POST" and path == "/oauth/token":
            return "fedex.token", "fedex", lambda: self._token("fedex")
        if method == "POST" and path == "/oauth2/v3/token":
            return "usps.token", "usps", lambda: self._token("usps")
        if method == "GET" and path.startswith("/api/track/v1/details/"):
            number = unquote(path.rsplit("/", 1)[1])
            return "ups.track", "ups", lambda: self._ups(number)
        if method == "POST" and path == "/track/v1/trackingnumbers":
            return "fedex.track", "fedex", self._fedex
        if method == "GET" and path.startswith("/tracking/v3/tracking/"):
            number = unquote(path.rsplit("/", 1)[1])
            return "usps.track", "usps", lambda: self._usps(number)
        if method == "GET" and path == "/track/shipments":
            return "dhl.track", "dhl", self._dhl
        if method == "POST" and path == "/track/v2.2/register":
            return "17track.register", "17track", self._seventeen_register
        if method == "POST" and path == "/track/v2.2/gettrackinfo":
            return "17track.gettrackinfo", "17track", self._seventeen_info
        return None

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        content_type = "application/problem+json" if status >= 400 and isinstance(body, dict) and "title" in body else (
            "application/json"
        )
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _json_body(self) -> Any:
        try:
            return json.loads(self._body or b"null")
        except ValueError as exc:
            raise _Reject(400, {"error": f"body is not JSON: {exc}"}) from exc

    def _form(self) -> dict[str, str]:
        content_type = (self.headers.get("Content-Type") or "").lower()
        if "json" in content_type:
            body = self._json_body()
            return {k: str(v) for k, v in body.items()} if isinstance(body, dict) else {}
        return {key: values[-1] for key, values in parse_qs(self._body.decode(errors="replace")).items()}

    def _limit(self, carrier: str, credential: str) -> None:
        wait = self.sandbox._throttle(carrier, credential)
        if wait > 0:
            raise _Reject(
                429,
                {"error": {"code": "429", "message": "Too Many Requests: rate limit exceeded"}},
                {"Retry-After": f"{max(1, round(wait + 0.5))}"},
            )

    def _visible(self, number: str) -> tuple[list[Step], list[Step]]:
        return self.sandbox.visible(number)

    # --- OAuth ----------------------------------------------------------------------------------------

    def _token(self, carrier: str, *, basic_only: bool = False) -> Response:
        form = self._form()
        client_id, client_secret = "", ""
        authorization = self.headers.get("Authorization") or ""
        if authorization.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(authorization[6:].strip()).decode()
                client_id, _, client_secret = decoded.partition(":")
            except (ValueError, UnicodeDecodeError):
                client_id = client_secret = ""
        if not basic_only and not client_id:
            client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
        if form.get("grant_type") != "client_credentials":
            return 400, _oauth_error("unsupported_grant_type", "grant_type must be client_credentials"), {}
        if not self.sandbox._check_client(carrier, client_id, client_secret):
            return 401, _oauth_error("invalid_client", "Client authentication failed."), {}
        token = self.sandbox._issue_token(carrier, client_id)
        ttl = int(self.sandbox.token_ttl)
        body: dict[str, object]
        if carrier == "ups":  # UPS sends its numbers as strings
            body = {"token_type": "Bearer", "issued_at": str(int(time.time() * 1000)), "client_id": client_id,
                    "access_token": token, "expires_in": str(ttl), "status": "approved"}
        else:
            body = {"access_token": token, "token_type": "Bearer", "expires_in": ttl, "scope": "tracking"}
        return 200, body, {}

    def _bearer(self, carrier: str) -> str:
        client = self.sandbox._bearer_client(carrier, self.headers.get("Authorization") or "")
        if client is None:
            if carrier == "ups":
                raise _Reject(401, _ups_error("250002", "Invalid Authentication Information."))
            if carrier == "fedex":
                raise _Reject(401, _fedex_error("NOT.AUTHORIZED.ERROR", "The given client credentials were not valid."))
            raise _Reject(401, _oauth_error("invalid_token", "The access token is invalid or expired."))
        return client

    # --- carriers -------------------------------------------------------------------------------------

    def _ups(self, number: str) -> Response:
        client = self._bearer("ups")
        if not (self.headers.get("transId") and self.headers.get("transactionSrc")):
            return 400, _ups_error("TV1001", "Missing transId or transactionSrc"), {}
        self._limit("ups", client)
        self._numbers_asked = 1
        status, body = carriers.ups_details(number, *self._visible(number))
        return status, body, {}

    def _fedex(self) -> Response:
        client = self._bearer("fedex")
        self._limit("fedex", client)
        body = self._json_body()
        infos = body.get("trackingInfo") if isinstance(body, dict) else None
        if not isinstance(infos, list) or not infos:
            return 400, _fedex_error("TRACKING.TRACKINGNUMBER.EMPTY", "Please provide tracking number."), {}
        if len(infos) > FEDEX_MAX_NUMBERS:
            error = _fedex_error("TRACKING.TRACKINGNUMBERS.LIMIT.EXCEEDED", f"Maximum limit is {FEDEX_MAX_NUMBERS}.")
            return 400, error, {}
        numbers = [str((info.get("trackingNumberInfo") or {}).get("trackingNumber", "")) for info in infos]
        self._numbers_asked = len(numbers)
        results = [carriers.fedex_track_result(number, *self._visible(number)) for number in numbers]
        return 200, {"transactionId": secrets.token_hex(8), "output": {"completeTrackResults": results}}, {}

    def _usps(self, number: str) -> Response:
        client = self._bearer("usps")
        self._limit("usps", client)
        self._numbers_asked = 1
        status, body = carriers.usps_tracking(number, *self._visible(number))
        return status, body, {}

    def _dhl(self) -> Response:
        api_key = self.headers.get("DHL-API-Key") or ""
        if not self.sandbox._check_key("dhl", api_key):
            return 401, {"status": 401, "title": "Unauthorized", "detail": "Invalid API key."}, {}
        self._limit("dhl", api_key)
        number = self._query.get("trackingNumber", "")
        if not number:
            return 400, {"status": 400, "title": "Bad Request", "detail": "trackingNumber is required."}, {}
        self._numbers_asked = 1
        status, body = carriers.dhl_shipments(number, *self._visible(number))
        return status, body, {}

    def _seventeen_entries(self) -> tuple[str, list[str]]:
        api_key = self.headers.get("17token") or ""
        if not self.sandbox._check_key("17track", api_key):
            raise _Reject(401, _seventeen_error(-18010002, "Invalid token."))
        self._limit("17track", api_key)
        body = self._json_body()
        if not isinstance(body, list) or not body:
            raise _Reject(400, _seventeen_error(-18010001, "Empty request."))
        if len(body) > SEVENTEEN_MAX_NUMBERS:
            raise _Reject(400, _seventeen_error(-18010013, f"At most {SEVENTEEN_MAX_NUMBERS} numbers per request."))
        numbers = [str(entry.get("number", "")) if isinstance(entry, dict) else "" for entry in body]
        self._numbers_asked = len(numbers)
        return api_key, numbers

    def _seventeen_register(self) -> Response:
        api_key, numbers = self._seventeen_entries()
        accepted, rejected = [], []
        with self.sandbox._lock:
            registered = self.sandbox._registered[api_key]
            for number in numbers:
                if number.upper() in registered:
                    message = f"The tracking number '{number}' has been registered, don't need to repeat registration."
                    rejected.append({"number": number, "error": {"code": -18019901, "message": message}})
                else:
                    registered.add(number.upper())
                    accepted.append({"origin": 1, "number": number, "carrier": carriers.SEVENTEEN_PROVIDER["key"]})
        return 200, {"code": 0, "data": {"accepted": accepted, "rejected": rejected}}, {}

    def _seventeen_info(self) -> Response:
        api_key, numbers = self._seventeen_entries()
        registered = self.sandbox.registered_numbers(api_key)
        accepted, rejected = [], []
        for number in numbers:
            if number.upper() not in registered:
                message = f"The tracking number '{number}' does not register, please register first."
                rejected.append({"number": number, "error": {"code": -18019902, "message": message}})
                continue
            accepted.append(carriers.seventeen_track_info(number, *self._visible(number)))
        return 200, {"code": 0, "data": {"accepted": accepted, "rejected": rejected}}, {}


def _oauth_error(code: str, description: str) -> dict[str, str]:
    return {"error": code, "error_description": description}


def _ups_error(code: str, message: str) -> dict[str, Any]:
    return {"response": {"errors": [{"code": code, "message": message}]}}


def _fedex_error(code: str, message: str) -> dict[str, Any]:
    return {"transactionId": secrets.token_hex(8), "errors": [{"code": code, "message": message}]}


def _seventeen_error(code: int, message: str) -> dict[str, Any]:
    return {"code": code, "data": {"errors": [{"code": code, "message": message}]}}


class _Reject(Exception):
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}
