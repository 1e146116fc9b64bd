"""A ShipStation API v1 sandbox: a real HTTP server (stdlib ThreadingHTTPServer) for make run, tests and benches.

What it serves, as ShipStation does:
- `GET /shipments?orderNumber=&includeShipmentItems=&page=&pageSize=` (also `trackingNumber=`): HTTP Basic auth
  with the API key and secret (401 otherwise); the orderNumber filter matches the start of the number,
  case-insensitively, as ShipStation's does; pages of `pageSize` (default 100, at most 500) with `total`, `page`,
  `pages`; voided shipments are listed with `voided: true` and a `voidDate`.
- a fixed-window rate limit per API key (ShipStation: 40 requests a minute) reported on every answer in
  X-Rate-Limit-Limit, X-Rate-Limit-Remaining and X-Rate-Limit-Reset (seconds until the window resets); past it,
  429 with the same headers.
- times written in US Pacific time without an offset, .NET style ("2024-05-01T06:51:33.6270000").

Control endpoints for scripts (no auth; the sandbox binds to 127.0.0.1): `POST /_sandbox/shipments` (one
shipment or a list: {"orderNumber", "trackingNumber", "carrierCode"?, "items"?: [{"sku", "quantity",
"lineItemKey"?}], "voided"?}), `POST /_sandbox/shipments/<id>/void`, `GET /_sandbox/stats`, `POST /_sandbox/reset`.
"""

from __future__ import annotations

import base64
import json
import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

PACIFIC = ZoneInfo("America/Los_Angeles")
MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 100


def pacific_text(moment: datetime) -> str:
    """ShipStation's way of writing a time: Pacific wall-clock time, seven fractional digits, no offset."""
    local = moment.astimezone(PACIFIC).replace(tzinfo=None)
    return local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond:06d}0"


@dataclass
class SandboxStats:
    requests: int = 0
    rate_limited: int = 0
    unauthorized: int = 0
    by_path: dict[str, int] = field(default_factory=dict)


