"""The Genstore sandbox: a real HTTP server (stdlib `ThreadingHTTPServer`, no Django) speaking the Genstore API as
`genstore-contract.md` describes it, for `make run`, tests (in-process, port 0) and benchmarks (a subprocess).

Several shops share one port: `/{handle}/api/{version}/...`. Control endpoints under `/_sandbox/` mirror the
Python API so a sandbox in another process can be driven (see `oma.sandbox.control`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qs, quote, urlsplit

from oma.sandbox.data import FINANCIAL_STATUSES, ms_from_datetime, parse_iso_ms
from oma.sandbox.quirks import QUIRKS, canonical_order, plain_order, wire_fulfillment
from oma.sandbox.shop import (
    DEFAULT_CACHE_ORDERS,
    WEBHOOK_FAILURE_LIMIT,
    ApiError,
    OrderChange,
    OrderFilter,
    Shop,
    TokenBucket,
)
from oma.sandbox.webhooks import WebhookAttempt, WebhookDispatcher, WebhookJob, build_headers, sign_body

logger = logging.getLogger(__name__)

DEFAULT_ACCESS_TOKEN = "gs-sandbox-access-token"
DEFAULT_CLIENT_SECRET = "gs-sandbox-client-secret"
DEFAULT_API_VERSION = "202412"
DEFAULT_RATE_LIMIT = (40, 2.0)
SHOP_DOMAIN_SUFFIX = "genmystore.com"
GRANTED_SCOPES = ("read_orders", "write_orders", "write_fulfillments", "write_apps", "read_all_orders")
DEFAULT_PAGE_LIMIT = 50
MAX_PAGE_LIMIT = 250
# A bucket so large it never empties: `rate_limit=None`.
UNLIMITED_RATE_LIMIT = (1_000_000, 1_000_000.0)
WRITE_METHODS = frozenset({"POST", "PUT", "DELETE", "PATCH"})
MAX_RECORDED_WEBHOOK_ATTEMPTS = 10_000
LINK_HEADER_VARIANTS: tuple[str, ...] = ("plain", "quoted", "spaced", "quoted_spaced_next_first")

_FULFILLMENT_FILTER_VALUES = {
    "unfulfilled": 0,
    "unshipped": 0,
    "null": 0,
    "partial": 1,
    "fulfilled": 2,
    "shipped": 2,
    "restocked": 3,
}


@dataclass
class FaultSettings:
    error_rate: float = 0.0  # share of API requests answered `status` without doing anything
    status: int = 503
    slow_rate: float = 0.0  # share of API requests answered only after `slow_seconds`
    slow_seconds: float = 0.0
    write_error_rate: float = 0.0  # share of successful writes that are applied but answered `write_error_status`
    write_error_status: int = 502


class Response(NamedTuple):
    status: int
    body: bytes
    headers: dict[str, str]


def _json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status, json.dumps(payload, separators=(",", ":"), default=_json_default).encode(), headers or {})


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json_response(status, {"error": message}, headers)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.decode()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _default_anchor() -> datetime:
    """Generated orders end at the start of today (UTC): recent enough for the 60-day window, stable all day."""
    now = datetime.now(UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


class GenstoreSandbox:
    """A Genstore API server with generated shops. Use as a context manager, or `start()` / `stop()`."""

    def __init__(
        self,
        *,
        orders: int = 500,
        seed: int = 1,
        host: str = "127.0.0.1",
        port: int = 0,
        shops: tuple[str, ...] | list[str] = ("shop1",),
        access_token: str = DEFAULT_ACCESS_TOKEN,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        rate_limit: tuple[int, float] | None = DEFAULT_RATE_LIMIT,
        api_version: str = DEFAULT_API_VERSION,
        anchor: datetime | None = None,
        days: int = 60,
        webhook_timeout: float = 3.0,
        page_token_ttl: float = 3600.0,
        cache_orders: int = DEFAULT_CACHE_ORDERS,
        verbose: bool = False,
    ) -> None:
        handles = [h.strip() for h in shops if h.strip()]
        if not handles or len(set(handles)) != len(handles):
            raise ValueError("shops must be distinct, non-empty handles")
        for handle in handles:
            if not handle.replace("-", "").replace("_", "").isalnum() or handle.startswith("_"):
                raise ValueError(f"invalid shop handle: {handle!r}")
        self.seed = seed
        self.host = host
        self.requested_port = port
        self.access_token = access_token
        self.client_secret = client_secret
        self.api_version = api_version
        self.anchor = anchor or _default_anchor()
        self.page_token_ttl = page_token_ttl
        self.verbose = verbose
        self._anchor_ms = ms_from_datetime(self.anchor)
        self._lock = threading.RLock()
        self._shops: dict[str, Shop] = {
            handle: Shop(
                handle=handle,
                seed=seed,
                order_count=orders,
                anchor_ms=self._anchor_ms,
                days=days,
                cache_orders=cache_orders,
            )
            for handle in handles
        }
        self._last_stamp = 0
        self._faults = FaultSettings()
        self._fault_rng = random.Random(seed ^ 0xFA17)
        self._token_key = os.urandom(16)
        # The newest attempts only: a long benchmark must not grow without bound.
        self._attempts: deque[WebhookAttempt] = deque(maxlen=MAX_RECORDED_WEBHOOK_ATTEMPTS)
        self._dispatcher = WebhookDispatcher(
            timeout=webhook_timeout, on_attempt=self._record_attempt, should_send=self._subscription_active
        )
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.set_rate_limit(*(rate_limit or UNLIMITED_RATE_LIMIT))

    # --- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> GenstoreSandbox:
        if self._server is not None:
            return self
        server = _SandboxHTTPServer((self.host, self.requested_port), _Handler)
        server.sandbox = self
        self._server = server
        self._dispatcher.start()
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="genstore-sandbox", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._dispatcher.stop()

    def __enter__(self) -> GenstoreSandbox:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- addresses ---------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the sandbox is not running: call start()")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The server root, e.g. http://127.0.0.1:8100."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self.port}"

    @property
    def control_url(self) -> str:
        return f"{self.url}/_sandbox/"

    @property
    def handles(self) -> tuple[str, ...]:
        return tuple(self._shops)

    def base_url_for(self, handle: str) -> str:
        """What goes before `/api/{version}/...` for this shop, e.g. http://127.0.0.1:8100/shop1."""
        self._shop(handle)
        return f"{self.url}/{handle}"

    def api_url_for(self, handle: str, path: str = "") -> str:
        return f"{self.base_url_for(handle)}/api/{self.api_version}/{path.lstrip('/')}"

    @staticmethod
    def domain_for(handle: str) -> str:
        return f"{handle}.{SHOP_DOMAIN_SUFFIX}"

    def startup_line(self) -> str:
        shops = self.handles
        return (
            "Genstore sandbox ready"
            f" base_urls={','.join(self.base_url_for(h) for h in shops)}"
            f" domains={','.join(self.domain_for(h) for h in shops)}"
            f" access_token={self.access_token} client_secret={self.client_secret}"
            f" api_version={self.api_version} orders={','.join(str(self._shops[h].count) for h in shops)}"
            f" seed={self.seed} control={self.control_url}"
        )

    # --- settings -------------------------------------------------------------------------------------------

    def set_rate_limit(self, capacity: int, refill: float, *, handle: str | None = None) -> None:
        """Replace the token bucket (full) of one shop, or of every shop."""
        if capacity < 1 or refill < 0:
            raise ValueError("capacity must be >= 1 and refill >= 0")
        with self._lock:
            for shop in self._select(handle):
                shop.bucket = TokenBucket(int(capacity), float(refill))

    def set_faults(
        self,
        *,
        error_rate: float = 0.0,
        status: int = 503,
        slow_rate: float = 0.0,
        slow_seconds: float = 0.0,
        write_error_rate: float = 0.0,
        write_error_status: int = 502,
    ) -> None:
        """Replace the fault settings (calling with no arguments turns faults off). Reseeds the fault dice."""
        for rate in (error_rate, slow_rate, write_error_rate):
            if not 0.0 <= rate <= 1.0:
                raise ValueError("rates are between 0 and 1")
        with self._lock:
            self._faults = FaultSettings(
                error_rate=error_rate,
                status=int(status),
                slow_rate=slow_rate,
                slow_seconds=slow_seconds,
                write_error_rate=write_error_rate,
                write_error_status=int(write_error_status),
            )
            self._fault_rng = random.Random(self.seed ^ 0xFA17)

    def clear_faults(self) -> None:
        self.set_faults()

    @property
    def faults(self) -> FaultSettings:
        with self._lock:
            return FaultSettings(**asdict(self._faults))

    def set_access_token(self, token: str, *, handle: str | None = None) -> None:
        """Change the token the API accepts (for one shop, or all): the old one then gets 401."""
        with self._lock:
            if handle is None:
                self.access_token = token
                for shop in self._shops.values():
                    shop.access_token = None
            else:
                self._shop(handle).access_token = token

    # --- orders (Python API) ----------------------------------------------------------------------------------

    def order_count(self, handle: str) -> int:
        with self._lock:
            return self._shop(handle).count

    def order_ids(self, handle: str) -> list[str]:
        with self._lock:
            shop = self._shop(handle)
            return [str(shop.ids.order_id(i)) for i in range(shop.count)]

    def orders(self, handle: str) -> Iterator[dict[str, Any]]:
        """Every order in clean API JSON (no quirks), by orderId. Lazily generated: fine for 100,000 orders."""
        shop = self._shop(handle)
        index = 0
        while True:
            with self._lock:
                if index >= shop.count:
                    return
                order = plain_order(shop.order(index))
            yield order
            index += 1

    def order(self, handle: str, order_id: str | int) -> dict[str, Any]:
        """One order in clean API JSON, its fulfillments included. KeyError if unknown."""
        with self._lock:
            shop = self._shop(handle)
            return plain_order(shop.order(self._index(shop, order_id)))

    def raw_order(self, handle: str, order_id: str | int) -> dict[str, Any]:
        """One order exactly as the API serves it (quirks and all)."""
        with self._lock:
            shop = self._shop(handle)
            return json.loads(shop.order_bytes(self._index(shop, order_id)))

    def canonical(self, handle: str, order_id: str | int) -> dict[str, Any]:
        """The truth a correct client mirrors: plain Python values, quirks undone, malformed fields None.

        Keys: orderId, id, name, sourceName, sourceIdentifier, financialStatus, fulfillmentStatus ("unfulfilled"
        for null), cancelled, cancelledAt, cancelReason, createdAt, updatedAt (aware datetimes), email,
        totalPrice, subtotalPrice (Decimal), currency, tags, lineItems [CanonicalLineItem(id, sku, quantity,
        fulfillable_quantity, requires_shipping)], fulfillments [CanonicalFulfillment(...)], quirks.
        """
        with self._lock:
            shop = self._shop(handle)
            index = self._index(shop, order_id)
            _, applied = shop.wire(index)
            return canonical_order(shop.order(index), applied)

    def fulfillments(self, handle: str, order_id: str | int) -> list[dict[str, Any]]:
        with self._lock:
            shop = self._shop(handle)
            return [wire_fulfillment(f) for f in shop.order(self._index(shop, order_id))["fulfillments"]]

    def quirky_order_ids(self, handle: str) -> dict[str, list[str]]:
        """{quirk: [orderId, ...]} for every quirk in QUIRKS (walks all orders: meant for test-sized shops)."""
        result: dict[str, list[str]] = {name: [] for name in QUIRKS}
        shop = self._shop(handle)
        for index in range(self.order_count(handle)):
            with self._lock:
                _, applied = shop.wire(index)
                order_id = str(shop.ids.order_id(index))
            for name in applied:
                result[name].append(order_id)
        return result

    def mutate_orders(self, handle: str, n: int, *, seed: int | None = None) -> list[str]:
        """Change `n` distinct orders (payment moves on, fulfillments appear, some cancel, notes and tags change).

        Every one gets a new updatedAt and fires its webhooks. Returns their orderIds.
        """
        with self._lock:
            shop = self._shop(handle)
            rng = random.Random(seed) if seed is not None else shop.mutation_rng
            changes = shop.mutate(n, self._stamp, rng)
            self._emit(shop, changes)
            return [str(shop.ids.order_id(change.index)) for change in changes]

    def add_orders(self, handle: str, n: int) -> list[str]:
        """Create `n` new open orders, now; fires orders/create. Returns their orderIds."""
        with self._lock:
            shop = self._shop(handle)
            changes = shop.add_orders(n, self._stamp(), shop.mutation_rng)
            self._emit(shop, changes)
            return [str(shop.ids.order_id(change.index)) for change in changes]

    def orders_by_source(self, handle: str, *, source_name: str | None = None) -> list[dict[str, Any]]:
        """The orders created through POST /orders (of one sourceName, any case, when given), oldest first.

        Each: orderId, name, sourceName, sourceIdentifier, financialStatus, cancelled, cancelReason, currency,
        email, lineItems [{id, sku, title, variantTitle, quantity, price, fulfillableQuantity}], shippingAddress,
        billingAddress (the Order object's keys, as sent), totalTax, totalShippingPrice, totalPrice. Generated
        orders are not listed: this is what a client created (so "one order per external order" can be checked).
        """
        with self._lock:
            return self._shop(handle).orders_by_source(source_name)

    def cancel_order(self, handle: str, order_id: str | int, *, reason: str = "customer") -> dict[str, Any]:
        """Cancel an order as the merchant would; fires orders/cancelled. Returns the order (clean JSON)."""
        with self._lock:
            shop = self._shop(handle)
            change = shop.cancel(self._index(shop, order_id), reason, self._stamp())
            self._emit(shop, [change])
            return plain_order(shop.order(change.index))

    def fulfil_as_merchant(
        self,
        handle: str,
        order_id: str | int,
        *,
        tracking_number: str | None,
        tracking_company: str | None = None,
        tracking_url: str | None = None,
        shipment_status: str | None = None,
        line_items: list[tuple[str, int]] | None = None,
    ) -> dict[str, Any]:
        """Fulfil an order in Genstore's own admin, as the merchant (or another app) would: not through the API, so
        the stats count no write. `line_items` [(line id, quantity)]; None: everything still fulfillable. Fires the
        order's webhooks; returns the fulfillment (clean JSON)."""
        with self._lock:
            shop = self._shop(handle)
            fulfillment, change = shop.merchant_fulfil(
                self._index(shop, order_id), parts=line_items,
                tracking=(tracking_number, tracking_company, tracking_url), shipment_status=shipment_status,
                stamp=self._stamp(),
            )
            self._emit(shop, [change])
            return wire_fulfillment(fulfillment)

    def edit_fulfillment_as_merchant(self, handle: str, fulfill_id: str, **changes: Any) -> dict[str, Any]:
        """Edit a fulfillment in Genstore's own admin (no API write counted): trackingNumber, trackingCompany,
        trackingUrl, shipmentStatus (None clears one) or status="cancelled". Fires the order's webhooks."""
        with self._lock:
            shop = self._shop(handle)
            fulfillment, change = shop.merchant_edit_fulfillment(fulfill_id, changes, self._stamp())
            self._emit(shop, [change])
            return wire_fulfillment(fulfillment)

    # --- stats ---------------------------------------------------------------------------------------------

    def stats(self, handle: str) -> dict[str, Any]:
        """requests, unauthorized, rate_limited (429s), faults_injected, write_faults_injected, slow_responses,
        pages_served, orders_served, fulfillments_created/updated/cancelled, orders_created/cancelled (through the
        API), orders_changed, webhooks_delivered/failed/suppressed, by_status, by_endpoint."""
        with self._lock:
            return self._shop(handle).stats.as_dict()

    def reset_stats(self, handle: str | None = None) -> None:
        with self._lock:
            for shop in self._select(handle):
                shop.stats = type(shop.stats)()

    # --- webhooks ----------------------------------------------------------------------------------------------

    def webhook_subscriptions(self, handle: str) -> list[dict[str, Any]]:
        with self._lock:
            shop = self._shop(handle)
            return [shop.webhook_json(w) for w in shop.webhooks.values()]

    def webhook_attempts(self, handle: str | None = None, *, topic: str | None = None) -> list[WebhookAttempt]:
        with self._lock:
            return [
                a
                for a in self._attempts
                if (handle is None or a.handle == handle) and (topic is None or a.topic == topic)
            ]

    def wait_for_webhooks(self, timeout: float = 10.0) -> bool:
        """Block until every queued delivery was attempted (True), or `timeout` passed (False)."""
        return self._dispatcher.wait_idle(timeout)

    def send_webhook(self, handle: str, topic: str, payload: Any, *, address: str | None = None) -> list[str]:
        """Sign and send `payload` (a dict, or raw bytes) to `address`, or to every subscription of `topic`.

        Returns the X-Genstore-Webhook-Id of each delivery queued.
        """
        body = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()
        with self._lock:
            shop = self._shop(handle)
            if address is not None:
                targets: list[tuple[int | None, str]] = [(None, address)]
            else:
                targets = [(w["id"], w["address"]) for w in shop.webhooks.values() if w["topic"] == topic]
            jobs = [self._job(shop, topic, body, subscription_id, target) for subscription_id, target in targets]
        for job in jobs:
            self._dispatcher.submit(job)
        return [job.webhook_id for job in jobs]

    def sign(self, body: bytes) -> str:
        """The X-Genstore-Hmac-Sha256 value this sandbox puts on `body`."""
        return sign_body(body, self.client_secret)

    # --- internals: state ------------------------------------------------------------------------------------

    def _shop(self, handle: str) -> Shop:
        try:
            return self._shops[handle]
        except KeyError:
            raise KeyError(f"no shop {handle!r} in this sandbox (shops: {', '.join(self._shops)})") from None

    def _select(self, handle: str | None) -> list[Shop]:
        return list(self._shops.values()) if handle is None else [self._shop(handle)]

    @staticmethod
    def _index(shop: Shop, order_id: str | int) -> int:
        index = shop.index_for(order_id)
        if index is None:
            raise KeyError(f"no order {order_id} in shop {shop.handle}")
        return index

    def _stamp(self) -> int:
        """A change time in epoch ms: now, but always after the generated data and after the previous change."""
        stamp = max(int(time.time() * 1000), self._anchor_ms + 1000, self._last_stamp + 1)
        self._last_stamp = stamp
        return stamp

    def _job(self, shop: Shop, topic: str, body: bytes, subscription_id: int | None, address: str) -> WebhookJob:
        headers = build_headers(
            topic=topic,
            body=body,
            secret=self.client_secret,
            shop_domain=self.domain_for(shop.handle),
            api_version=self.api_version,
        )
        return WebhookJob(shop.handle, subscription_id, address, topic, body, headers)

    def _emit(self, shop: Shop, changes: list[OrderChange]) -> None:
        """Queue the webhooks of these changes (caller holds the lock; delivery happens on another thread)."""
        if not shop.webhooks:
            return
        for change in changes:
            order_body: bytes | None = None
            for topic in change.topics:
                subscriptions = [w for w in shop.webhooks.values() if w["topic"] == topic]
                if not subscriptions:
                    continue
                if topic == "refunds/create":
                    body = json.dumps({"refund": change.refund}, separators=(",", ":")).encode()
                else:
                    order_body = order_body or b'{"order":' + shop.order_bytes(change.index) + b"}"
                    body = order_body
                for webhook in subscriptions:
                    self._dispatcher.submit(self._job(shop, topic, body, webhook["id"], webhook["address"]))

    def _subscription_active(self, job: WebhookJob) -> bool:
        """Genstore stops sending to a subscription after WEBHOOK_FAILURE_LIMIT consecutive failures."""
        with self._lock:
            shop = self._shops.get(job.handle)
            webhook = shop.webhooks.get(job.subscription_id) if shop and job.subscription_id is not None else None
            if shop is not None and webhook is not None and webhook["failures"] >= WEBHOOK_FAILURE_LIMIT:
                shop.stats.webhooks_suppressed += 1
                return False
            return True

    def _record_attempt(self, job: WebhookJob, attempt: WebhookAttempt) -> None:
        with self._lock:
            self._attempts.append(attempt)
            shop = self._shops.get(job.handle)
            if shop is None:
                return
            if attempt.delivered:
                shop.stats.webhooks_delivered += 1
            else:
                shop.stats.webhooks_failed += 1
            webhook = shop.webhooks.get(job.subscription_id) if job.subscription_id is not None else None
            if webhook is not None:
                webhook["failures"] = 0 if attempt.delivered else webhook["failures"] + 1

    # --- internals: HTTP ----------------------------------------------------------------------------------------

    def dispatch(self, method: str, path: str, query: str, headers: Any, body: bytes, host: str | None) -> Response:
        """Answer one HTTP request (the handler calls this; tests may too)."""
        if path == "/_sandbox" or path.startswith("/_sandbox/"):
            try:
                return self._control(method, [s for s in path.split("/")[2:] if s], query, body)
            except ApiError as exc:
                return _error(exc.status, exc.message)
            except KeyError as exc:
                return _error(404, str(exc.args[0]) if exc.args else "not found")
            except (ValueError, TypeError) as exc:
                return _error(400, str(exc))
        route = self._route(path, host)
        if route is None:
            return _error(404, "Not Found: expected /{shop}/api/{version}/...")
        shop, prefix, version, segments = route
        delay = 0.0
        with self._lock:
            response, delay = self._api(shop, method, prefix, version, segments, query, headers, body, host)
            shop.stats.by_status[response.status] += 1
        if delay:
            time.sleep(delay)
        return response

    def _route(self, path: str, host: str | None) -> tuple[Shop, str, str, list[str]] | None:
        segments = [s for s in path.split("/") if s]
        if len(segments) >= 3 and segments[1] == "api" and segments[0] in self._shops:
            handle, prefix, rest = segments[0], f"/{segments[0]}", segments[2:]
        elif len(segments) >= 2 and segments[0] == "api":
            # No shop in the path: take it from the Host header ({handle}.genmystore.com), or the only shop.
            subdomain = (host or "").split(".")[0].split(":")[0]
            if subdomain in self._shops:
                handle = subdomain
            elif len(self._shops) == 1:
                handle = next(iter(self._shops))
            else:
                return None
            prefix, rest = "", segments[1:]
        else:
            return None
        version, resource = rest[0], rest[1:]
        if resource and resource[-1].endswith(".json"):  # an older docs page writes /orders.json
            resource[-1] = resource[-1][: -len(".json")]
        return self._shops[handle], prefix, version, resource

    def _api(
        self,
        shop: Shop,
        method: str,
        prefix: str,
        version: str,
        segments: list[str],
        query: str,
        headers: Any,
        body: bytes,
        host: str | None,
    ) -> tuple[Response, float]:
        shop.stats.requests += 1
        shop.stats.by_endpoint[f"{method} /{_endpoint_label(segments)}"] += 1
        expected_token = shop.access_token or self.access_token
        given = headers.get("X-Genstore-Access-Token")
        if not given or not hmac.compare_digest(given.encode(), expected_token.encode()):
            shop.stats.unauthorized += 1
            return _error(
                401,
                "Invalid API key or access token (unrecognized login or wrong password)",
                {"X-Genstore-Shop-Api-Rate-Limit": shop.bucket.header()},
            ), 0.0
        allowed, wait = shop.bucket.take()
        rate_header = {"X-Genstore-Shop-Api-Rate-Limit": shop.bucket.header()}
        if not allowed:
            shop.stats.rate_limited += 1
            if shop.next_retry_after_is_omitted():
                shop.stats.rate_limited_without_retry_after += 1
            else:
                rate_header["Retry-After"] = str(max(1, int(wait + 0.999)))
            return _error(429, "Exceeded the API rate limit for this shop: slow down and retry", rate_header), 0.0
        faults = self._faults
        rng = self._fault_rng
        if faults.error_rate and rng.random() < faults.error_rate:
            shop.stats.faults_injected += 1
            return _error(faults.status, "Service temporarily unavailable (sandbox fault)", rate_header), 0.0
        delay = 0.0
        if faults.slow_rate and rng.random() < faults.slow_rate:
            shop.stats.slow_responses += 1
            delay = faults.slow_seconds
        changes: list[OrderChange] = []
        try:
            response = self._resource(shop, method, prefix, version, segments, query, body, host, changes)
        except ApiError as exc:
            response = _error(exc.status, exc.message)
        self._emit(shop, changes)
        if (
            method in WRITE_METHODS
            and 200 <= response.status < 300
            and faults.write_error_rate
            and rng.random() < faults.write_error_rate
        ):
            shop.stats.write_faults_injected += 1
            response = _error(faults.write_error_status, "Bad gateway (sandbox fault: the write was applied)")
        response.headers.update(rate_header)
        return response, delay

    def _resource(
        self,
        shop: Shop,
        method: str,
        prefix: str,
        version: str,
        segments: list[str],
        query: str,
        body: bytes,
        host: str | None,
        changes: list[OrderChange],
    ) -> Response:
        n = len(segments)
        head = segments[0] if segments else ""

        if head == "orders":
            return self._orders_resource(shop, method, prefix, version, segments, query, body, host, changes)
        if head in ("fulfillments", "fulfillment"):
            if n == 1:
                _allow(method, "POST")
                fulfillment, change = shop.create_fulfillment(_body(body), self._stamp())
                changes.append(change)
                return self._fulfillment_response(shop, 201, fulfillment)
            if n == 2 and head == "fulfillments":
                _allow(method, "GET")
                found = shop.find_fulfillment(segments[1])
                if found is None:
                    raise ApiError(404, f"Fulfillment {segments[1]} not found")
                return self._fulfillment_response(shop, 200, found[1])
            if n == 3 and head == "fulfillments" and segments[2] == "update_tracking":
                _allow(method, "PUT")
                fulfillment, change = shop.update_tracking(segments[1], _body(body), self._stamp())
                changes.append(change)
                return self._fulfillment_response(shop, 200, fulfillment)
            if n == 3 and head == "fulfillments" and segments[2] == "cancel":
                _allow(method, "PUT")
                fulfillment, change = shop.cancel_fulfillment(segments[1], self._stamp())
                changes.append(change)
                return self._fulfillment_response(shop, 200, fulfillment)
        elif head == "app" and n >= 2 and segments[1] == "webhooks":
            if n == 2:
                _allow(method, "GET", "POST")
                if method == "GET":
                    return _json_response(200, {"webhooks": [shop.webhook_json(w) for w in shop.webhooks.values()]})
                return _json_response(
                    201, {"webhook": shop.webhook_json(shop.create_webhook(_body(body), self._stamp()))}
                )
            if n == 3 and segments[2] == "count":
                _allow(method, "GET")
                return _json_response(200, {"count": len(shop.webhooks)})
            if n == 3:
                _allow(method, "GET", "PUT", "DELETE")
                if method == "GET":
                    return _json_response(200, {"webhook": shop.webhook_json(shop.get_webhook(segments[2]))})
                if method == "PUT":
                    webhook = shop.update_webhook(segments[2], _body(body), self._stamp())
                    return _json_response(200, {"webhook": shop.webhook_json(webhook)})
                shop.delete_webhook(segments[2])
                return _json_response(200, {})
        elif segments == ["shops", "info"]:
            _allow(method, "GET")
            return _json_response(200, {"shop": self._shop_info(shop)})
        elif segments == ["oauth2", "access_scopes"]:
            _allow(method, "GET")
            return _json_response(200, {"accessScopes": "[" + ",".join(GRANTED_SCOPES) + "]"})
        raise ApiError(404, f"Not Found: /{'/'.join(segments)}")

    def _orders_resource(
        self,
        shop: Shop,
        method: str,
        prefix: str,
        version: str,
        segments: list[str],
        query: str,
        body: bytes,
        host: str | None,
        changes: list[OrderChange],
    ) -> Response:
        """/orders, /orders/count, /orders/{orderId}[/cancel | /fulfillments[/count]]."""
        n = len(segments)

        if n == 1:
            _allow(method, "GET", "POST")
            if method == "POST":
                change = shop.create_order(_body(body), self._stamp())
                changes.append(change)
                return Response(201, b'{"order":' + shop.order_bytes(change.index) + b"}", {})
            return self._list_orders(shop, prefix, version, query, host)
        if n == 2 and segments[1] == "count":
            _allow(method, "GET")
            return _json_response(200, {"count": shop.count_matching(_parse_filters(_query(query)))})
        index = shop.index_for(segments[1])
        if index is None:
            raise ApiError(404, f"Order {segments[1]} not found")
        if n == 2:
            _allow(method, "GET")
            return Response(200, b'{"order":' + shop.order_bytes(index) + b"}", {})
        if n == 3 and segments[2] == "cancel":
            _allow(method, "POST")
            cancelled = shop.cancel_order(index, _body(body), self._stamp())
            if cancelled is not None:  # None: it was cancelled already, and nothing changed
                changes.append(cancelled)
            return Response(200, b'{"order":' + shop.order_bytes(index) + b"}", {})
        if n == 3 and segments[2] == "fulfillments":
            _allow(method, "GET")
            quirks = shop.quirks_for(index)
            return _json_response(
                200, {"fulfillments": [wire_fulfillment(f, quirks) for f in shop.order(index)["fulfillments"]]}
            )
        if n == 4 and segments[2:] == ["fulfillments", "count"]:
            _allow(method, "GET")
            return _json_response(200, {"count": len(shop.order(index)["fulfillments"])})
        raise ApiError(404, f"Not Found: /{'/'.join(segments)}")

    def _fulfillment_response(self, shop: Shop, status: int, fulfillment: dict[str, Any]) -> Response:
        index = shop.index_for(fulfillment["orderId"])
        quirks = shop.quirks_for(index) if index is not None else frozenset()
        return _json_response(status, {"fulfillment": wire_fulfillment(fulfillment, quirks)})

    def _shop_info(self, shop: Shop) -> dict[str, Any]:
        return {
            "shopId": shop.shop_id,
            "shopName": f"{shop.handle.replace('-', ' ').replace('_', ' ').title()} (sandbox)",
            "domain": self.domain_for(shop.handle),
            "mail": f"owner@{shop.handle}.example.com",
            "country": "US",
            "currency": "USD",
            "timezone": "-4",
            "planName": "Basic",
        }

    # --- order listing and page tokens -------------------------------------------------------------------------

    def _list_orders(self, shop: Shop, prefix: str, version: str, query: str, host: str | None) -> Response:
        params = _query(query)
        if "pageToken" in params:
            extra = sorted(set(params) - {"pageToken", "limit"})
            if extra:
                raise ApiError(400, f"A request with pageToken may only add limit; remove: {', '.join(extra)}")
            token = self._decode_token(shop, params["pageToken"])
            order_filter = OrderFilter.from_json(token["f"])
            limit = _parse_limit(params.get("limit"), default=token["l"])
            key = tuple(token["k"]) if isinstance(token["k"], list) else token["k"]
            page_number = token["p"]
            page = shop.page(order_filter, key=key, backwards=token["d"] == "p", limit=limit, first=False)
        else:
            order_filter = _parse_filters(params)
            limit = _parse_limit(params.get("limit"), default=DEFAULT_PAGE_LIMIT)
            page_number = 0
            page = shop.page(order_filter, key=shop.start_key(order_filter), backwards=False, limit=limit, first=True)
        shop.stats.pages_served += 1
        shop.stats.orders_served += len(page.indices)
        body = b'{"orders":[' + b",".join(shop.order_bytes(i) for i in page.indices) + b"]}"
        links: list[tuple[str, str]] = []
        base = f"http://{host or f'{self.host}:{self.port}'}{prefix}/api/{version}/orders"
        common = {"s": shop.handle, "f": order_filter.to_json(), "l": limit}
        if page.has_previous:
            token_text = self._encode_token({**common, "k": page.first_key, "d": "p", "p": page_number - 1})
            links.append(("previous", f"{base}?limit={limit}&pageToken={quote(token_text)}"))
        if page.has_next:
            token_text = self._encode_token({**common, "k": page.last_key, "d": "n", "p": page_number + 1})
            links.append(("next", f"{base}?limit={limit}&pageToken={quote(token_text)}"))
        headers = {"Link": format_link_header(links, page_number)} if links else {}
        return Response(200, body, headers)

    def _encode_token(self, data: dict[str, Any]) -> str:
        data = {**data, "t": int(time.time())}
        payload = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).rstrip(b"=")
        signature = hmac.new(self._token_key, payload, hashlib.sha256).hexdigest()[:16]
        return f"{payload.decode()}.{signature}"

    def _decode_token(self, shop: Shop, text: str) -> dict[str, Any]:
        payload, _, signature = text.partition(".")
        expected = hmac.new(self._token_key, payload.encode(), hashlib.sha256).hexdigest()[:16]
        if not signature or not hmac.compare_digest(signature, expected):
            raise ApiError(400, "Invalid pageToken")
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        if data.get("s") != shop.handle:
            raise ApiError(400, "Invalid pageToken: it belongs to another shop")
        if time.time() - data["t"] > self.page_token_ttl:
            raise ApiError(400, "pageToken has expired: start again from the first page")
        return data

    # --- control endpoints (/_sandbox/...) ---------------------------------------------------------------------

    def _control(self, method: str, segments: list[str], query: str, body: bytes) -> Response:
        data = _body(body) if body else {}
        if not isinstance(data, dict):
            raise ApiError(400, "control bodies are JSON objects")
        params = _query(query)
        if segments in ([], ["info"]):
            return _json_response(200, self._info())
        if segments == ["health"]:
            return _json_response(200, {"ok": True})
        if segments == ["faults"]:
            if method == "POST":
                self.set_faults(**{k: v for k, v in data.items() if k in FaultSettings.__dataclass_fields__})
            return _json_response(200, {"faults": asdict(self.faults)})
        if segments == ["rate-limit"] and method == "POST":
            self.set_rate_limit(int(data["capacity"]), float(data["refill"]), handle=data.get("shop"))
            return _json_response(200, {"ok": True})
        if segments == ["access-token"] and method == "POST":
            self.set_access_token(str(data["token"]), handle=data.get("shop"))
            return _json_response(200, {"ok": True})
        if segments == ["stats"]:
            handles = [params["shop"]] if "shop" in params else list(self._shops)
            return _json_response(200, {"stats": {h: self.stats(h) for h in handles}})
        if segments == ["stats", "reset"] and method == "POST":
            self.reset_stats(data.get("shop"))
            return _json_response(200, {"ok": True})
        if segments == ["webhooks", "wait"] and method == "POST":
            return _json_response(200, {"idle": self.wait_for_webhooks(float(data.get("timeout", 10.0)))})
        if segments and segments[0] in self._shops:
            return self._control_shop(method, segments[0], segments[1:], params, data)
        raise ApiError(404, f"unknown control endpoint: /_sandbox/{'/'.join(segments)}")

    def _control_shop(
        self, method: str, handle: str, segments: list[str], params: dict[str, str], data: dict[str, Any]
    ) -> Response:
        if segments == ["mutate"] and method == "POST":
            ids = self.mutate_orders(handle, int(data.get("n", 1)), seed=data.get("seed"))
            return _json_response(200, {"orderIds": ids})
        if segments == ["orders"] and method == "POST":
            return _json_response(200, {"orderIds": self.add_orders(handle, int(data.get("n", 1)))})
        if segments == ["orders"] and method == "GET":
            return _json_response(200, {"count": self.order_count(handle)})
        if len(segments) == 2 and segments[0] == "orders" and method == "GET":
            return _json_response(200, {"order": self.order(handle, segments[1])})
        if len(segments) == 3 and segments[0] == "orders" and segments[2] == "cancel" and method == "POST":
            order = self.cancel_order(handle, segments[1], reason=str(data.get("reason", "customer")))
            return _json_response(200, {"order": order})
        if len(segments) == 3 and segments[0] == "orders" and segments[2] == "canonical":
            return _json_response(200, {"canonical": self.canonical(handle, segments[1])})
        reads: dict[str, Callable[[], Any]] = {
            "quirks": lambda: self.quirky_order_ids(handle),
            "stats": lambda: self.stats(handle),
            "webhooks": lambda: self.webhook_subscriptions(handle),
            "orders-by-source": lambda: self.orders_by_source(handle, source_name=params.get("sourceName")),
        }
        if len(segments) == 1 and segments[0] in reads:
            key = "orders" if segments[0] == "orders-by-source" else segments[0]
            return _json_response(200, {key: reads[segments[0]]()})
        if segments == ["webhooks", "attempts"]:
            attempts = self.webhook_attempts(handle, topic=params.get("topic"))
            return _json_response(200, {"attempts": [a.as_json() for a in attempts]})
        if segments == ["webhooks", "send"] and method == "POST":
            ids = self.send_webhook(handle, str(data["topic"]), data.get("payload", {}), address=data.get("address"))
            return _json_response(200, {"webhookIds": ids})
        raise ApiError(404, f"unknown control endpoint for shop {handle}: /{'/'.join(segments)}")

    def _info(self) -> dict[str, Any]:
        with self._lock:
            return {
                "url": self.url,
                "accessToken": self.access_token,
                "clientSecret": self.client_secret,
                "apiVersion": self.api_version,
                "seed": self.seed,
                "anchor": self.anchor.isoformat(),
                "shops": {
                    handle: {
                        "baseUrl": self.base_url_for(handle),
                        "domain": self.domain_for(handle),
                        "orders": shop.count,
                        "rateLimit": {"capacity": shop.bucket.capacity, "refill": shop.bucket.refill},
                    }
                    for handle, shop in self._shops.items()
                },
                "faults": asdict(self._faults),
            }


