"""One sandbox shop: lazily generated orders plus an overlay of changed ones, keyset pagination, fulfillments,
webhook subscriptions, the rate-limit bucket and the counters.

Not thread-safe by itself: `GenstoreSandbox` holds its lock around every call.
"""

from __future__ import annotations

import bisect
import heapq
import json
import random
import time
from array import array
from collections import Counter, OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import urlparse

# The fake accepts the contract's topics and shipmentStatus values, defined once in the client package.
from oma.genstore.shipment_status import SHIPMENT_STATUSES
from oma.genstore.topics import WEBHOOK_TOPICS
from oma.sandbox.created_orders import API_CANCEL_REASONS, build_order, order_request, source_summary
from oma.sandbox.data import (
    DAY_MS,
    FINANCIAL_STATUSES,
    FULFILLMENT_STATUSES,
    IdScheme,
    OrderSummary,
    Variant,
    build_catalog,
    cents,
    fulfillment_status_code,
    generate_order,
    iso_from_ms,
    money,
    order_summary,
    recompute_fulfillment_status,
    shop_seed_for,
    tracking_for,
)
from oma.sandbox.errors import ApiError
from oma.sandbox.quirks import EMAIL_HIDING_QUIRKS, static_quirks, wire_order

__all__ = ["DEFAULT_CACHE_ORDERS", "LOCAL_WEBHOOK_HOSTS", "WEBHOOK_FAILURE_LIMIT", "ApiError", "OrderChange",
           "OrderFilter", "Page", "Shop", "ShopStats", "TokenBucket"]

LOCAL_WEBHOOK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# Genstore stops sending to a subscription after this many consecutive failed deliveries.
WEBHOOK_FAILURE_LIMIT = 8
# Serialized generated orders kept (LRU): ~1.4 KB each. A walk of a bigger shop regenerates what fell out.
DEFAULT_CACHE_ORDERS = 20_000


@dataclass(frozen=True, slots=True)
class OrderFilter:
    financial: frozenset[int] | None = None  # indexes into FINANCIAL_STATUSES
    fulfillment: frozenset[int] | None = None  # indexes into FULFILLMENT_STATUSES
    since_id: int | None = None
    updated_min_ms: int | None = None

    @property
    def by_updated(self) -> bool:
        return self.updated_min_ms is not None

    @property
    def needs_status_arrays(self) -> bool:
        return self.financial is not None or self.fulfillment is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "fin": sorted(self.financial) if self.financial is not None else None,
            "ful": sorted(self.fulfillment) if self.fulfillment is not None else None,
            "since": self.since_id,
            "umin": self.updated_min_ms,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OrderFilter:
        return cls(
            financial=frozenset(data["fin"]) if data.get("fin") is not None else None,
            fulfillment=frozenset(data["ful"]) if data.get("ful") is not None else None,
            since_id=data.get("since"),
            updated_min_ms=data.get("umin"),
        )


class Page(NamedTuple):
    indices: list[int]
    first_key: Any
    last_key: Any
    has_previous: bool
    has_next: bool


class OrderChange(NamedTuple):
    """What changed, for webhooks: the order's index, the topics it fires, and a refund payload if one."""

    index: int  # type: ignore[assignment]  # a field named like tuple.index: callers read it by name
    topics: tuple[str, ...]
    refund: dict[str, Any] | None = None


class TokenBucket:
    """Genstore's per-shop bucket: `capacity` tokens, `refill` tokens a second, one token a request."""

    def __init__(self, capacity: int, refill_per_second: float) -> None:
        self.capacity = capacity
        self.refill = refill_per_second
        self.tokens = float(capacity)
        self.stamp = time.monotonic()

    def _top_up(self) -> None:
        now = time.monotonic()
        self.tokens = min(float(self.capacity), self.tokens + (now - self.stamp) * self.refill)
        self.stamp = now

    def take(self) -> tuple[bool, float]:
        """(allowed, seconds until a token is available)."""
        self._top_up()
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True, 0.0
        wait = (1.0 - self.tokens) / self.refill if self.refill > 0 else 60.0
        return False, wait

    def used(self) -> int:
        self._top_up()
        return max(0, min(self.capacity, self.capacity - int(self.tokens)))

    def header(self) -> str:
        return f"{self.used()}/{self.capacity}"


@dataclass
class ShopStats:
    requests: int = 0
    unauthorized: int = 0
    rate_limited: int = 0
    rate_limited_without_retry_after: int = 0
    faults_injected: int = 0
    write_faults_injected: int = 0
    slow_responses: int = 0
    pages_served: int = 0
    orders_served: int = 0
    fulfillments_created: int = 0
    fulfillments_updated: int = 0
    fulfillments_cancelled: int = 0
    orders_created: int = 0  # through POST /orders
    orders_cancelled: int = 0  # through POST /orders/{orderId}/cancel
    orders_changed: int = 0
    webhooks_delivered: int = 0
    webhooks_failed: int = 0
    webhooks_suppressed: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    by_endpoint: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["by_status"] = {str(code): count for code, count in sorted(self.by_status.items())}
        data["by_endpoint"] = dict(sorted(self.by_endpoint.items()))
        return data


