"""ShipStation (API v1): the shipments ShipStation holds for an order, voided labels included.

`GET {base}/shipments?orderNumber=N&includeShipmentItems=true&page=P&pageSize=S` with HTTP Basic auth (API key
and secret) answers {"shipments": [...], "total", "page", "pages"}. ShipStation allows 40 requests a minute per
key and says where we stand in every answer: X-Rate-Limit-Limit, X-Rate-Limit-Remaining and X-Rate-Limit-Reset
(seconds until the window resets); past the limit it answers 429. The client waits for the reset rather than
hitting 429, and stops (RateLimitedError) when the wait would be longer than the caller may block. Retries are
oma.core.retry's policy with ShipStation's numbers: 408, 429 and 5xx, timeouts and connection errors; a 429 waits
Retry-After, else X-Rate-Limit-Reset, else a second; other failures back off 0.5 s doubling to 8 s, half jittered.

ShipStation writes times in US Pacific time without an offset; they are converted with that zone, never read as
UTC. A shipment's `shipmentItems[].lineItemKey` is the selling channel's line id when ShipStation imported the
order from it, so it is tried as our line item id before the SKU.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import requests

from oma.channels.connectors.base import (
    Connector,
    ConnectorAuthError,
    ConnectorError,
    ExternalShipmentRecord,
    LineRef,
    PolledOrder,
    PollStats,
    RateLimitedError,
    tracking_number_problem,
)
from oma.core.outbound import hosts_of, outbound_session
from oma.core.retry import SERVER_ERRORS, Failure, GaveUp, RetryPolicy, header_retry_after, send_with_retries
from tracking.numbers import normalize

if TYPE_CHECKING:
    from oma.channels.models import Channel

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://ssapi.shipstation.com"
SHIPSTATION_API_HOSTS = hosts_of([DEFAULT_BASE_URL])
SHIPSTATION_TIMEZONE = ZoneInfo("America/Los_Angeles")
PAGE_SIZE = 100  # ShipStation allows up to 500; 100 keeps answers small while needing one page almost always
RETRY_STATUSES = frozenset({408, 429}) | SERVER_ERRORS

# ShipStation carrier codes -> ours. Unknown codes are left blank so that detection decides from the number.
CARRIER_CODES: dict[str, str] = {
    "ups": "ups",
    "ups_walleted": "ups",
    "ups_mail_innovations": "ups",
    "fedex": "fedex",
    "fedex_walleted": "fedex",
    "fedex_uk": "fedex",
    "stamps_com": "usps",
    "usps": "usps",
    "endicia": "usps",
    "express_1": "usps",
    "dhl_express": "dhl",
    "dhl_express_worldwide": "dhl",
    "dhl_express_uk": "dhl",
    "dhl_express_au": "dhl",
    "dhl_express_ca": "dhl",
    "dhl_global_mail": "dhl",
    "dhl_ecommerce": "dhl",
    "canada_post": "canada_post",
    "ontrac": "ontrac",
    "purolator_ca": "purolator",
    "royal_mail": "royal_mail",
    "amazon_shipping_us": "amazon",
}


class ShipStationClient:
    """One HTTP session for one ShipStation account: timeouts, rate-limit headers honoured, transient retries.

    The session is oma.core.outbound's (one origin, no redirect elsewhere, ShipStation's own host must resolve to
    public addresses). Errors carry a status code and a fixed phrase, never the answer's body: the channel's base
    URL may point at a host that is not ShipStation, and the error is shown in admin.
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        api_secret: str,
        page_size: int = PAGE_SIZE,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_retries: int = 4,
        max_wait_seconds: float = 65.0,
        stats: PollStats | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self.page_size = page_size
        self.timeout = (connect_timeout, read_timeout)
        self.max_retries = max_retries
        self.max_wait_seconds = max_wait_seconds
        self.stats = stats or PollStats()
        self._sleep = sleep
        self._clock = clock
        self.session = outbound_session(base_url=self.base_url, own_hosts=SHIPSTATION_API_HOSTS)
        self.session.auth = (api_key, api_secret)
        self.session.headers.update({"Accept": "application/json", "User-Agent": "OMA/0.1 (+channels)"})
        # What the last answer said about the rate-limit window.
        self.rate_limit_remaining: int | None = None
        self._window_resets_at: float | None = None

    def close(self) -> None:
        self.session.close()

    # --- API ----------------------------------------------------------------------------------------------

    def list_order_shipments(self, order_number: str) -> list[dict[str, Any]]:
        """Every shipment of the order with this number (all pages), voided ones included."""
        shipments: list[dict[str, Any]] = []
        page = 1
        while True:
            data = self._get(
                "/shipments",
                {
                    "orderNumber": order_number,
                    "includeShipmentItems": "true",
                    "page": str(page),
                    "pageSize": str(self.page_size),
                },
            )
            batch = data.get("shipments")
            if not isinstance(batch, list):
                raise ConnectorError("ShipStation answered without a shipments list", transient=True)
            shipments.extend(item for item in batch if isinstance(item, dict))
            pages = _int(data.get("pages")) or 0
            if page >= pages or not batch:
                break
            page += 1
        # The orderNumber filter is not an exact match on every account: keep only this order's shipments.
        wanted = order_number.strip().lower()
        return [s for s in shipments if str(s.get("orderNumber") or "").strip().lower() == wanted]

    # --- transport ----------------------------------------------------------------------------------------

    def _wait_for_window(self) -> None:
        """Before a request: if the last answer said the window is used up, wait for it to reset."""
        if self.rate_limit_remaining is None or self.rate_limit_remaining > 0 or self._window_resets_at is None:
            return
        wait = self._window_resets_at - self._clock()
        if wait <= 0:
            return
        if wait > self.max_wait_seconds:
            raise RateLimitedError(f"ShipStation rate limit: window resets in {wait:.0f} s", retry_after=wait)
        self.stats.waited_seconds += wait
        self._sleep(wait)
        self.rate_limit_remaining = None

    def _note_rate_limit(self, response: requests.Response) -> None:
        remaining = _int(response.headers.get("X-Rate-Limit-Remaining"))
        reset = _float(response.headers.get("X-Rate-Limit-Reset"))
        if remaining is not None:
            self.rate_limit_remaining = remaining
        if reset is not None:
            self._window_resets_at = self._clock() + reset

    def _retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_retries + 1,
            backoff_base=0.5,
            backoff_cap=8.0,
            jitter_floor=0.5,
            max_retry_after=self.max_wait_seconds,
            retry_statuses=RETRY_STATUSES,
        )

    def _count_failure(self, failure: Failure) -> None:
        if failure.status == 429:
            self.stats.rate_limited += 1
            if not failure.gives_up:
                self.stats.waited_seconds += failure.delay

    def _get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        url = self.base_url + path

        def attempt() -> requests.Response:
            self._wait_for_window()
            self.stats.requests += 1
            response = self.session.get(url, params=params, timeout=self.timeout, allow_redirects=False)
            self._note_rate_limit(response)
            return response

        try:
            response = send_with_retries(
                attempt, policy=self._retry_policy(), idempotent=True, sleep=self._sleep,
                label=f"ShipStation GET {path}", read_retry_after=_retry_after, on_failure=self._count_failure,
            )
        except GaveUp as exc:
            failure = exc.failure
            if failure.response is None:
                raise ConnectorError(f"ShipStation unreachable: {failure.error}", transient=True) from failure.error
            if failure.status == 429:
                raise RateLimitedError(
                    f"ShipStation rate limit (429), retry in {failure.delay:.0f} s", retry_after=failure.delay
                ) from None
            raise ConnectorError(f"ShipStation answered {failure.status}", transient=True) from None
        except requests.RequestException as exc:  # refused by OMA (oma.core.outbound) or a malformed request
            raise ConnectorError(f"ShipStation request refused: {exc}") from exc
        status = response.status_code
        if status in (401, 403):
            raise ConnectorAuthError(f"ShipStation refused the API key and secret ({status})")
        if 300 <= status < 400:
            raise ConnectorError(f"ShipStation answered {status} (a redirect, not followed)")
        if status != 200:
            raise ConnectorError(f"ShipStation answered {status}")
        try:
            data = response.json()
        except ValueError as exc:
            raise ConnectorError("ShipStation answered with something that is not JSON", transient=True) from exc
        if not isinstance(data, dict):
            raise ConnectorError("ShipStation answered with JSON that is not an object", transient=True)
        return data