class ShipStationSandbox:
    """The sandbox's state and server. Use as a context manager, or start()/stop()."""

    def __init__(
        self,
        *,
        api_key: str = "sandbox-key",
        api_secret: str = "sandbox-secret",  # noqa: S107 (the sandbox's well-known demo credentials)
        rate_limit: int = 40,
        rate_window_seconds: float = 60.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.api_key = api_key
        self.api_secret = api_secret
        self.rate_limit = rate_limit
        self.rate_window_seconds = rate_window_seconds
        self.stats = SandboxStats()
        self._lock = threading.Lock()
        self._shipments: list[dict[str, Any]] = []
        self._next_shipment_id = 100_000_001
        self._next_order_id = 50_000_001
        self._order_ids: dict[str, int] = {}
        self._window_started: float | None = None
        self._window_used = 0
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host if isinstance(host, str) else host.decode()}:{port}"

    def start(self) -> ShipStationSandbox:
        self._thread = threading.Thread(target=self._server.serve_forever, name="shipstation-sandbox", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ShipStationSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- state --------------------------------------------------------------------------------------------

    def add_shipment(
        self,
        *,
        order_number: str,
        tracking_number: str,
        carrier_code: str = "ups",
        service_code: str = "ups_ground",
        items: Iterable[dict[str, Any]] = (),
        voided: bool = False,
        created_at: datetime | None = None,
        is_return_label: bool = False,
    ) -> dict[str, Any]:
        """Add one shipment in ShipStation's shape; `items`: [{"sku", "quantity", "lineItemKey"?, "name"?}]."""
        created_at = created_at or datetime.now(tz=UTC)
        with self._lock:
            shipment_id = self._next_shipment_id
            self._next_shipment_id += 1
            order_id = self._order_ids.setdefault(order_number, self._next_order_id)
            if order_id == self._next_order_id:
                self._next_order_id += 1
            shipment = {
                "shipmentId": shipment_id,
                "orderId": order_id,
                "orderKey": f"key-{order_id}",
                "userId": "00000000-0000-0000-0000-000000000000",
                "customerEmail": None,
                "orderNumber": order_number,
                "createDate": pacific_text(created_at),
                "shipDate": created_at.astimezone(PACIFIC).date().isoformat(),
                "shipmentCost": 7.85,
                "insuranceCost": 0,
                "trackingNumber": tracking_number,
                "isReturnLabel": is_return_label,
                "batchNumber": None,
                "carrierCode": carrier_code,
                "serviceCode": service_code,
                "packageCode": "package",
                "confirmation": "none",
                "warehouseId": 1001,
                "voided": False,
                "voidDate": None,
                "marketplaceNotified": False,
                "notifyErrorMessage": None,
                "shipTo": None,
                "weight": {"value": 16, "units": "ounces", "WeightUnits": 1},
                "dimensions": None,
                "insuranceOptions": {"provider": None, "insureShipment": False, "insuredValue": 0},
                "advancedOptions": {"billToParty": None},
                "shipmentItems": [
                    {
                        "orderItemId": shipment_id * 10 + index,
                        "lineItemKey": item.get("lineItemKey"),
                        "sku": item.get("sku"),
                        "name": item.get("name") or item.get("sku"),
                        "imageUrl": None,
                        "weight": None,
                        "quantity": int(item.get("quantity", 1)),
                        "unitPrice": 0,
                        "taxAmount": None,
                        "shippingAmount": None,
                        "warehouseLocation": None,
                        "options": [],
                        "productId": None,
                        "fulfillmentSku": None,
                        "adjustment": False,
                        "upc": None,
                    }
                    for index, item in enumerate(items)
                ],
                "labelData": None,
                "formData": None,
            }
            self._shipments.append(shipment)
        if voided:
            self.void(shipment_id)
        return shipment

    def void(self, shipment_id: int, *, at: datetime | None = None) -> bool:
        with self._lock:
            for shipment in self._shipments:
                if shipment["shipmentId"] == shipment_id:
                    shipment["voided"] = True
                    shipment["voidDate"] = pacific_text(at or datetime.now(tz=UTC))
                    return True
        return False

    def reset(self) -> None:
        with self._lock:
            self._shipments.clear()
            self._order_ids.clear()
            self.stats = SandboxStats()
            self._window_started = None
            self._window_used = 0

    def shipments(self, *, voided: bool | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(s) for s in self._shipments if voided is None or s["voided"] == voided]

    # --- the API ------------------------------------------------------------------------------------------

    def _authorized(self, header: str) -> bool:
        if not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return False
        return decoded == f"{self.api_key}:{self.api_secret}"

    def _take_rate_token(self) -> tuple[bool, int, int]:
        """(allowed, remaining, seconds until reset) for one request in the current fixed window."""
        now = time.monotonic()
        with self._lock:
            if self._window_started is None or now - self._window_started >= self.rate_window_seconds:
                self._window_started = now
                self._window_used = 0
            reset = max(0, math.ceil(self._window_started + self.rate_window_seconds - now))
            if self._window_used >= self.rate_limit:
                self.stats.rate_limited += 1
                return False, 0, reset
            self._window_used += 1
            return True, self.rate_limit - self._window_used, reset

    def list_shipments(self, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        def first(name: str) -> str:
            for key, values in query.items():
                if key.lower() == name.lower() and values:
                    return values[0]
            return ""

        try:
            page = int(first("page") or 1)
            page_size = int(first("pageSize") or DEFAULT_PAGE_SIZE)
        except ValueError:
            return 400, {"Message": "The request is invalid.", "ExceptionMessage": "page and pageSize are integers"}
        if page < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
            return 400, {"Message": "The request is invalid.", "ExceptionMessage": "page >= 1, 1 <= pageSize <= 500"}
        order_number = first("orderNumber").strip().lower()
        tracking_number = first("trackingNumber").strip()
        include_items = first("includeShipmentItems").lower() == "true"
        with self._lock:
            matching = [
                s for s in self._shipments
                if (not order_number or str(s["orderNumber"]).lower().startswith(order_number))
                and (not tracking_number or s["trackingNumber"] == tracking_number)
            ]
            total = len(matching)
            chunk = [dict(s) for s in matching[(page - 1) * page_size: page * page_size]]
        if not include_items:
            for shipment in chunk:
                shipment["shipmentItems"] = None
        pages = math.ceil(total / page_size) if total else 0
        return 200, {"shipments": chunk, "total": total, "page": page, "pages": pages}

    def control(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if method == "GET" and path == "/_sandbox/stats":
            stats = self.stats
            return 200, {"requests": stats.requests, "rateLimited": stats.rate_limited,
                         "unauthorized": stats.unauthorized, "shipments": len(self._shipments)}
        if method == "POST" and path == "/_sandbox/reset":
            self.reset()
            return 200, {"status": "reset"}
        if method == "POST" and path == "/_sandbox/shipments":
            items = body if isinstance(body, list) else [body]
            created = []
            for item in items:
                if not isinstance(item, dict) or not item.get("orderNumber") or not item.get("trackingNumber"):
                    return 400, {"error": "each shipment needs orderNumber and trackingNumber"}
                created.append(
                    self.add_shipment(
                        order_number=str(item["orderNumber"]),
                        tracking_number=str(item["trackingNumber"]),
                        carrier_code=str(item.get("carrierCode") or "ups"),
                        items=item.get("items") or (),
                        voided=bool(item.get("voided")),
                    )
                )
            return 201, created if isinstance(body, list) else created[0]
        if method == "POST" and path.startswith("/_sandbox/shipments/") and path.endswith("/void"):
            try:
                shipment_id = int(path.split("/")[3])
            except (IndexError, ValueError):
                return 404, {"error": "no such shipment"}
            return (200, {"status": "voided"}) if self.void(shipment_id) else (404, {"error": "no such shipment"})
        return 404, {"error": "not found"}


def _handler_for(sandbox: ShipStationSandbox) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "ShipStationSandbox/1.0"
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: without TCP_NODELAY the body waits for the client's delayed ACK
        # (40 ms a request on Linux) on a kept-alive connection.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and benches make many requests
            return

        def _send(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
            payload = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                return json.loads(raw) if raw else None
            except ValueError:
                return None

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path.startswith("/_sandbox/"):
                self._send(*sandbox.control("GET", parts.path, None))
                return
            sandbox.stats.requests += 1
            sandbox.stats.by_path[parts.path] = sandbox.stats.by_path.get(parts.path, 0) + 1
            if not sandbox._authorized(self.headers.get("Authorization", "")):
                sandbox.stats.unauthorized += 1
                self._send(401, {"Message": "Authorization has been denied for this request."},
                           {"WWW-Authenticate": 'Basic realm="ShipStation"'})
                return
            allowed, remaining, reset = sandbox._take_rate_token()
            headers = {
                "X-Rate-Limit-Limit": str(sandbox.rate_limit),
                "X-Rate-Limit-Remaining": str(remaining),
                "X-Rate-Limit-Reset": str(reset),
            }
            if not allowed:
                self._send(429, {"Message": "Too Many Requests"}, {**headers, "Retry-After": str(reset)})
                return
            if parts.path.rstrip("/").lower() != "/shipments":
                self._send(404, {"Message": "No HTTP resource was found that matches the request URI."}, headers)
                return
            status, data = sandbox.list_shipments(parse_qs(parts.query))
            self._send(status, data, headers)

        def do_POST(self) -> None:
            parts = urlsplit(self.path)
            self._send(*sandbox.control("POST", parts.path, self._body()))

    return Handler


def demo_tracking_number(seed: int) -> str:
    """A UPS-format number (1Z + shipper + service + serial + check digit) that passes UPS's check digit."""
    body = f"1Z{seed % 999999:06d}03{seed * 7919 % 10_000_000:07d}"
    digits = []
    for char in body[2:]:
        digits.append(int(char) if char.isdigit() else (ord(char) - 63) % 10)
    odd = sum(digits[0::2])
    even = sum(digits[1::2]) * 2
    check = (10 - (odd + even) % 10) % 10
    return f"{body}{check}"


@dataclass(frozen=True)
class DemoOrder:
    order_number: str
    items: list[dict[str, Any]]  # [{"sku", "quantity", "lineItemKey"}]


def seed_demo(sandbox: ShipStationSandbox, orders: Iterable[DemoOrder], *, seed: int = 1) -> dict[str, int]:
    """Give most orders a shipment, some split in two parcels, some a voided label and its reissue."""
    counts = {"orders": 0, "shipments": 0, "voided": 0}
    number = seed * 100_000
    for index, order in enumerate(orders):
        counts["orders"] += 1
        kind = index % 10
        if kind >= 8 or not order.items:  # 20 %: not shipped yet
            continue
        parcels = [order.items]
        if kind in (2, 3) and (len(order.items) > 1 or order.items[0]["quantity"] > 1):
            if len(order.items) > 1:
                parcels = [order.items[:1], order.items[1:]]
            else:  # one line, several units: two parcels each with part of the quantity
                item = order.items[0]
                half = item["quantity"] // 2
                parcels = [[{**item, "quantity": half}], [{**item, "quantity": item["quantity"] - half}]]
        if kind == 4:  # a voided label, then the reissued one
            number += 1
            sandbox.add_shipment(order_number=order.order_number, tracking_number=demo_tracking_number(number),
                                 items=order.items, voided=True)
            counts["voided"] += 1
            counts["shipments"] += 1
        for parcel in parcels:
            number += 1
            sandbox.add_shipment(order_number=order.order_number, tracking_number=demo_tracking_number(number),
                                 items=parcel)
            counts["shipments"] += 1
    return counts