def _parse_int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise ApiError(400, f"{what} must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise ApiError(400, f"{what} must be an integer")


def _optional_text(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str | int) and not isinstance(value, bool):
        return str(value)
    raise ApiError(400, f"{what} must be a string")


def _shipment_status(value: Any) -> str | None:
    if value is None:
        return None
    if value not in SHIPMENT_STATUSES:
        raise ApiError(400, f"shipmentStatus must be null or one of: {', '.join(SHIPMENT_STATUSES)}")
    return value


class Shop:
    def __init__(
        self,
        *,
        handle: str,
        seed: int,
        order_count: int,
        anchor_ms: int,
        days: int,
        cache_orders: int = DEFAULT_CACHE_ORDERS,
    ) -> None:
        if order_count < 0:
            raise ValueError("order_count must be >= 0")
        self.handle = handle
        self.seed = shop_seed_for(seed, handle)
        self.ids = IdScheme(self.seed)
        self.catalog = build_catalog(self.seed)
        self.base_count = order_count
        self.cache_orders = cache_orders
        self.count = order_count
        self.anchor_ms = anchor_ms
        self.span_ms = days * DAY_MS
        self.access_token: str | None = None  # None: the sandbox's token
        self.bucket = TokenBucket(40, 2.0)
        self.stats = ShopStats()
        self.shop_id = str(1_000_000 + self.seed % 9_000_000)

        self.overlay: dict[int, dict[str, Any]] = {}
        self._overlay_bytes: dict[int, bytes] = {}
        self._base_bytes: OrderedDict[int, bytes] = OrderedDict()
        # Built on the first query that needs them (filters, updatedAtMin); kept current afterwards.
        self._financial_codes: bytearray | None = None
        self._fulfillment_codes: bytearray | None = None
        self._base_updated: array[int] | None = None
        self._base_by_updated: list[int] | None = None
        self._overlay_by_updated: list[tuple[int, int]] | None = None

        self.created_fulfillments: dict[str, int] = {}  # fulfillId -> order index (fulfillments made via the API)
        self._fulfillment_counter = 0
        self.created_orders: list[int] = []  # indexes of the orders made through POST /orders, in order
        self._line_counter = 0
        self._variants_by_sku: dict[str, Variant] | None = None
        self.webhooks: dict[int, dict[str, Any]] = {}
        self._webhook_counter = 8_589_934_000 + self.seed % 1000
        self.mutation_rng = random.Random(self.seed ^ 0x5EED)
        self._retry_after_counter = 0

    # --- generation ------------------------------------------------------------------------------------

    def _base_times(self, index: int, summary: OrderSummary) -> tuple[int, int]:
        slot = self.span_ms / max(self.base_count, 1)
        created = self.anchor_ms - self.span_ms + int(slot * (index + summary.created_fraction))
        created -= created % 1000
        updated = created + summary.updated_delay_ms
        if updated >= self.anchor_ms:  # never in the future of the anchor: squeeze into what is left
            updated = created + int((self.anchor_ms - created - 1000) * summary.created_fraction)
        updated = max(created, updated - updated % 1000)
        if (index + self.seed % 10) % 10 == 0:  # OFFSET_TIMESTAMPS orders also carry milliseconds
            created += 1 + summary.hash % 998
            updated = max(created, updated + 1 + (summary.hash >> 10) % 998)
        return created, updated

    def _generate(self, index: int) -> dict[str, Any]:
        summary = order_summary(self.seed, index)
        created, updated = self._base_times(index, summary)
        order = generate_order(
            ids=self.ids, catalog=self.catalog, index=index, summary=summary, created_ms=created, updated_ms=updated
        )
        if static_quirks(self.seed, index) & EMAIL_HIDING_QUIRKS:
            order["email"] = None  # a protected field the app may not see
        return order

    def quirks_for(self, index: int) -> frozenset[str]:
        return static_quirks(self.seed, index)

    def order(self, index: int) -> dict[str, Any]:
        """The order's current state (do not modify: use `order_for_write`)."""
        return self.overlay.get(index) or self._generate(index)

    def order_for_write(self, index: int) -> dict[str, Any]:
        order = self.overlay.get(index)
        if order is None:
            order = self.overlay[index] = self._generate(index)
        return order

    def index_for(self, order_id: Any) -> int | None:
        text = str(order_id).strip()
        if not text.isdigit():
            return None
        return self.ids.index_for_order_id(int(text), self.count)

    def wire(self, index: int) -> tuple[dict[str, Any], tuple[str, ...]]:
        return wire_order(self.order(index), self.quirks_for(index), index)

    def order_bytes(self, index: int) -> bytes:
        if index in self.overlay:
            cached = self._overlay_bytes.get(index)
            if cached is None:
                cached = self._overlay_bytes[index] = self._serialize(self.overlay[index], index)
            return cached
        cached = self._base_bytes.get(index)
        if cached is None:
            cached = self._serialize(self._generate(index), index)
            self._base_bytes[index] = cached
            if len(self._base_bytes) > self.cache_orders:
                self._base_bytes.popitem(last=False)
        return cached

    def _serialize(self, order: dict[str, Any], index: int) -> bytes:
        wire, _ = wire_order(order, self.quirks_for(index), index)
        return json.dumps(wire, separators=(",", ":"), ensure_ascii=False).encode()

    # --- change bookkeeping ------------------------------------------------------------------------------

    def changed(self, index: int) -> None:
        """Call after writing to an overlay order: keeps caches, filter arrays and the sort index current."""
        self.stats.orders_changed += 1
        self._overlay_bytes.pop(index, None)
        self._overlay_by_updated = None
        order = self.overlay[index]
        if self._financial_codes is not None and self._fulfillment_codes is not None:
            self._financial_codes[index] = FINANCIAL_STATUSES.index(order["financialStatus"])
            self._fulfillment_codes[index] = fulfillment_status_code(order["fulfillmentStatus"])

    def _ensure_status_arrays(self) -> tuple[bytearray, bytearray]:
        if self._financial_codes is None or self._fulfillment_codes is None:
            self._build_indexes()
        assert self._financial_codes is not None and self._fulfillment_codes is not None
        return self._financial_codes, self._fulfillment_codes

    def _build_indexes(self) -> None:
        """One pass over the generated orders' summaries: status codes, base updatedAt, the updatedAt order."""
        financial = bytearray(self.count)
        fulfillment = bytearray(self.count)
        updated = array("q", bytes(8 * self.base_count))
        fin_index = {name: code for code, name in enumerate(FINANCIAL_STATUSES)}
        ful_index = {name: code for code, name in enumerate(FULFILLMENT_STATUSES)}
        for index in range(self.base_count):
            summary = order_summary(self.seed, index)
            financial[index] = fin_index[summary.financial_status]
            fulfillment[index] = ful_index[summary.fulfillment_status]
            updated[index] = self._base_times(index, summary)[1]
        for index, order in self.overlay.items():
            financial[index] = fin_index[order["financialStatus"]]
            fulfillment[index] = fulfillment_status_code(order["fulfillmentStatus"])
        self._financial_codes, self._fulfillment_codes, self._base_updated = financial, fulfillment, updated
        self._base_by_updated = sorted(range(self.base_count), key=lambda i: (updated[i], i))

    def _sorted_overlay(self) -> list[tuple[int, int]]:
        if self._overlay_by_updated is None:
            self._overlay_by_updated = sorted((order["updatedAt"], index) for index, order in self.overlay.items())
        return self._overlay_by_updated

    # --- listing -------------------------------------------------------------------------------------------

    def _iter_keys(self, order_filter: OrderFilter, key: Any, *, descending: bool) -> Iterator[tuple[Any, int]]:
        """(key, index) of every order strictly after (or before) `key` in the query's sort order."""
        if not order_filter.by_updated:
            if descending:
                for index in range(min(key, self.count) - 1, -1, -1):
                    yield index, index
            else:
                for index in range(key + 1, self.count):
                    yield index, index
            return
        if self._base_updated is None or self._base_by_updated is None:
            self._build_indexes()
        base_updated, base_sorted = self._base_updated, self._base_by_updated
        assert base_updated is not None and base_sorted is not None
        overlay, overlay_sorted = self.overlay, self._sorted_overlay()
        base_key = lambda i: (base_updated[i], i)  # noqa: E731 - a bisect key, clearer inline
        key = tuple(key)
        if descending:
            base_pos = bisect.bisect_left(base_sorted, key, key=base_key)
            overlay_pos = bisect.bisect_left(overlay_sorted, key)
            base_stream = (
                (base_key(base_sorted[j]), base_sorted[j])
                for j in range(base_pos - 1, -1, -1)
                if base_sorted[j] not in overlay
            )
            overlay_stream = ((overlay_sorted[j], overlay_sorted[j][1]) for j in range(overlay_pos - 1, -1, -1))
            yield from heapq.merge(base_stream, overlay_stream, reverse=True)
        else:
            base_pos = bisect.bisect_right(base_sorted, key, key=base_key)
            overlay_pos = bisect.bisect_right(overlay_sorted, key)
            base_stream = (
                (base_key(base_sorted[j]), base_sorted[j])
                for j in range(base_pos, len(base_sorted))
                if base_sorted[j] not in overlay
            )
            overlay_stream = (
                (overlay_sorted[j], overlay_sorted[j][1]) for j in range(overlay_pos, len(overlay_sorted))
            )
            yield from heapq.merge(base_stream, overlay_stream)

    def _matching(self, order_filter: OrderFilter, key: Any, *, descending: bool) -> Iterator[tuple[Any, int]]:
        financial = fulfillment = None
        if order_filter.needs_status_arrays:
            financial, fulfillment = self._ensure_status_arrays()
        since_index = (
            self.ids.first_index_after_order_id(order_filter.since_id) if order_filter.since_id is not None else 0
        )
        floor_key = (order_filter.updated_min_ms, -1) if order_filter.by_updated else since_index - 1
        for item_key, index in self._iter_keys(order_filter, key, descending=descending):
            if descending and item_key <= floor_key:
                return
            if index < since_index:
                continue
            if (
                financial is not None
                and order_filter.financial is not None
                and financial[index] not in order_filter.financial
            ):
                continue
            if (
                fulfillment is not None
                and order_filter.fulfillment is not None
                and (fulfillment[index] not in order_filter.fulfillment)
            ):
                continue
            yield item_key, index

    def start_key(self, order_filter: OrderFilter) -> Any:
        """The exclusive key before the first order of a query."""
        if order_filter.by_updated:
            return (order_filter.updated_min_ms, -1)
        if order_filter.since_id is not None:
            return self.ids.first_index_after_order_id(order_filter.since_id) - 1
        return -1

    def page(self, order_filter: OrderFilter, *, key: Any, backwards: bool, limit: int, first: bool) -> Page:
        if backwards:
            found = []
            for item in self._matching(order_filter, key, descending=True):
                found.append(item)
                if len(found) > limit:
                    break
            has_previous = len(found) > limit
            found = list(reversed(found[:limit]))
            after = found[-1][0] if found else _before(key)
            has_next = next(self._matching(order_filter, after, descending=False), None) is not None
        else:
            found = []
            for item in self._matching(order_filter, key, descending=False):
                found.append(item)
                if len(found) > limit:
                    break
            has_next = len(found) > limit
            found = found[:limit]
            first_key = found[0][0] if found else key
            has_previous = (
                not first
                and next(self._matching(order_filter, first_key if found else _after(key), descending=True), None)
                is not None
            )
        return Page(
            indices=[index for _, index in found],
            first_key=found[0][0] if found else key,
            last_key=found[-1][0] if found else key,
            has_previous=has_previous,
            has_next=has_next,
        )

    def count_matching(self, order_filter: OrderFilter) -> int:
        if order_filter == OrderFilter():
            return self.count
        return sum(1 for _ in self._matching(order_filter, self.start_key(order_filter), descending=False))

    # --- orders changing -----------------------------------------------------------------------------------

    def add_orders(self, n: int, stamp: int, rng: random.Random) -> list[OrderChange]:
        changes = []
        for _ in range(n):
            index = self.count
            summary = order_summary(self.seed, index)._replace(
                cancelled=False,
                financial_status=rng.choice(("paid", "paid", "paid", "paid", "pending", "authorized")),
                fulfillment_status="unfulfilled",
            )
            order = generate_order(
                ids=self.ids, catalog=self.catalog, index=index, summary=summary, created_ms=stamp, updated_ms=stamp
            )
            changes.append(self._append(order))
        return changes

    def _append(self, order: dict[str, Any]) -> OrderChange:
        """Add a new open order at the next index (its ids must be that index's); it fires orders/create."""
        index = self.count
        if static_quirks(self.seed, index) & EMAIL_HIDING_QUIRKS:
            order["email"] = None  # a protected field the app may not see
        self.overlay[index] = order
        self.count += 1
        if self._financial_codes is not None and self._fulfillment_codes is not None:
            self._financial_codes.append(FINANCIAL_STATUSES.index(order["financialStatus"]))
            self._fulfillment_codes.append(0)
        self.changed(index)
        topics = ["orders/create"] + (["orders/paid"] if order["financialStatus"] == "paid" else [])
        return OrderChange(index, tuple(topics))

    # --- orders created and cancelled through the API ------------------------------------------------------

    def create_order(self, body: Any, stamp: int) -> OrderChange:
        """POST /orders: check the body, give the order the next index's ids and new line ids, keep it."""
        request = order_request(body)
        if self._variants_by_sku is None:
            physical, digital = self.catalog
            self._variants_by_sku = {variant.sku: variant for variant in (*physical, *digital)}
        index = self.count
        line_ids = []
        for _ in request.lines:
            self._line_counter += 1
            line_ids.append(self.ids.created_line_item_id(self._line_counter))
        order = build_order(
            request,
            order_id=str(self.ids.order_id(index)),
            genstore_id=self.ids.genstore_id(index),
            name=f"#{1001 + index}",  # the shop's numbering goes on
            line_ids=line_ids,
            variants=self._variants_by_sku,
            stamp=stamp,
        )
        change = self._append(order)
        self.created_orders.append(index)
        self.stats.orders_created += 1
        return change

    def cancel_order(self, index: int, body: Any, stamp: int) -> OrderChange | None:
        """POST /orders/{orderId}/cancel: None when the order was already cancelled (200, unchanged)."""
        reason = body.get("reason") if isinstance(body, dict) else None
        if reason not in API_CANCEL_REASONS:
            raise ApiError(422, f"reason must be one of: {', '.join(API_CANCEL_REASONS)}")
        order = self.order(index)
        if order["cancelledAt"] is not None:
            return None
        if order["fulfillmentStatus"] == "fulfilled":
            raise ApiError(422, "Cannot cancel a fulfilled order")
        change = self.cancel(index, reason, stamp)
        self.stats.orders_cancelled += 1
        return change

    def orders_by_source(self, source_name: str | None = None) -> list[dict[str, Any]]:
        """The orders created through POST /orders (optionally of one sourceName, any case), oldest first."""
        wanted = source_name.casefold() if source_name is not None else None
        return [
            source_summary(self.overlay[index])
            for index in self.created_orders
            if wanted is None or str(self.overlay[index]["sourceName"]).casefold() == wanted
        ]

    def mutate(self, n: int, stamp_source: Any, rng: random.Random) -> list[OrderChange]:
        """Change `n` distinct orders the way merchants and customers do; `stamp_source()` gives each a time."""
        n = min(n, self.count)
        changes = []
        for index in sorted(rng.sample(range(self.count), n)):
            order = self.order_for_write(index)
            before = _status_snapshot(order)
            kind = rng.choices(("financial", "fulfil", "cancel", "touch"), weights=(35, 35, 12, 18))[0]
            stamp = stamp_source()
            applied = (
                (kind == "financial" and _advance_financial(order, rng))
                or (kind == "fulfil" and self._fulfil_some(order, rng, stamp))
                or (kind == "cancel" and _cancel(order, rng.choice(("customer", "inventory", "fraud")), stamp))
            )
            if not applied:
                _touch(order, rng)
            order["updatedAt"] = stamp
            self.changed(index)
            changes.append(self._change_for(index, before, order, stamp))
        return changes

    def cancel(self, index: int, reason: str, stamp: int) -> OrderChange:
        order = self.order_for_write(index)
        if order["cancelledAt"] is not None:
            raise ApiError(422, "Order is already cancelled")
        before = _status_snapshot(order)
        _cancel(order, reason, stamp)
        order["updatedAt"] = stamp
        self.changed(index)
        return self._change_for(index, before, order, stamp)

    def _change_for(
        self, index: int, before: tuple[str, str | None, bool], order: dict[str, Any], stamp: int
    ) -> OrderChange:
        financial, fulfillment, cancelled = before
        topics = ["orders/update"]
        refund = None
        if order["cancelledAt"] is not None and not cancelled:
            topics.append("orders/cancelled")
        if order["financialStatus"] == "paid" and financial != "paid":
            topics.append("orders/paid")
        if order["fulfillmentStatus"] != fulfillment:
            if order["fulfillmentStatus"] == "fulfilled":
                topics.append("orders/fulfilled")
            elif order["fulfillmentStatus"] == "partial":
                topics.append("orders/partiallyFulfilled")
        if order["financialStatus"] in ("refunded", "partially_refunded") and order["financialStatus"] != financial:
            topics.append("refunds/create")
            refund = {
                "refundId": str(9_000_000_000_000 + self.ids.order_id(index) % 1_000_000_000 * 10 + stamp % 10),
                "orderId": order["orderId"],
                "amount": order["totalPrice"]
                if order["financialStatus"] == "refunded"
                else money(cents(order["totalPrice"]) // 3),
                "currency": order["currency"],
                "createTime": iso_from_ms(stamp),
                "note": None,
            }
        return OrderChange(index, tuple(topics), refund)

    def _fulfil_some(self, order: dict[str, Any], rng: random.Random, stamp: int) -> bool:
        if order["cancelledAt"] is not None or order["fulfillmentStatus"] == "restocked":
            return False
        open_lines = [line for line in order["lineItems"] if line["fulfillableQuantity"] > 0]
        if not open_lines:
            return False
        if len(open_lines) > 1 and rng.random() < 0.4:
            open_lines = open_lines[: rng.randint(1, len(open_lines) - 1)]
        number, company, url = tracking_for(rng)
        self._add_fulfillment(
            order,
            [(line["id"], line["fulfillableQuantity"]) for line in open_lines],
            tracking=(number, company, url),
            shipment_status=None,
            stamp=stamp,
        )
        return True

    # --- fulfillments ---------------------------------------------------------------------------------------

    def _add_fulfillment(
        self,
        order: dict[str, Any],
        parts: list[tuple[str, int]],
        *,
        tracking: tuple[str | None, str | None, str | None],
        shipment_status: str | None,
        stamp: int,
    ) -> dict[str, Any]:
        self._fulfillment_counter += 1
        fulfill_id = self.ids.created_fulfillment_id(self._fulfillment_counter)
        number, company, url = tracking
        fulfillment = {
            "fulfillId": fulfill_id,
            "orderId": order["orderId"],
            "status": "success",
            "shipmentStatus": shipment_status,
            "trackingNumber": number,
            "trackingCompany": company,
            "trackingUrl": url,
            "lineItems": [{"id": line_id, "quantity": quantity} for line_id, quantity in parts],
            "createdAt": stamp,
            "updatedAt": stamp,
        }
        order["fulfillments"].append(fulfillment)
        recompute_fulfillment_status(order)
        self.created_fulfillments[fulfill_id] = self.index_for(order["orderId"])  # type: ignore[assignment]
        return fulfillment

    def create_fulfillment(self, body: Any, stamp: int) -> tuple[dict[str, Any], OrderChange]:
        data = body.get("fulfillment") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            raise ApiError(400, 'Body must be {"fulfillment": {...}}')
        if data.get("orderId") in (None, ""):
            raise ApiError(400, "fulfillment.orderId is required")
        index = self.index_for(data["orderId"])
        if index is None:
            raise ApiError(404, f"Order {data['orderId']} not found")
        current = self.order(index)
        if current["cancelledAt"] is not None:
            raise ApiError(422, "Cannot fulfill a cancelled order")
        lines = {line["id"]: line for line in current["lineItems"]}
        requested = data.get("lineItems")
        wanted: dict[str, int] = {}
        if requested in (None, []):
            wanted = {
                line_id: line["fulfillableQuantity"] for line_id, line in lines.items() if line["fulfillableQuantity"]
            }
            if not wanted:
                raise ApiError(422, "Order has no fulfillable line items")
        else:
            if isinstance(requested, dict):
                requested = [requested]
            if not isinstance(requested, list):
                raise ApiError(400, "fulfillment.lineItems must be a list of {id, quantity}")
            for part in requested:
                if not isinstance(part, dict) or part.get("id") in (None, ""):
                    raise ApiError(400, "each fulfillment.lineItems entry needs an id")
                line_id = str(part["id"]).strip()
                if line_id not in lines:
                    raise ApiError(400, f"Line item {line_id} does not belong to order {current['orderId']}")
                quantity = _parse_int(part.get("quantity", lines[line_id]["fulfillableQuantity"]), "quantity")
                if quantity < 1:
                    raise ApiError(400, f"Quantity for line item {line_id} must be at least 1")
                wanted[line_id] = wanted.get(line_id, 0) + quantity
            for line_id, quantity in wanted.items():
                fulfillable = lines[line_id]["fulfillableQuantity"]
                if quantity > fulfillable:
                    raise ApiError(
                        422,
                        f"Quantity {quantity} for line item {line_id} exceeds its fulfillable quantity {fulfillable}",
                    )
        tracking = (
            _optional_text(data.get("trackingNumber"), "trackingNumber"),
            _optional_text(data.get("trackingCompany"), "trackingCompany"),
            _optional_text(data.get("trackingUrl"), "trackingUrl"),
        )
        shipment_status = _shipment_status(data.get("shipmentStatus"))
        order = self.order_for_write(index)
        before = _status_snapshot(order)
        fulfillment = self._add_fulfillment(
            order, list(wanted.items()), tracking=tracking, shipment_status=shipment_status, stamp=stamp
        )
        order["updatedAt"] = stamp
        self.changed(index)
        self.stats.fulfillments_created += 1
        return fulfillment, self._change_for(index, before, order, stamp)

    def find_fulfillment(self, fulfill_id: str) -> tuple[int, dict[str, Any]] | None:
        text = str(fulfill_id).strip()
        if not text.isdigit():
            return None
        index = self.created_fulfillments.get(text)
        if index is None:
            located = self.ids.index_for_generated_fulfillment_id(int(text))
            if located is None or located[0] >= self.count:
                return None
            index = located[0]
        for fulfillment in self.order(index)["fulfillments"]:
            if fulfillment["fulfillId"] == text:
                return index, fulfillment
        return None

    def _fulfillment_for_write(self, fulfill_id: str) -> tuple[int, dict[str, Any], dict[str, Any]]:
        found = self.find_fulfillment(fulfill_id)
        if found is None:
            raise ApiError(404, f"Fulfillment {fulfill_id} not found")
        index = found[0]
        order = self.order_for_write(index)
        fulfillment = next(f for f in order["fulfillments"] if f["fulfillId"] == str(fulfill_id).strip())
        return index, order, fulfillment

    def update_tracking(self, fulfill_id: str, body: Any, stamp: int) -> tuple[dict[str, Any], OrderChange]:
        data = body.get("fulfillment") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            raise ApiError(400, 'Body must be {"fulfillment": {...}}')
        tracking_info = data.get("trackingInfo")
        info = tracking_info if isinstance(tracking_info, dict) else {}
        updates: dict[str, Any] = {}
        for key, alias in (("trackingNumber", "number"), ("trackingCompany", "company"), ("trackingUrl", "url")):
            if key in data:
                updates[key] = _optional_text(data[key], key)
            elif alias in info:
                updates[key] = _optional_text(info[alias], key)
        if "shipmentStatus" in data:
            updates["shipmentStatus"] = _shipment_status(data["shipmentStatus"])
        index, order, fulfillment = self._fulfillment_for_write(fulfill_id)
        if fulfillment["status"] == "cancelled":
            raise ApiError(422, "Cannot update tracking of a cancelled fulfillment")
        before = _status_snapshot(order)
        fulfillment.update(updates)
        fulfillment["updatedAt"] = stamp
        order["updatedAt"] = stamp
        self.changed(index)
        self.stats.fulfillments_updated += 1
        return fulfillment, self._change_for(index, before, order, stamp)

    def cancel_fulfillment(self, fulfill_id: str, stamp: int) -> tuple[dict[str, Any], OrderChange]:
        index, order, fulfillment = self._fulfillment_for_write(fulfill_id)
        if fulfillment["status"] == "cancelled":
            raise ApiError(422, "Fulfillment is already cancelled")
        before = _status_snapshot(order)
        fulfillment["status"] = "cancelled"
        fulfillment["updatedAt"] = stamp
        recompute_fulfillment_status(order)
        order["updatedAt"] = stamp
        self.changed(index)
        self.stats.fulfillments_cancelled += 1
        return fulfillment, self._change_for(index, before, order, stamp)

    # --- fulfillments made or edited in Genstore's own admin (the merchant, or another app) -------------------------
    # Not API calls: no write is counted in the stats, so a test can tell the merchant's writes from a client's.

    def merchant_fulfil(
        self,
        index: int,
        *,
        parts: list[tuple[str, int]] | None,
        tracking: tuple[str | None, str | None, str | None],
        shipment_status: str | None,
        stamp: int,
    ) -> tuple[dict[str, Any], OrderChange]:
        """Fulfil an order: `parts` [(line id, quantity)], None for everything still fulfillable."""
        order = self.order_for_write(index)
        if order["cancelledAt"] is not None:
            raise ApiError(422, "Cannot fulfill a cancelled order")
        if parts is None:
            parts = [(line["id"], line["fulfillableQuantity"]) for line in order["lineItems"]
                     if line["fulfillableQuantity"] > 0]
        if not parts:
            raise ApiError(422, "Order has no fulfillable line items")
        before = _status_snapshot(order)
        fulfillment = self._add_fulfillment(
            order, parts, tracking=tracking, shipment_status=_shipment_status(shipment_status), stamp=stamp
        )
        order["updatedAt"] = stamp
        self.changed(index)
        return fulfillment, self._change_for(index, before, order, stamp)

    def merchant_edit_fulfillment(
        self, fulfill_id: str, changes: dict[str, Any], stamp: int
    ) -> tuple[dict[str, Any], OrderChange]:
        """Change a fulfillment's trackingNumber, trackingCompany, trackingUrl, shipmentStatus or status (None
        clears a tracking field; status "cancelled" cancels it, freeing its items)."""
        unknown = set(changes) - {"trackingNumber", "trackingCompany", "trackingUrl", "shipmentStatus", "status"}
        if unknown:
            raise ApiError(400, f"cannot edit {', '.join(sorted(unknown))}")
        index, order, fulfillment = self._fulfillment_for_write(fulfill_id)
        before = _status_snapshot(order)
        if "shipmentStatus" in changes:
            changes = {**changes, "shipmentStatus": _shipment_status(changes["shipmentStatus"])}
        fulfillment.update(changes)
        fulfillment["updatedAt"] = stamp
        if "status" in changes:
            recompute_fulfillment_status(order)
        order["updatedAt"] = stamp
        self.changed(index)
        return fulfillment, self._change_for(index, before, order, stamp)

    # --- webhook subscriptions --------------------------------------------------------------------------------

    def webhook_json(self, webhook: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": webhook["id"],  # a bare number, as in Genstore's own sample
            "address": webhook["address"],
            "topic": webhook["topic"],
            "createTime": iso_from_ms(webhook["createTime"]),
            "updateTime": iso_from_ms(webhook["updateTime"]),
        }

    def _validated_webhook(self, data: Any, *, partial: bool, current_id: int | None = None) -> dict[str, str]:
        if not isinstance(data, dict) or not isinstance(data.get("webhook"), dict):
            raise ApiError(400, 'Body must be {"webhook": {"address": ..., "topic": ...}}')
        fields = data["webhook"]
        result: dict[str, str] = {}
        if "topic" in fields or not partial:
            topic = fields.get("topic")
            if topic not in WEBHOOK_TOPICS:
                raise ApiError(422, f"topic must be one of: {', '.join(WEBHOOK_TOPICS)}")
            result["topic"] = topic
        if "address" in fields or not partial:
            address = fields.get("address")
            parsed = urlparse(address) if isinstance(address, str) else None
            if parsed is None or not parsed.netloc or parsed.scheme not in ("https", "http"):
                raise ApiError(422, "address must be an HTTPS URL")
            if parsed.scheme == "http" and parsed.hostname not in LOCAL_WEBHOOK_HOSTS:
                raise ApiError(422, "address must be an HTTPS URL")
            result["address"] = address
        existing = self.webhooks.get(current_id) if current_id is not None else None
        topic = result.get("topic", existing["topic"] if existing else None)
        address = result.get("address", existing["address"] if existing else None)
        for other in self.webhooks.values():
            if other["id"] != current_id and other["topic"] == topic and other["address"] == address:
                raise ApiError(422, "address for this topic has already been taken")
        return result

    def create_webhook(self, body: Any, stamp: int) -> dict[str, Any]:
        fields = self._validated_webhook(body, partial=False)
        self._webhook_counter += 1
        webhook: dict[str, Any] = {
            "id": self._webhook_counter, **fields, "createTime": stamp, "updateTime": stamp, "failures": 0,
        }
        self.webhooks[webhook["id"]] = webhook
        return webhook

    def get_webhook(self, webhook_id: str) -> dict[str, Any]:
        webhook = self.webhooks.get(int(webhook_id)) if webhook_id.isdigit() else None
        if webhook is None:
            raise ApiError(404, f"Webhook {webhook_id} not found")
        return webhook

    def update_webhook(self, webhook_id: str, body: Any, stamp: int) -> dict[str, Any]:
        webhook = self.get_webhook(webhook_id)
        webhook.update(self._validated_webhook(body, partial=True, current_id=webhook["id"]))
        webhook["updateTime"] = stamp
        webhook["failures"] = 0  # updating a subscription turns deliveries back on
        return webhook

    def delete_webhook(self, webhook_id: str) -> None:
        webhook = self.get_webhook(webhook_id)
        del self.webhooks[webhook["id"]]

    def next_retry_after_is_omitted(self) -> bool:
        """Most 429s carry Retry-After; every fourth does not (the docs never promise it)."""
        self._retry_after_counter += 1
        return self._retry_after_counter % 4 == 0


def _after(key: Any) -> Any:
    """A key just after `key` (so a backwards scan from it includes `key` itself)."""
    if isinstance(key, tuple | list):
        return (key[0], key[1] + 1)
    return key + 1


def _before(key: Any) -> Any:
    """A key just before `key` (so a forward scan from it includes `key` itself)."""
    if isinstance(key, tuple | list):
        return (key[0], key[1] - 1)
    return key - 1


def _status_snapshot(order: dict[str, Any]) -> tuple[str, str | None, bool]:
    return order["financialStatus"], order["fulfillmentStatus"], order["cancelledAt"] is not None


_FINANCIAL_NEXT: dict[str, tuple[str, ...]] = {
    "pending": ("authorized", "paid", "paid"),
    "authorized": ("paid", "paid", "voided"),
    "partially_paid": ("paid",),
    "paid": ("partially_refunded", "refunded"),
    "partially_refunded": ("refunded",),
}


def _advance_financial(order: dict[str, Any], rng: random.Random) -> bool:
    choices = _FINANCIAL_NEXT.get(order["financialStatus"])
    if not choices or order["cancelledAt"] is not None:
        return False
    order["financialStatus"] = rng.choice(choices)
    return True


def _cancel(order: dict[str, Any], reason: str, stamp: int) -> bool:
    if order["cancelledAt"] is not None or order["fulfillmentStatus"] == "fulfilled":
        return False
    order["cancelledAt"] = stamp
    order["cancelReason"] = reason
    if order["financialStatus"] in ("pending", "authorized", "voided"):
        order["financialStatus"] = "voided"
    else:
        order["financialStatus"] = "refunded"
    recompute_fulfillment_status(order)
    return True


def _touch(order: dict[str, Any], rng: random.Random) -> None:
    """A change with no status in it (a note or a tag), which still bumps updatedAt."""
    if rng.random() < 0.5:
        order["note"] = rng.choice(("Customer called about delivery", "Address confirmed", "Upgrade to express"))
    elif "reviewed" not in order["tags"]:
        order["tags"] = sorted([*order["tags"], "reviewed"])
    else:
        order["note"] = "Reviewed twice"