def format_link_header(links: list[tuple[str, str]], page_number: int) -> str:
    """Genstore's Link header, in one of its documented spellings (chosen by page, so a walk meets them all).

    rel is always unquoted; variants quote the whole value, put spaces inside `< >`, or list next first.
    """
    variant = LINK_HEADER_VARIANTS[page_number % len(LINK_HEADER_VARIANTS)]
    ordered = links if variant != "quoted_spaced_next_first" else sorted(links, key=lambda item: item[0] != "next")
    if variant == "spaced":
        parts = [f"< {url} >; rel={rel}" for rel, url in ordered]
    elif variant == "quoted_spaced_next_first":
        parts = [f"< {url}>; rel={rel}" for rel, url in ordered]
    else:
        parts = [f"<{url}>; rel={rel}" for rel, url in ordered]
    value = ", ".join(parts)
    return f'"{value}"' if variant in ("quoted", "quoted_spaced_next_first") else value


def _allow(method: str, *methods: str) -> None:
    if method not in methods:
        raise ApiError(405, f"Method {method} not allowed here (allowed: {', '.join(methods)})")


def _endpoint_label(segments: list[str]) -> str:
    return "/".join("{id}" if segment.isdigit() else segment for segment in segments)


def _query(query: str) -> dict[str, str]:
    return {key: values[-1] for key, values in parse_qs(query, keep_blank_values=True).items()}


