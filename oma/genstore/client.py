"""The Genstore Admin REST client: one requests.Session per client, a shared token bucket, retries, typed records.

Plain Python (no Django): the services build a client per store and translate records into models.

Retries are oma.core.retry's one policy (429, 5xx, timeouts and connection errors; Retry-After honoured; full
jitter; never an ambiguous write), with Genstore's numbers and these specifics around the shared loop:

* The bucket: a store's own figures when pinned; else learned from its `X-Genstore-Shop-Api-Rate-Limit` answers
  (oma.genstore.bucket, oma.core.ratelimit), starting from the contract's 40 at 2/s.
* 429: the shared bucket is penalized for as long as we wait, so that the other workers hold back too. A
  Retry-After longer than `max_retry_after` is not slept out in a worker: GenstoreRateLimited carries it for the
  caller's countdown. Every 429, 5xx and transport error is counted in `stats` (a sweep copies them).
* Other 4xx: never retried.
* Exactly-once: the creates (POST order, POST fulfillment, POST webhook) have no idempotency key, so they are
  retried only when Genstore cannot have acted: on 429 and when the connection was never made. After a read
  timeout, a dropped connection or a 5xx they raise at once with `ambiguous=True`; the caller reads before it writes
  again (for orders: `orders_by_source`). PUTs (update_tracking, cancel fulfillment), POST cancel order (answered
  200 unchanged when repeated), DELETE and GETs are idempotent and retried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

import requests

from oma.core.outbound import OutboundRefused, outbound_session, safe_error_text
from oma.core.ratelimit import RateLimiter, RateLimiterTimeout
from oma.core.retry import Failure, GaveUp, RetryPolicy, rate_limit_retry_after, send_with_retries
from oma.genstore.bucket import GENSTORE_BUCKET
from oma.genstore.errors import (
    ErrorFields,
    GenstoreAuthError,
    GenstoreClientError,
    GenstoreError,
    GenstoreNotFound,
    GenstoreRateLimited,
    GenstoreRecordError,
    GenstoreResponseError,
    GenstoreServerError,
    GenstoreTransportError,
    GenstoreUnprocessable,
)
from oma.genstore.parsing import (
    parse_fulfillment,
    parse_link_header,
    parse_order,
    parse_rate_limit_header,
    parse_shop,
    parse_webhook_subscription,
)
from oma.genstore.records import (
    FulfillmentRecord,
    OrderDraft,
    OrderDraftLine,
    OrderRecord,
    RateLimitState,
    ShopRecord,
    WebhookSubscriptionRecord,
)

logger = logging.getLogger(__name__)

__all__ = ["BUCKET_KEY_PREFIX", "FULFILLMENT_CREATE_PATHS", "GENSTORE_API_HOSTS", "MAX_PAGE_SIZE",
           "ORDER_CANCEL_REASONS", "ORDER_READ_BACK_MARGIN", "RATE_LIMIT_HEADER", "ClientStats", "GenstoreClient",
           "OrderPage", "order_create_body"]

ACCESS_TOKEN_HEADER = "X-Genstore-Access-Token"
RATE_LIMIT_HEADER = "X-Genstore-Shop-Api-Rate-Limit"
MAX_PAGE_SIZE = 250
# A shop's domain is <handle> + this suffix, and its API is served from that host.
GENSTORE_SHOP_SUFFIX = ".genmystore.com"
# Genstore's own API hosts: a connection there must reach public addresses only (oma.core.outbound).
GENSTORE_API_HOSTS: tuple[str, ...] = (f"*{GENSTORE_SHOP_SUFFIX}",)
# Genstore documents both; the first is tried first, and the one that answers is remembered per store.
FULFILLMENT_CREATE_PATHS: tuple[str, str] = ("/fulfillments", "/fulfillment")
# The Redis keys of Genstore's shared buckets: `<prefix>genstore:<store domain>` (oma.stores.services).
BUCKET_KEY_PREFIX = "oma:genstore:bucket:"
_NOT_RETRIED = " (not retried: the create may have happened; read before writing again)"
# Contract Part B "external order identity": after an ambiguous create, read back from the intent time minus 60 s
# (the intent is recorded before the POST; the margin covers clock skew between OMA and Genstore).
ORDER_READ_BACK_MARGIN = timedelta(seconds=60)
# Contract Part B "create order": the financialStatus a created order may ask for (absent: paid).
ORDER_CREATE_FINANCIAL_STATUSES = frozenset({"paid", "pending"})
# Contract Part B "cancel order": the reasons POST /orders/{orderId}/cancel takes.
ORDER_CANCEL_REASONS = frozenset({"customer", "inventory", "declined", "other"})
# OMA's neutral address keys (records.OrderDraft) -> the Order object's address keys. `name` is also split into
# firstName / lastName, the keys the docs' samples show.
ORDER_ADDRESS_KEYS: Mapping[str, str] = {
    "name": "name",
    "company": "company",
    "address1": "address1",
    "address2": "address2",
    "city": "city",
    "province_code": "provinceCode",
    "zip": "zip",
    "country_code": "countryCode",
    "phone": "phone",
}


@dataclass(slots=True)
class ClientStats:
    """Counters since the client was built; a sweep copies `rate_limited` into its SyncRun."""

    requests: int = 0  # HTTP attempts sent, retries included
    retries: int = 0
    rate_limited: int = 0  # 429 answers seen
    server_errors: int = 0  # 5xx answers seen
    transport_errors: int = 0  # timeouts and connection errors
    limiter_wait_seconds: float = 0.0  # time spent waiting for a token from the shared bucket


@dataclass(slots=True)
class OrderPage:
    """One page of GET /orders. `errors`: orders that could not be parsed at all (no usable id), one line each."""

    records: list[OrderRecord]
    errors: list[str] = field(default_factory=list)
    page_number: int = 1


def _utc_iso(value: datetime) -> str:
    """ISO 8601 in UTC with a Z (a `+` in a query string is too easily read back as a space). Naive means UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _query_value(value: object) -> str:
    if isinstance(value, datetime):
        return _utc_iso(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(str(item) for item in value)
    return str(value)


def _filters_to_params(filters: Mapping[str, object]) -> dict[str, str]:
    """snake_case keywords (financial_status=...) become the API's camelCase parameters; None is left out."""
    return {_camel(key): _query_value(value) for key, value in filters.items() if value is not None}


def _money(value: object, what: str) -> str:
    """A Decimal (or int) as Genstore's decimal text; floats are refused (binary fractions are not money)."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise ValueError(f"{what} must be a Decimal, got {value!r}")
    amount = Decimal(value)
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"{what} must be a finite amount >= 0, got {value!r}")
    return format(amount, "f")


def _required_text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return value.strip()


def _address_body(address: Mapping[str, str], what: str) -> dict[str, str]:
    """OMA's neutral address -> the Order object's address shape (blank parts left out)."""
    unknown = sorted(set(address) - set(ORDER_ADDRESS_KEYS))
    if unknown:
        raise ValueError(f"{what}: unknown keys {unknown} (expected {sorted(ORDER_ADDRESS_KEYS)})")
    body = {ORDER_ADDRESS_KEYS[key]: text for key, value in address.items() if (text := str(value or "").strip())}
    if "name" in body:
        first, _, last = body["name"].rpartition(" ")
        body.update({"firstName": first, "lastName": last} if first else {"firstName": last})
    return body


def _order_line_body(line: OrderDraftLine, position: int) -> dict[str, object]:
    what = f"line {position}"
    quantity = line.quantity
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
        raise ValueError(f"{what}: quantity must be a positive integer, got {quantity!r}")
    body: dict[str, object] = {
        "sku": _required_text(line.sku, f"{what}: sku"),
        "title": _required_text(line.title, f"{what}: title"),
        "quantity": quantity,
        "price": _money(line.price, f"{what}: price"),
    }
    if line.variant_title:
        body["variantTitle"] = line.variant_title
    if line.requires_shipping is not None:
        body["requiresShipping"] = bool(line.requires_shipping)
    return body


def order_create_body(draft: OrderDraft) -> dict[str, object]:
    """The contract's POST /orders body for a draft; ValueError for a draft Genstore would refuse (nothing sent)."""
    if not draft.line_items:
        raise ValueError("an order needs at least one line item")
    order: dict[str, object] = {
        "sourceName": _required_text(draft.source_name, "source_name"),
        "sourceIdentifier": _required_text(draft.source_identifier, "source_identifier"),
        "currency": _required_text(draft.currency, "currency").upper(),
        "lineItems": [_order_line_body(line, position) for position, line in enumerate(draft.line_items, 1)],
        **_order_optional_fields(draft),
        "sendReceipt": False,
        "inventoryBehaviour": "bypass",
    }
    return {"order": order}


def _order_optional_fields(draft: OrderDraft) -> dict[str, object]:
    """The optional part of the create body: only what the draft says (Genstore applies its defaults)."""
    order: dict[str, object] = {
        key: value for key, value in (("email", draft.email), ("phone", draft.phone), ("note", draft.note)) if value
    }
    if draft.processed_at is not None:
        order["processedAt"] = _utc_iso(draft.processed_at)
    if draft.financial_status is not None:
        if draft.financial_status not in ORDER_CREATE_FINANCIAL_STATUSES:
            raise ValueError(f"financial_status must be one of {sorted(ORDER_CREATE_FINANCIAL_STATUSES)} or None")
        order["financialStatus"] = draft.financial_status
    for key, address in (("shippingAddress", draft.shipping_address), ("billingAddress", draft.billing_address)):
        if address:
            order[key] = _address_body(address, key)
    if draft.shipping_lines:
        order["shippingLines"] = [
            {"title": _required_text(title, "shipping line title"), "price": _money(price, "shipping line price")}
            for title, price in draft.shipping_lines
        ]
    if draft.total_tax is not None:
        order["totalTax"] = _money(draft.total_tax, "total_tax")
    if tags := _tags_text(draft.tags):
        order["tags"] = tags
    return order


def _tags_text(tags: Sequence[str]) -> str:
    """Tags as the contract sends them: one comma-separated string."""
    cleaned = [tag.strip() for tag in tags if tag.strip()]
    if any("," in tag for tag in cleaned):
        raise ValueError(f"tags are sent comma-separated: a tag must not contain a comma, got {cleaned!r}")
    return ", ".join(cleaned)


def _segment(value: str | int) -> str:
    text = str(value).strip()
    if not text:
        raise ValueError("an id used in a path must not be empty")
    return quote(text, safe="")


def _error_text(response: requests.Response) -> str | None:
    """Genstore's documented `{"error": "..."}` string, cleaned and capped; nothing else of the body. The base URL
    may point at a host other than Genstore (a sandbox, or worse): its raw answer must not reach error texts shown
    in admin or written to logs."""
    try:
        body = response.json()
    except ValueError:
        return None
    return safe_error_text(body.get("error")) if isinstance(body, Mapping) else None


def _shape(data: object, key: str) -> str:
    """What came instead of the expected shape, in type names only: a payload excerpt would carry customer data
    (or an internal service's answer) into error texts and logs."""
    if isinstance(data, Mapping):
        if key in data:
            return f"an object whose {key!r} is a {type(data[key]).__name__}"
        return f"an object without {key!r}"
    return f"a JSON {type(data).__name__}"


def _error_for_status(method: str, path: str, response: requests.Response) -> GenstoreError:
    status = response.status_code
    text = _error_text(response)
    message = f"Genstore {method} {path} answered {status}" + (f": {text}" if text else "")
    kwargs: ErrorFields = {"status": status, "error_text": text, "url": response.url}
    if status in (401, 403):
        return GenstoreAuthError(message, **kwargs)
    if status == 404:
        return GenstoreNotFound(message, **kwargs)
    if status in (400, 422):
        return GenstoreUnprocessable(message, **kwargs)
    if 300 <= status < 400:
        # Redirects are not followed: a custom token header would be forwarded to whatever host they name.
        return GenstoreClientError(f"{message} (a redirect, not followed)", **kwargs)
    if 400 <= status < 500:
        return GenstoreClientError(message, **kwargs)
    return GenstoreResponseError(message, **kwargs)


def _created_key(record: OrderRecord) -> tuple[datetime, str]:
    """Sorts orders by creation (unknown last), then by orderId."""
    return (record.created_at or datetime.max.replace(tzinfo=UTC), record.order_id)


class GenstoreClient:
    """Talks to one Genstore store. Not thread-safe (one requests.Session); build one per worker/task."""

    def __init__(
        self,
        *,
        base_url: str,
        api_version: str,
        access_token: str,
        limiter: RateLimiter,
        limiter_key: str,
        bucket_capacity: int | None = None,
        bucket_refill_per_second: float | None = None,
        connect_timeout: float = 5,
        read_timeout: float = 30,
        max_retries: int = 8,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        max_retry_after: float = 60.0,
        limiter_timeout: float | None = 120.0,
        fulfillment_create_path: str | None = None,
        on_fulfillment_create_path: Callable[[str], None] | None = None,
    ) -> None:
        if not base_url:
            raise ValueError("base_url is required")
        if not api_version:
            raise ValueError("api_version is required")
        self.base_url = base_url.rstrip("/")
        self.api_version = api_version.strip("/")
        self._api_root = f"{self.base_url}/api/{self.api_version}"
        self._limiter = limiter
        self.limiter_key = limiter_key
        # A bucket given (both figures) is pinned: used as it is. Without one the bucket is learned from the store's
        # answers (oma.genstore.bucket), starting from the contract's figures, shared by every client of the key.
        if (bucket_capacity is None) != (bucket_refill_per_second is None):
            raise ValueError("pin the bucket with both a capacity and a refill, or neither (learn it)")
        self.bucket_learning = GENSTORE_BUCKET if bucket_capacity is None else None
        self.bucket_capacity = GENSTORE_BUCKET.start_capacity if bucket_capacity is None else bucket_capacity
        self.bucket_refill_per_second = (
            GENSTORE_BUCKET.start_refill if bucket_refill_per_second is None else bucket_refill_per_second
        )
        self.timeout = (connect_timeout, read_timeout)
        self.max_retries = max(0, max_retries)
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_retry_after = max_retry_after
        self.limiter_timeout = limiter_timeout
        self._sleep = sleep
        self._session = session or outbound_session(base_url=self.base_url, own_hosts=GENSTORE_API_HOSTS)
        self._session.headers.update(
            {ACCESS_TOKEN_HEADER: access_token, "Accept": "application/json", "User-Agent": "oma-genstore/1"}
        )
        # Which create path this store answers on: None/"" = not known yet (try both, remember the one that works).
        # The caller presets it from where it keeps it, and `on_fulfillment_create_path` is called with a newly
        # learned one so that it can keep it (oma.stores: Store.fulfillment_create_path).
        self.fulfillment_create_path: str | None = fulfillment_create_path or None
        self._on_fulfillment_create_path = on_fulfillment_create_path
        self.stats = ClientStats()
        self.rate_limit: RateLimitState | None = None  # the last X-Genstore-Shop-Api-Rate-Limit seen
        self._warned_foreign_link = False

    def __repr__(self) -> str:  # never show the token
        return f"<GenstoreClient {self._api_root} key={self.limiter_key!r}>"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> GenstoreClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- transport --------------------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self._api_root}{path}"

    def _policy(self) -> RetryPolicy:
        """Built per call: tests and callers adjust max_retries and the backoff numbers on a live client."""
        return RetryPolicy(
            max_attempts=max(0, self.max_retries) + 1,
            backoff_base=self.backoff_base,
            backoff_cap=self.backoff_cap,
            max_retry_after=self.max_retry_after,
        )

    @property
    def bucket_pinned(self) -> bool:
        return self.bucket_learning is None

    def bucket_figures(self) -> tuple[int, float]:
        """The (capacity, refill per second) this client paces by now: pinned, learned, or the starting ones."""
        learned = None if self.bucket_learning is None else self._limiter.learned(self.limiter_key)
        return learned or (self.bucket_capacity, self.bucket_refill_per_second)

    def _take_token(self, method: str, path: str) -> None:
        try:
            waited = self._limiter.acquire(
                self.limiter_key,
                capacity=self.bucket_capacity,
                refill_per_second=self.bucket_refill_per_second,
                timeout=self.limiter_timeout,
                learned=self.bucket_learning is not None,
            )
        except RateLimiterTimeout as exc:
            raise GenstoreRateLimited(
                f"Genstore {method} {path}: the shared rate limit bucket has no token for {exc.wait:.1f}s",
                retry_after=exc.wait,
                url=self._url(path),
            ) from exc
        self.stats.limiter_wait_seconds += waited

    def _observe(self, response: requests.Response) -> None:
        state = parse_rate_limit_header(response.headers.get(RATE_LIMIT_HEADER))
        if state is not None:
            self.rate_limit = state
        if self.bucket_learning is None:
            if state is not None:
                self._limiter.observe(self.limiter_key, used=state.used, capacity=state.capacity)
        elif state is None:
            self._limiter.settle(self.limiter_key)  # answered, but without the bucket's count
        else:
            # A 429 took no token; every other answer did (the sandbox and the docs count them alike).
            self._limiter.observe(
                self.limiter_key, used=state.used, capacity=state.capacity, consumed=response.status_code != 429,
                learning=self.bucket_learning,
            )

    def _request(
        self,
        method: str,
        path: str,
        *,
        url: str | None = None,
        params: Mapping[str, str] | None = None,
        body: object = None,
        create: bool = False,
    ) -> tuple[object, requests.Response]:
        """One logical call with the retry policy above; returns (decoded JSON body, response)."""
        target = url or self._url(path)

        def attempt() -> requests.Response:
            self._take_token(method, path)
            self.stats.requests += 1
            response = self._session.request(
                method, target, params=params, json=body, timeout=self.timeout, allow_redirects=False
            )
            self._observe(response)
            return response

        try:
            response = send_with_retries(
                attempt,
                policy=self._policy(),
                idempotent=not create,
                sleep=self._sleep,
                label=f"Genstore {method} {path}",
                read_retry_after=rate_limit_retry_after,  # after a 5xx: the jittered backoff, as always
                on_failure=self._count_failure,
            )
        except GaveUp as exc:
            raise self._final_error(method, path, target, exc.failure) from exc.__cause__
        except OutboundRefused as exc:  # nothing was sent (oma.core.outbound): retrying cannot help
            raise GenstoreClientError(f"Genstore {method} {path} refused: {exc}", url=target) from exc
        except requests.RequestException as exc:  # a malformed URL or header: our bug, not the network
            raise GenstoreClientError(f"Genstore {method} {path}: {exc}", url=target) from exc
        if 200 <= response.status_code < 300:
            return self._decode(method, path, response), response
        raise _error_for_status(method, path, response)

    def _count_failure(self, failure: Failure) -> None:
        if failure.response is None:
            self.stats.transport_errors += 1
            if self.bucket_learning is not None:
                self._limiter.settle(self.limiter_key)  # its token's request is over, without an answer
        elif failure.response.status_code == 429:
            self.stats.rate_limited += 1
            # Everyone sharing the bucket holds back, not only this worker.
            self._limiter.penalize(self.limiter_key, seconds=failure.delay)
        else:
            self.stats.server_errors += 1
        if not failure.gives_up:
            self.stats.retries += 1

    @staticmethod
    def _final_error(method: str, path: str, target: str, failure: Failure) -> GenstoreError:
        """The exception for a call the retry loop gave up on."""
        tail = _NOT_RETRIED if failure.ambiguous else f" (after {failure.retries} retries)"
        response = failure.response
        if response is None:
            message = f"Genstore {method} {path}: {type(failure.error).__name__}: {failure.error}"
            return GenstoreTransportError(message + tail, url=target, ambiguous=failure.ambiguous)
        text = _error_text(response)
        if response.status_code == 429:
            return GenstoreRateLimited(
                f"Genstore {method} {path} answered 429"
                + (f" after {failure.retries} retries" if failure.retries else "")
                + (f"; Retry-After {failure.retry_after:g}s" if failure.retry_after is not None else ""),
                retry_after=failure.delay,
                status=429,
                error_text=text,
                url=response.url,
            )
        message = f"Genstore {method} {path} answered {response.status_code}" + (f": {text}" if text else "")
        return GenstoreServerError(
            message + tail, status=response.status_code, error_text=text, url=response.url, ambiguous=failure.ambiguous
        )

    def _decode(self, method: str, path: str, response: requests.Response) -> object:
        if response.status_code == 204 or not response.content.strip():
            return {}
        try:
            return response.json()
        except ValueError:
            raise GenstoreResponseError(
                f"Genstore {method} {path} answered {response.status_code} with a body that is not JSON",
                status=response.status_code,
                url=response.url,
            ) from None

    @staticmethod
    def _unwrap_object(data: object, key: str, method: str, path: str) -> Mapping[str, object]:
        """{"order": {...}} -> the object (a bare object without its root key is accepted too)."""
        if isinstance(data, Mapping):
            inner = data.get(key)
            if isinstance(inner, Mapping):
                return inner
            if key not in data and data:
                return data
        raise GenstoreResponseError(f"Genstore {method} {path}: expected {{{key!r}: {{...}}}}, got {_shape(data, key)}")

    @staticmethod
    def _unwrap_list(data: object, key: str, method: str, path: str) -> list[object]:
        """{"orders": [...]} -> the list (a bare list, one object instead of a list, or null are accepted)."""
        inner = data.get(key, ...) if isinstance(data, Mapping) else data
        if inner is None or (isinstance(inner, str) and inner.strip().lower() == "null"):
            return []
        if isinstance(inner, list):
            return inner
        if isinstance(inner, Mapping):
            return [inner]
        raise GenstoreResponseError(f"Genstore {method} {path}: expected {{{key!r}: [...]}}, got {_shape(data, key)}")

    def _next_page_url(self, link: str, current_url: str) -> str:
        """The rel=next URL, used exactly as given, except that it must point at this store's API host: the token
        is never sent elsewhere (the docs' own sample writes the host without its TLD)."""
        absolute = urljoin(current_url, link)
        parts, base = urlsplit(absolute), urlsplit(self.base_url)
        if (parts.scheme, parts.netloc) == (base.scheme, base.netloc):
            return absolute
        if not self._warned_foreign_link:
            self._warned_foreign_link = True
            logger.warning("Genstore Link header points at %s; following it on %s instead", parts.netloc, base.netloc)
        api_at = parts.path.find("/api/")
        if api_at >= 0:
            return f"{self.base_url}{parts.path[api_at:]}" + (f"?{parts.query}" if parts.query else "")
        return urlunsplit((base.scheme, base.netloc, parts.path, parts.query, ""))

    # --- shop ---------------------------------------------------------------------------------------------------

    def shop_info(self) -> ShopRecord:
        data, _ = self._request("GET", "/shops/info")
        return parse_shop(self._unwrap_object(data, "shop", "GET", "/shops/info"))

    # --- orders -------------------------------------------------------------------------------------------------

    def count_orders(self, **filters: object) -> int:
        """GET /orders/count with the same filters as the list (snake_case keywords or camelCase)."""
        data, _ = self._request("GET", "/orders/count", params=_filters_to_params(filters))
        value = data.get("count") if isinstance(data, Mapping) else data
        try:
            if isinstance(value, bool):
                raise ValueError
            return int(str(value).strip().strip('"'))
        except (TypeError, ValueError):
            raise GenstoreResponseError(f"Genstore GET /orders/count: no count in {_shape(data, 'count')}") from None

    def iter_order_pages(
        self, *, limit: int = MAX_PAGE_SIZE, updated_at_min: datetime | None = None, **filters: object
    ) -> Iterator[OrderPage]:
        """Every page of GET /orders, one at a time (memory stays flat whatever the store's size).

        Filters (`updatedAtMin` and the keywords) go on the first request only; later pages follow the rel=next
        URL, which carries the pageToken and is never stored. No rel=next: that was the last page.
        """
        params = {"limit": str(max(1, min(MAX_PAGE_SIZE, limit))), **_filters_to_params(filters)}
        if updated_at_min is not None:
            params["updatedAtMin"] = _utc_iso(updated_at_min)
        url: str | None = self._url("/orders")
        query: dict[str, str] | None = params
        seen: set[str] = set()
        page_number = 0
        while url is not None:
            page_number += 1
            data, response = self._request("GET", "/orders", url=url, params=query)
            raw_orders = self._unwrap_list(data, "orders", "GET", "/orders")
            next_link = parse_link_header(response.headers.get("Link")).get("next")
            current_url = response.url
            del data, response
            records: list[OrderRecord] = []
            errors: list[str] = []
            for index, raw in enumerate(raw_orders):
                try:
                    records.append(parse_order(raw))
                except GenstoreRecordError as exc:
                    errors.append(f"page {page_number}, order {index + 1}: {exc}")
                    logger.warning("Genstore order list page %d: order %d not usable: %s", page_number, index + 1, exc)
            yield OrderPage(records=records, errors=errors, page_number=page_number)
            url, query = None, None
            if next_link:
                url = self._next_page_url(next_link, current_url)
                if url in seen:
                    raise GenstoreResponseError("Genstore GET /orders: rel=next repeats an earlier page")
                seen.add(url)

    def get_order(self, order_id: str) -> OrderRecord:
        path = f"/orders/{_segment(order_id)}"
        data, _ = self._request("GET", path)
        return parse_order(self._unwrap_object(data, "order", "GET", path))

    def create_order(self, draft: OrderDraft) -> OrderRecord:
        """POST /orders (never retried once it may have reached Genstore: see the module docstring).

        A draft Genstore would refuse raises ValueError before anything is sent; Genstore's own refusal is
        GenstoreUnprocessable with its `error_text`. A 2xx whose order cannot be read also raises with
        `ambiguous=True`: the order was created, so the caller reads it back (`orders_by_source`).
        """
        body = order_create_body(draft)
        try:
            # Inside the try: a 2xx whose body is not JSON at all (a proxy's page, a cut-off answer) is just as
            # ambiguous as one whose order cannot be parsed.
            data, _ = self._request("POST", "/orders", body=body, create=True)
            return parse_order(self._unwrap_object(data, "order", "POST", "/orders"))
        except GenstoreResponseError as exc:
            raise GenstoreResponseError(
                f"{exc} (the order was created; read it back before creating again)",
                status=exc.status,
                url=exc.url,
                ambiguous=True,
            ) from exc

    def cancel_order(self, order_id: str, *, reason: str = "other") -> OrderRecord:
        """POST /orders/{orderId}/cancel. Retried like a read: cancelling a cancelled order answers 200 unchanged."""
        if reason not in ORDER_CANCEL_REASONS:
            raise ValueError(f"reason must be one of {sorted(ORDER_CANCEL_REASONS)}, got {reason!r}")
        path = f"/orders/{_segment(order_id)}/cancel"
        data, _ = self._request("POST", path, body={"reason": reason})
        return parse_order(self._unwrap_object(data, "order", "POST", path))

    def orders_by_source(
        self, *, source_name: str, source_identifiers: Collection[str], since: datetime
    ) -> dict[str, OrderRecord]:
        """The read-back after an ambiguous create: {sourceIdentifier: order} for the wanted identifiers.

        Genstore has no lookup by (sourceName, sourceIdentifier), so this walks every page of orders updated since
        `since` minus ORDER_READ_BACK_MARGIN (pass the time the intent was recorded, before the POST) and matches
        the pair here: sourceName case-insensitively, sourceIdentifier exactly (outer blanks ignored). Should
        Genstore hold two orders for one pair, the earliest created is returned (and the duplicate logged).
        """
        wanted = {str(identifier).strip() for identifier in source_identifiers if str(identifier).strip()}
        channel = source_name.strip().casefold()
        found: dict[str, OrderRecord] = {}
        if not wanted:
            return found
        for page in self.iter_order_pages(updated_at_min=since - ORDER_READ_BACK_MARGIN):
            for record in page.records:
                identifier = (record.source_identifier or "").strip()
                if identifier not in wanted or (record.source_name or "").strip().casefold() != channel:
                    continue
                earlier = found.get(identifier)
                if earlier is not None and earlier.order_id != record.order_id:
                    logger.warning(
                        "Genstore holds orders %s and %s for %s %s", earlier.order_id, record.order_id,
                        source_name, identifier,
                    )
                    if _created_key(earlier) <= _created_key(record):
                        continue
                found[identifier] = record
        return found

    # --- fulfillments -------------------------------------------------------------------------------------------

    def list_fulfillments(self, order_id: str) -> list[FulfillmentRecord]:
        """The order's fulfillments. A fulfillment without an id fails the call (GenstoreRecordError): this list
        decides whether a create is needed, so it must not quietly miss one."""
        path = f"/orders/{_segment(order_id)}/fulfillments"
        data, _ = self._request("GET", path)
        return [parse_fulfillment(raw) for raw in self._unwrap_list(data, "fulfillments", "GET", path)]

    def create_fulfillment(
        self,
        *,
        order_id: str,
        line_items: Sequence[tuple[str, int]],
        tracking_number: str | None,
        tracking_company: str | None,
        tracking_url: str | None,
        notify_customer: bool,
        location_id: str | None = None,
    ) -> FulfillmentRecord:
        """POST the fulfillment (never retried once it may have reached Genstore: see the module docstring)."""
        if not line_items:
            raise ValueError("a fulfillment needs at least one line item")
        lines = []
        for line_id, quantity in line_items:
            if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
                raise ValueError(f"line item {line_id}: quantity must be a positive integer, got {quantity!r}")
            lines.append({"id": str(line_id), "quantity": quantity})
        payload: dict[str, object] = {
            "orderId": str(order_id),
            "lineItems": lines,
            "trackingNumber": tracking_number,
            "trackingCompany": tracking_company,
            "trackingUrl": tracking_url,
            "notifyCustomer": bool(notify_customer),
        }
        if location_id:
            payload["locationId"] = str(location_id)
        body = {"fulfillment": payload}

        known = self.fulfillment_create_path
        candidates = (known,) if known else FULFILLMENT_CREATE_PATHS
        for index, path in enumerate(candidates):
            try:
                data, _ = self._request("POST", path, body=body, create=True)
            except GenstoreNotFound:
                # 404 on the first path may mean "no such route here": try the other documented spelling. A 404
                # creates nothing, so this cannot duplicate. On the last path, 404 means the order is unknown.
                if index + 1 < len(candidates):
                    logger.info("Genstore POST %s answered 404; trying %s", path, candidates[index + 1])
                    continue
                raise
            self._create_path_learned(path)
            return parse_fulfillment(self._unwrap_object(data, "fulfillment", "POST", path))
        raise AssertionError("unreachable")  # pragma: no cover

    def _create_path_learned(self, path: str) -> None:
        """Remember the create path the store answered on; tell the owner of the client when it is news."""
        if path == self.fulfillment_create_path:
            return
        self.fulfillment_create_path = path
        if self._on_fulfillment_create_path is not None:
            self._on_fulfillment_create_path(path)

    def update_tracking(
        self,
        fulfill_id: str,
        *,
        tracking_number: str | None,
        tracking_company: str | None,
        tracking_url: str | None,
        shipment_status: str | None,
        notify_customer: bool,
    ) -> FulfillmentRecord:
        path = f"/fulfillments/{_segment(fulfill_id)}/update_tracking"
        body = {
            "fulfillment": {
                "trackingNumber": tracking_number,
                "trackingCompany": tracking_company,
                "trackingUrl": tracking_url,
                "shipmentStatus": shipment_status,
                "notifyCustomer": bool(notify_customer),
            }
        }
        data, _ = self._request("PUT", path, body=body)
        return parse_fulfillment(self._unwrap_object(data, "fulfillment", "PUT", path))

    def update_shipment_status(self, fulfill_id: str, *, shipment_status: str) -> FulfillmentRecord:
        """update_tracking with the shipmentStatus alone, the customer not notified. Assumption (contract Part B,
        undocumented): update_tracking changes only the fields the body names, so the number, company and link stay
        exactly as Genstore holds them (a fulfillment the merchant made, maybe edited a moment ago)."""
        path = f"/fulfillments/{_segment(fulfill_id)}/update_tracking"
        body = {"fulfillment": {"shipmentStatus": shipment_status, "notifyCustomer": False}}
        data, _ = self._request("PUT", path, body=body)
        return parse_fulfillment(self._unwrap_object(data, "fulfillment", "PUT", path))

    def cancel_fulfillment(self, fulfill_id: str) -> FulfillmentRecord:
        path = f"/fulfillments/{_segment(fulfill_id)}/cancel"
        data, _ = self._request("PUT", path, body={})
        return parse_fulfillment(self._unwrap_object(data, "fulfillment", "PUT", path))

    # --- webhook subscriptions ----------------------------------------------------------------------------------

    def list_webhooks(self) -> list[WebhookSubscriptionRecord]:
        """Subscriptions of this app on this store; an entry without an id is logged and left out."""
        data, _ = self._request("GET", "/app/webhooks")
        subscriptions = []
        for raw in self._unwrap_list(data, "webhooks", "GET", "/app/webhooks"):
            try:
                subscriptions.append(parse_webhook_subscription(raw))
            except GenstoreRecordError as exc:
                logger.warning("Genstore GET /app/webhooks: subscription left out: %s", exc)
        return subscriptions

    def create_webhook(self, *, address: str, topic: str) -> WebhookSubscriptionRecord:
        """POST a subscription (not retried once it may have reached Genstore: list before creating again)."""
        body = {"webhook": {"address": address, "topic": topic}}
        data, _ = self._request("POST", "/app/webhooks", body=body, create=True)
        return parse_webhook_subscription(self._unwrap_object(data, "webhook", "POST", "/app/webhooks"))

    def delete_webhook(self, webhook_id: str) -> None:
        """DELETE a subscription; one that is already gone (404) counts as deleted."""
        path = f"/app/webhooks/{_segment(webhook_id)}"
        try:
            self._request("DELETE", path)
        except GenstoreNotFound:
            logger.info("Genstore DELETE %s: already gone", path)