def _retry_after(response: requests.Response) -> float | None:
    """A 429 waits Retry-After, else the window's X-Rate-Limit-Reset, else a second; other failures take the
    policy's jittered backoff (None)."""
    if response.status_code != 429:
        return None
    return header_retry_after(response) or _float(response.headers.get("X-Rate-Limit-Reset")) or 1.0


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return float(str(value).strip())
    except (TypeError, ValueError):
        return None


def shipstation_time(value: Any) -> datetime | None:
    """'2024-05-01T06:51:33.6270000' (Pacific, no offset) -> an aware UTC datetime."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if "." in text:  # .NET writes seven fractional digits; Python takes six
        head, _, fraction = text.partition(".")
        digits = "".join(ch for ch in fraction if ch.isdigit())[:6]
        text = f"{head}.{digits}" if digits else head
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=SHIPSTATION_TIMEZONE)
    return parsed.astimezone(UTC)


def record_from_shipment(shipment: dict[str, Any]) -> ExternalShipmentRecord | None:
    """Our record of one ShipStation shipment; None for what carries no outbound tracking (returns, no number)."""
    if shipment.get("isReturnLabel"):
        return None
    number = normalize(str(shipment.get("trackingNumber") or ""))
    if tracking_number_problem(number):
        return None
    lines = []
    for item in shipment.get("shipmentItems") or ():
        if not isinstance(item, dict) or item.get("adjustment"):
            continue
        quantity = _int(item.get("quantity"))
        if quantity is None or quantity < 1:
            continue
        lines.append(
            LineRef(
                line_item_id=str(item.get("lineItemKey") or "")[:64],
                sku=str(item.get("sku") or "")[:128],
                quantity=quantity,
            )
        )
    voided = bool(shipment.get("voided"))
    return ExternalShipmentRecord(
        external_order_id=str(shipment.get("orderNumber") or "").strip(),
        tracking_number=number,
        carrier=CARRIER_CODES.get(str(shipment.get("carrierCode") or "").lower(), ""),
        lines=tuple(lines),
        shipped_at=shipstation_time(shipment.get("createDate")),
        status="voided" if voided else "shipped",
        voided=voided,
        external_id=str(shipment.get("shipmentId") or ""),
        source_ref=f"ShipStation shipment {shipment.get('shipmentId')}",
        raw={k: shipment.get(k) for k in ("shipmentId", "orderId", "orderNumber", "carrierCode", "serviceCode",
                                          "shipDate", "voidDate", "voided")},
    )


class ShipStationConnector(Connector):
    kind = "shipstation"
    label = "ShipStation"
    polls = True
    needs_api_credentials = True
    default_base_url = DEFAULT_BASE_URL

    def client_for(self, channel: Channel, *, stats: PollStats | None = None, **options: Any) -> ShipStationClient:
        return ShipStationClient(
            base_url=channel.base_url or DEFAULT_BASE_URL,
            api_key=channel.api_key or "",
            api_secret=channel.api_secret or "",
            stats=stats,
            **options,
        )

    def fetch_shipments(
        self,
        channel: Channel,
        orders: Sequence[PolledOrder],
        *,
        stats: PollStats,
        deadline: float | None = None,
        client: ShipStationClient | None = None,
    ) -> Iterator[tuple[PolledOrder, list[ExternalShipmentRecord]]]:
        own_client = client is None
        client = client or self.client_for(channel, stats=stats)
        try:
            for order in orders:
                if deadline is not None and time.monotonic() >= deadline:
                    return
                shipments = client.list_order_shipments(order.external_order_id)
                records = [r for r in (record_from_shipment(s) for s in shipments) if r is not None]
                yield order, records
        finally:
            if own_client:
                client.close()


CONNECTOR = ShipStationConnector()