def _body(body: bytes) -> Any:
    if not body:
        raise ApiError(400, "A JSON body is required")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, f"Body is not valid JSON: {exc}") from None


def _parse_limit(value: str | None, *, default: int) -> int:
    if value is None or value == "":
        return default
    if not value.strip().isdigit() or not 1 <= int(value) <= MAX_PAGE_LIMIT:
        raise ApiError(400, f"limit must be an integer from 1 to {MAX_PAGE_LIMIT}")
    return int(value)


def _parse_filters(params: dict[str, str]) -> OrderFilter:
    financial = fulfillment = None
    if params.get("financialStatus") and params["financialStatus"] != "any":
        values = [v.strip() for v in params["financialStatus"].split(",") if v.strip()]
        unknown = [v for v in values if v not in FINANCIAL_STATUSES]
        if unknown:
            raise ApiError(400, f"financialStatus must be any or one of: {', '.join(FINANCIAL_STATUSES)}")
        financial = frozenset(FINANCIAL_STATUSES.index(v) for v in values)
    if params.get("fulfillmentStatus") and params["fulfillmentStatus"] != "any":
        values = [v.strip() for v in params["fulfillmentStatus"].split(",") if v.strip()]
        unknown = [v for v in values if v not in _FULFILLMENT_FILTER_VALUES]
        if unknown:
            raise ApiError(400, f"fulfillmentStatus must be any or one of: {', '.join(_FULFILLMENT_FILTER_VALUES)}")
        fulfillment = frozenset(_FULFILLMENT_FILTER_VALUES[v] for v in values)
    since_id = None
    if params.get("sinceId"):
        if not params["sinceId"].strip().isdigit():
            raise ApiError(400, "sinceId must be a numeric id")
        since_id = int(params["sinceId"])
    updated_min = None
    if params.get("updatedAtMin"):
        try:
            updated_min = parse_iso_ms(params["updatedAtMin"])
        except ValueError:
            raise ApiError(400, "updatedAtMin must be an ISO 8601 date-time") from None
    return OrderFilter(financial=financial, fulfillment=fulfillment, since_id=since_id, updated_min_ms=updated_min)


class _SandboxHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # idle keep-alive connections must not hold up stop()
    request_queue_size = 128
    sandbox: GenstoreSandbox


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a client session reuses its connection
    server_version = "GenstoreSandbox/1.0"
    timeout = 120  # an idle keep-alive connection's thread ends after this
    # Headers and body leave in one segment (a buffered writer, flushed after each request) and without Nagle:
    # otherwise every keep-alive request waits ~40 ms for a delayed ACK.
    wbufsize = 256 * 1024
    disable_nagle_algorithm = True
    server: _SandboxHTTPServer

    def _handle(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        body = self.rfile.read(length) if length > 0 else b""
        parts = urlsplit(self.path)
        sandbox = self.server.sandbox
        try:
            response = sandbox.dispatch(
                self.command, parts.path, parts.query, self.headers, body, self.headers.get("Host")
            )
        except Exception:  # an answer, not a dropped connection, even when the sandbox has a bug
            logger.exception("genstore sandbox failed on %s %s", self.command, self.path)
            response = _error(500, "Internal sandbox error")
        self.send_response(response.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle  # http.server's method names

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.sandbox.verbose:
            logger.info("%s %s", self.address_string(), format % args)
