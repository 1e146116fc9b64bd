"""GenstoreClient against a real HTTP server on 127.0.0.1, scripted per test (no mocks of our own code)."""

from __future__ import annotations

import socket
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from oma.core.ratelimit import LocalTokenBucket
from oma.genstore.client import GenstoreClient, OrderPage
from oma.genstore.errors import (
    GenstoreAuthError,
    GenstoreClientError,
    GenstoreNotFound,
    GenstoreRateLimited,
    GenstoreRecordError,
    GenstoreResponseError,
    GenstoreServerError,
    GenstoreTransportError,
    GenstoreUnprocessable,
)
from oma.genstore.records import RateLimitState
from tests.genstore.conftest import Reply, ScriptedServer, SeenRequest

API = "/api/202412"


class SpyLimiter(LocalTokenBucket):
    """A real LocalTokenBucket that also records what the client told it."""

    def __init__(self, clock) -> None:
        super().__init__(clock=clock.now, sleep=clock.sleep)
        self.acquired = 0
        self.observed: list[tuple[int, int]] = []
        self.penalties: list[float] = []

    def acquire(self, key, **kwargs):
        self.acquired += 1
        return super().acquire(key, **kwargs)

    def observe(self, key, *, used, capacity):
        self.observed.append((used, capacity))
        super().observe(key, used=used, capacity=capacity)

    def penalize(self, key, *, seconds):
        self.penalties.append(seconds)
        super().penalize(key, seconds=seconds)


class Sleeps(list):
    """The client's sleep: records backoff sleeps and moves the shared fake clock."""

    def __init__(self, clock) -> None:
        super().__init__()
        self.clock = clock

    def __call__(self, seconds: float) -> None:
        self.append(seconds)
        self.clock.sleep(seconds)


@pytest.fixture
def limiter(fake_clock):
    return SpyLimiter(fake_clock)


@pytest.fixture
def sleeps(fake_clock):
    return Sleeps(fake_clock)


@pytest.fixture
def make_client(server, limiter, sleeps):
    clients = []

    def make(**overrides) -> GenstoreClient:
        options = {
            "base_url": server.base_url,
            "api_version": "202412",
            "access_token": "shpat-secret-token",
            "limiter": limiter,
            "limiter_key": "store:1",
            "bucket_capacity": 40,
            "bucket_refill_per_second": 2.0,
            "connect_timeout": 2,
            "read_timeout": 2,
            "max_retries": 3,
            "sleep": sleeps,
        }
        options.update(overrides)
        client = GenstoreClient(**options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client) -> GenstoreClient:
    return make_client()


def order(order_id: str, **fields) -> dict:
    return {"orderId": order_id, "id": f"9{order_id}", "financialStatus": "paid", **fields}


def fulfillment(fulfill_id: str = "F1", **fields) -> dict:
    return {
        "fulfillId": fulfill_id,
        "orderId": "1001",
        "status": "success",
        "trackingNumber": "1Z999",
        "lineItems": [{"id": "77001", "quantity": 1}],
        **fields,
    }


# --- basics ---------------------------------------------------------------------------------------------------------


def test_shop_info_sends_token_and_json_headers(server, client, limiter):
    server.script(
        f"GET {API}/shops/info",
        Reply(
            200,
            {"shop": {"shopId": 7, "shopName": "Demo", "domain": "demo.genmystore.com"}},
            headers={"X-Genstore-Shop-Api-Rate-Limit": "39/40"},
        ),
    )
    shop = client.shop_info()
    assert (shop.id, shop.name, shop.domain) == ("7", "Demo", "demo.genmystore.com")
    (request,) = server.requests
    assert request.headers["x-genstore-access-token"] == "shpat-secret-token"
    assert request.headers["accept"] == "application/json"
    assert limiter.acquired == 1
    assert limiter.observed == [(39, 40)]
    assert client.rate_limit == RateLimitState(used=39, capacity=40)
    assert client.stats.requests == 1 and client.stats.retries == 0


def test_token_never_shown_in_repr(client):
    assert "shpat-secret-token" not in repr(client)


def test_every_request_waits_for_a_token_from_the_shared_bucket(server, make_client, fake_clock, sleeps):
    server.script(f"GET {API}/orders/count", Reply(200, {"count": 3}))
    client = make_client(bucket_capacity=2, bucket_refill_per_second=1)
    for _ in range(4):
        client.count_orders()
    assert sleeps == []  # no backoff: only the bucket made us wait
    assert client.stats.limiter_wait_seconds == pytest.approx(2.0)  # two beyond the burst, one second each


def test_limiter_wait_too_long_raises_rate_limited(server, make_client, limiter):
    server.script(f"GET {API}/orders/count", Reply(200, {"count": 1}))
    client = make_client(limiter_timeout=5)
    limiter.penalize("store:1", seconds=600)  # another worker got a long Retry-After
    with pytest.raises(GenstoreRateLimited) as info:
        client.count_orders()
    assert info.value.transient is True
    assert info.value.retry_after == pytest.approx(600)
    assert server.requests == []


def test_count_orders_filters_and_quoted_count(server, client):
    server.script(f"GET {API}/orders/count", Reply(200, {"count": "12"}))
    assert client.count_orders(financial_status="paid", fulfillmentStatus="unfulfilled", since_id=None) == 12
    (request,) = server.requests
    assert request.query == {"financialStatus": ["paid"], "fulfillmentStatus": ["unfulfilled"]}


def test_get_order_unwraps_envelope(server, client):
    server.script(f"GET {API}/orders/1001", Reply(200, {"order": order("1001", totalPrice="5.00")}))
    record = client.get_order("1001")
    assert record.order_id == "1001" and record.total_price == Decimal("5.00")


def test_get_order_quotes_the_id_in_the_path(server, client):
    server.script(f"GET {API}/orders/a%2Fb", Reply(200, {"order": order("a/b")}))
    assert client.get_order("a/b").order_id == "a/b"


@pytest.mark.parametrize(
    "reply",
    [
        Reply(200, raw=b"<html>maintenance</html>"),
        Reply(200, {"orders": []}),  # wrong root key for a single order
        Reply(200, {"order": "1001"}),
    ],
)
def test_get_order_bad_2xx_body_is_a_response_error(server, client, reply):
    server.script(f"GET {API}/orders/1001", reply)
    with pytest.raises(GenstoreResponseError) as info:
        client.get_order("1001")
    assert info.value.transient is False
    assert len(server.requests) == 1


def test_get_order_without_any_id_is_a_record_error(server, client):
    server.script(f"GET {API}/orders/1001", Reply(200, {"order": {"name": "#1001"}}))
    with pytest.raises(GenstoreRecordError):
        client.get_order("1001")


# --- pagination -----------------------------------------------------------------------------------------------------


def test_pagination_follows_link_exactly_and_filters_only_the_first_page(server, client):
    base = server.base_url

    def orders(request: SeenRequest) -> Reply:
        token = request.query.get("pageToken", [None])[0]
        if token is None:
            return Reply(
                200,
                {"orders": [order("1"), order("2")]},
                # the documented sloppiness: whole value quoted, spaces inside < >, unquoted rel
                headers={"Link": f'"< {base}{API}/orders?pageToken=p2&limit=250 >; rel=next"'},
            )
        if token == "p2":
            return Reply(
                200,
                {"orders": [order("3"), {"name": "no ids at all"}]},
                headers={
                    "Link": f"<{base}{API}/orders?pageToken=p1&limit=250>; rel=previous, "
                    f"<{base}{API}/orders?pageToken=p3&limit=250>; rel=next"
                },
            )
        return Reply(
            200, {"orders": order("4")}, headers={"Link": f"<{base}{API}/orders?pageToken=p2&limit=250>; rel=previous"}
        )

    server.handle(f"GET {API}/orders", orders)
    since = datetime(2024, 12, 1, 18, 0, tzinfo=timezone(timedelta(hours=8)))
    pages = client.iter_order_pages(updated_at_min=since, financial_status="paid")

    first = next(pages)
    assert len(server.requests) == 1  # lazy: the next page is fetched only when asked for
    assert isinstance(first, OrderPage)
    rest = list(pages)
    all_pages = [first, *rest]

    assert [page.page_number for page in all_pages] == [1, 2, 3]
    assert [[r.order_id for r in page.records] for page in all_pages] == [["1", "2"], ["3"], ["4"]]
    assert all_pages[0].errors == [] and all_pages[2].errors == []
    assert len(all_pages[1].errors) == 1 and "page 2, order 2" in all_pages[1].errors[0]

    first_query, second_query, third_query = (r.query for r in server.requests)
    assert first_query == {"limit": ["250"], "financialStatus": ["paid"], "updatedAtMin": ["2024-12-01T10:00:00Z"]}
    assert second_query == {"pageToken": ["p2"], "limit": ["250"]}  # exactly the Link URL, nothing added
    assert third_query == {"pageToken": ["p3"], "limit": ["250"]}


def test_pagination_limit_is_capped_at_250(server, client):
    server.script(f"GET {API}/orders", Reply(200, {"orders": []}))
    pages = list(client.iter_order_pages(limit=1000))
    assert len(pages) == 1 and pages[0].records == []
    assert server.requests[0].query == {"limit": ["250"]}


def test_pagination_link_on_a_foreign_host_is_followed_on_our_host(server, client):
    server.handle(
        f"GET {API}/orders",
        lambda request: (
            Reply(200, {"orders": [order("2")]})
            if request.query.get("pageToken")
            else Reply(
                200,
                {"orders": [order("1")]},
                headers={"Link": "<https://shop1.genmystore/api/202412/orders?pageToken=p2&limit=50>; rel=next"},
            )
        ),
    )
    records = [r.order_id for page in client.iter_order_pages(limit=50) for r in page.records]
    assert records == ["1", "2"]
    assert server.requests[1].query == {"pageToken": ["p2"], "limit": ["50"]}


def test_pagination_that_loops_is_stopped(server, client):
    base = server.base_url
    server.script(
        f"GET {API}/orders",
        Reply(200, {"orders": [order("1")]}, headers={"Link": f"<{base}{API}/orders?pageToken=same>; rel=next"}),
    )
    with pytest.raises(GenstoreResponseError, match="repeats"):
        list(client.iter_order_pages())
    assert len(server.requests) == 2


def test_pagination_retries_a_failing_page_with_the_same_url(server, client):
    base = server.base_url
    calls = {"p2": 0}

    def orders(request: SeenRequest) -> Reply:
        if not request.query.get("pageToken"):
            return Reply(
                200, {"orders": [order("1")]}, headers={"Link": f"<{base}{API}/orders?pageToken=p2>; rel=next"}
            )
        calls["p2"] += 1
        return Reply(503, {"error": "busy"}) if calls["p2"] == 1 else Reply(200, {"orders": [order("2")]})

    server.handle(f"GET {API}/orders", orders)
    assert [r.order_id for page in client.iter_order_pages() for r in page.records] == ["1", "2"]
    assert [r.query for r in server.requests[1:]] == [{"pageToken": ["p2"]}] * 2


# --- retries ------------------------------------------------------------------------------------------------------


def test_429_with_retry_after_is_honoured_and_penalizes_the_shared_bucket(server, client, sleeps, limiter):
    server.script(
        f"GET {API}/orders/1001",
        Reply(
            429, {"error": "Too many requests"}, headers={"Retry-After": "2", "X-Genstore-Shop-Api-Rate-Limit": "40/40"}
        ),
        Reply(200, {"order": order("1001")}),
    )
    assert client.get_order("1001").order_id == "1001"
    assert sleeps == [2.0]
    assert limiter.penalties == [2.0]
    assert (40, 40) in limiter.observed
    assert (client.stats.rate_limited, client.stats.retries, client.stats.requests) == (1, 1, 2)


def test_429_without_retry_after_backs_off_with_jitter(server, make_client, sleeps, limiter):
    client = make_client(backoff_base=0.5)
    server.script(
        f"GET {API}/orders/1001",
        Reply(429, {"error": "Too many requests"}),
        Reply(429, {"error": "Too many requests"}),
        Reply(200, {"order": order("1001")}),
    )
    client.get_order("1001")
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.5 and 0 <= sleeps[1] <= 1.0  # full jitter: uniform in [0, base * 2^attempt]
    assert limiter.penalties == sleeps  # the whole bucket waits as long as we do
    assert client.stats.rate_limited == 2


def test_429_until_retries_run_out(server, make_client):
    client = make_client(max_retries=2)
    server.script(f"GET {API}/orders/1001", Reply(429, {"error": "slow down"}, headers={"Retry-After": "1"}))
    with pytest.raises(GenstoreRateLimited) as info:
        client.get_order("1001")
    assert info.value.transient is True
    assert info.value.status == 429 and info.value.error_text == "slow down"
    assert len(server.requests) == 3
    assert client.stats.rate_limited == 3


def test_long_retry_after_is_handed_to_the_caller_instead_of_slept(server, client, sleeps, limiter):
    server.script(f"GET {API}/orders/1001", Reply(429, {"error": "slow down"}, headers={"Retry-After": "3600"}))
    with pytest.raises(GenstoreRateLimited) as info:
        client.get_order("1001")
    assert info.value.retry_after == 3600
    assert sleeps == []
    assert limiter.penalties == [3600]  # everyone else holds back too
    assert len(server.requests) == 1


def test_503_then_success(server, client, sleeps):
    server.script(f"GET {API}/orders/1001", Reply(503, {"error": "unavailable"}), Reply(200, {"order": order("1001")}))
    assert client.get_order("1001").order_id == "1001"
    assert len(sleeps) == 1
    assert (client.stats.server_errors, client.stats.retries, client.stats.requests) == (1, 1, 2)


def test_5xx_until_retries_run_out(server, make_client):
    client = make_client(max_retries=2)
    server.script(f"GET {API}/orders/1001", Reply(500, {"error": "boom"}))
    with pytest.raises(GenstoreServerError) as info:
        client.get_order("1001")
    assert info.value.transient is True and info.value.ambiguous is False
    assert info.value.status == 500 and info.value.error_text == "boom"
    assert len(server.requests) == 3


def test_read_timeout_is_retried(server, make_client):
    client = make_client(read_timeout=0.2)
    server.script(
        f"GET {API}/orders/1001", Reply(200, {"order": order("1001")}, delay=1.0), Reply(200, {"order": order("1001")})
    )
    assert client.get_order("1001").order_id == "1001"
    assert client.stats.transport_errors == 1 and client.stats.retries == 1


def test_read_timeouts_until_retries_run_out(server, make_client):
    client = make_client(read_timeout=0.2, max_retries=1)
    server.script(f"GET {API}/orders/1001", Reply(200, {"order": order("1001")}, delay=1.0))
    with pytest.raises(GenstoreTransportError) as info:
        client.get_order("1001")
    assert info.value.transient is True
    assert len(server.requests) == 2


def test_connection_refused_is_retried_for_reads(make_client, sleeps):
    port = _free_port()
    client = make_client(base_url=f"http://127.0.0.1:{port}", max_retries=2)
    with pytest.raises(GenstoreTransportError):
        client.get_order("1001")
    assert client.stats.requests == 3 and len(sleeps) == 2


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, GenstoreUnprocessable),
        (422, GenstoreUnprocessable),
        (401, GenstoreAuthError),
        (403, GenstoreAuthError),
        (404, GenstoreNotFound),
        (409, GenstoreClientError),
        (405, GenstoreClientError),
    ],
)
def test_other_4xx_are_not_retried_and_carry_the_error_text(server, client, sleeps, status, error_class):
    server.script(f"GET {API}/orders/1001", Reply(status, {"error": f"reason {status}"}))
    with pytest.raises(error_class) as info:
        client.get_order("1001")
    assert info.value.transient is False
    assert info.value.status == status
    assert info.value.error_text == f"reason {status}"
    assert f"reason {status}" in str(info.value)
    assert len(server.requests) == 1 and sleeps == []


def test_422_on_update_tracking_is_not_retried(server, client):
    server.script(
        f"PUT {API}/fulfillments/F1/update_tracking",
        Reply(422, {"error": "Quantity exceeds fulfillable quantity"}),
    )
    with pytest.raises(GenstoreUnprocessable) as info:
        client.update_tracking(
            "F1",
            tracking_number="1Z",
            tracking_company="UPS",
            tracking_url=None,
            shipment_status=None,
            notify_customer=False,
        )
    assert info.value.error_text == "Quantity exceeds fulfillable quantity"
    assert len(server.requests) == 1


def test_error_body_that_is_not_json_gives_the_status_only(server, client):
    # The base URL may point at a host that is not Genstore: its raw answer never reaches an error text.
    server.script(f"GET {API}/orders/1001", Reply(403, raw=b"Forbidden by proxy"))
    with pytest.raises(GenstoreAuthError) as info:
        client.get_order("1001")
    assert info.value.error_text is None and info.value.status == 403
    assert "403" in str(info.value) and "Forbidden by proxy" not in str(info.value)


def test_redirects_are_not_followed(server, client):
    server.script(f"GET {API}/orders/1001", Reply(302, {}, headers={"Location": "https://elsewhere.example/steal"}))
    with pytest.raises(GenstoreClientError, match="redirect"):
        client.get_order("1001")
    assert len(server.requests) == 1


# --- writes and the exactly-once rule -----------------------------------------------------------------------------


def create(client: GenstoreClient, **overrides):
    options = {
        "order_id": "1001",
        "line_items": [("77001", 1), (77002, 2)],
        "tracking_number": "1Z999",
        "tracking_company": "UPS",
        "tracking_url": "https://www.ups.com/track?tracknum=1Z999",
        "notify_customer": False,
    }
    options.update(overrides)
    return client.create_fulfillment(**options)


def test_create_fulfillment_body_and_result(server, client):
    server.script(f"POST {API}/fulfillments", Reply(201, {"fulfillment": fulfillment("F1")}))
    record = create(client, location_id=55)
    assert record.fulfill_id == "F1"
    (request,) = server.requests
    assert request.headers["content-type"] == "application/json"
    assert request.body == {
        "fulfillment": {
            "orderId": "1001",
            "lineItems": [{"id": "77001", "quantity": 1}, {"id": "77002", "quantity": 2}],
            "trackingNumber": "1Z999",
            "trackingCompany": "UPS",
            "trackingUrl": "https://www.ups.com/track?tracknum=1Z999",
            "notifyCustomer": False,
            "locationId": "55",
        }
    }
    assert client.fulfillment_create_path == "/fulfillments"


def test_create_fulfillment_validates_lines_before_sending(server, client):
    with pytest.raises(ValueError):
        create(client, line_items=[])
    with pytest.raises(ValueError):
        create(client, line_items=[("1", 0)])
    with pytest.raises(ValueError):
        create(client, line_items=[("1", "2")])
    assert server.requests == []


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_create_fulfillment_is_not_retried_on_5xx(server, client, sleeps, status):
    server.script(
        f"POST {API}/fulfillments", Reply(status, {"error": "bad gateway"}), Reply(201, {"fulfillment": fulfillment()})
    )
    with pytest.raises(GenstoreServerError) as info:
        create(client)
    assert info.value.transient is True
    assert info.value.ambiguous is True  # the caller must read the order's fulfillments before writing again
    assert len(server.seen(f"POST {API}/fulfillments")) == 1
    assert server.seen(f"POST {API}/fulfillment") == []
    assert sleeps == []


def test_create_fulfillment_is_not_retried_on_read_timeout(server, make_client):
    client = make_client(read_timeout=0.2)
    server.script(f"POST {API}/fulfillments", Reply(201, {"fulfillment": fulfillment()}, delay=1.0))
    with pytest.raises(GenstoreTransportError) as info:
        create(client)
    assert info.value.transient is True and info.value.ambiguous is True
    assert len(server.requests) == 1


def test_create_fulfillment_is_retried_on_429(server, client, sleeps):
    server.script(
        f"POST {API}/fulfillments",
        Reply(429, {"error": "Too many requests"}, headers={"Retry-After": "1"}),
        Reply(201, {"fulfillment": fulfillment("F2")}),
    )
    assert create(client).fulfill_id == "F2"
    assert len(server.seen(f"POST {API}/fulfillments")) == 2
    assert sleeps == [1.0]


def test_create_fulfillment_is_retried_when_the_connection_was_refused(make_client, fake_clock):
    """The request never left: safe to retry. The server comes up while the client backs off."""
    port = _free_port()
    started: list[ScriptedServer] = []

    def sleep_then_start_server(seconds: float) -> None:
        fake_clock.sleep(seconds)
        if not started:
            started.append(_scripted_server_on(port))

    client = make_client(base_url=f"http://127.0.0.1:{port}", sleep=sleep_then_start_server)
    try:
        record = create(client)
    finally:
        for running in started:
            running.stop()
    assert record.fulfill_id == "F9"
    assert client.stats.transport_errors == 1
    assert len(started[0].seen(f"POST {API}/fulfillments")) == 1


def test_fulfillments_404_falls_back_to_singular_path_and_remembers_it(server, client):
    # No route for POST /fulfillments: the scripted server answers 404 for it.
    server.script(
        f"POST {API}/fulfillment",
        Reply(201, {"fulfillment": fulfillment("F1")}),
        Reply(201, {"fulfillment": fulfillment("F2")}),
    )
    assert create(client).fulfill_id == "F1"
    assert client.fulfillment_create_path == "/fulfillment"
    assert create(client, tracking_number="1Z000").fulfill_id == "F2"
    assert len(server.seen(f"POST {API}/fulfillments")) == 1  # probed once only
    assert len(server.seen(f"POST {API}/fulfillment")) == 2


def test_preset_create_path_is_used_without_probing(server, make_client):
    server.script(f"POST {API}/fulfillment", Reply(201, {"fulfillment": fulfillment("F1")}))
    client = make_client(fulfillment_create_path="/fulfillment")
    assert create(client).fulfill_id == "F1"
    assert server.seen(f"POST {API}/fulfillments") == []


def test_a_newly_learned_create_path_is_reported_once(server, make_client):
    server.script(
        f"POST {API}/fulfillment",
        Reply(201, {"fulfillment": fulfillment("F1")}),
        Reply(201, {"fulfillment": fulfillment("F2")}),
    )
    learned: list[str] = []
    client = make_client(on_fulfillment_create_path=learned.append)
    create(client)
    create(client, tracking_number="1Z000")
    assert learned == ["/fulfillment"]  # the owner keeps it (Store.fulfillment_create_path); told only once
    preset: list[str] = []
    server.script(f"POST {API}/fulfillment", Reply(201, {"fulfillment": fulfillment("F3")}))
    create(make_client(fulfillment_create_path="/fulfillment", on_fulfillment_create_path=preset.append))
    assert preset == []  # nothing new to keep


def test_known_path_404_means_unknown_order(server, client):
    server.script(f"POST {API}/fulfillments", Reply(404, {"error": "Order not found"}))
    client.fulfillment_create_path = "/fulfillments"  # as persisted from an earlier success
    with pytest.raises(GenstoreNotFound) as info:
        create(client)
    assert info.value.error_text == "Order not found"
    assert server.seen(f"POST {API}/fulfillment") == []


def test_both_paths_404_raise_not_found_and_remember_nothing(server, client):
    server.script(f"POST {API}/fulfillment", Reply(404, {"error": "Order not found"}))
    with pytest.raises(GenstoreNotFound):
        create(client)
    assert client.fulfillment_create_path is None
    assert len(server.requests) == 2


def test_create_fulfillment_422_carries_error_text(server, client):
    server.script(f"POST {API}/fulfillments", Reply(422, {"error": "Order is cancelled"}))
    with pytest.raises(GenstoreUnprocessable) as info:
        create(client)
    assert info.value.error_text == "Order is cancelled"
    assert len(server.requests) == 1


def test_update_tracking_body_and_retry_on_503(server, client):
    server.script(
        f"PUT {API}/fulfillments/F1/update_tracking",
        Reply(503, {"error": "busy"}),
        Reply(200, {"fulfillment": fulfillment("F1", shipmentStatus="in_transit")}),
    )
    record = client.update_tracking(
        "F1",
        tracking_number="1Z999",
        tracking_company="UPS",
        tracking_url="https://ups.example/1Z999",
        shipment_status="in_transit",
        notify_customer=True,
    )
    assert record.shipment_status == "in_transit"
    assert len(server.requests) == 2
    assert server.requests[-1].body == {
        "fulfillment": {
            "trackingNumber": "1Z999",
            "trackingCompany": "UPS",
            "trackingUrl": "https://ups.example/1Z999",
            "shipmentStatus": "in_transit",
            "notifyCustomer": True,
        }
    }


def test_update_tracking_is_retried_on_read_timeout(server, make_client):
    client = make_client(read_timeout=0.2)
    server.script(
        f"PUT {API}/fulfillments/F1/update_tracking",
        Reply(200, {"fulfillment": fulfillment("F1")}, delay=1.0),
        Reply(200, {"fulfillment": fulfillment("F1")}),
    )
    client.update_tracking(
        "F1",
        tracking_number="1Z",
        tracking_company=None,
        tracking_url=None,
        shipment_status=None,
        notify_customer=False,
    )
    assert len(server.requests) == 2


def test_cancel_fulfillment(server, client):
    server.script(
        f"PUT {API}/fulfillments/F1/cancel", Reply(200, {"fulfillment": fulfillment("F1", status="cancelled")})
    )
    assert client.cancel_fulfillment("F1").status == "cancelled"


def test_list_fulfillments(server, client):
    server.script(
        f"GET {API}/orders/1001/fulfillments",
        Reply(200, {"fulfillments": [fulfillment("F1"), fulfillment("F2", trackingNumber=123)]}),
    )
    records = client.list_fulfillments("1001")
    assert [(r.fulfill_id, r.tracking_number) for r in records] == [("F1", "1Z999"), ("F2", "123")]


def test_list_fulfillments_single_object_and_null(server, client):
    server.script(
        f"GET {API}/orders/1001/fulfillments",
        Reply(200, {"fulfillments": fulfillment("F1")}),
        Reply(200, {"fulfillments": None}),
    )
    assert [r.fulfill_id for r in client.list_fulfillments("1001")] == ["F1"]
    assert client.list_fulfillments("1001") == []


def test_list_fulfillments_with_an_unidentifiable_entry_fails_loudly(server, client):
    server.script(f"GET {API}/orders/1001/fulfillments", Reply(200, {"fulfillments": [{"trackingNumber": "1Z"}]}))
    with pytest.raises(GenstoreRecordError):
        client.list_fulfillments("1001")


# --- webhook subscriptions ----------------------------------------------------------------------------------------


def test_webhook_subscriptions(server, client):
    server.script(
        f"GET {API}/app/webhooks",
        Reply(200, {"webhooks": [{"id": 1, "address": "https://a/", "topic": "orders/create"}, {"topic": "x"}]}),
    )
    server.script(
        f"POST {API}/app/webhooks",
        Reply(
            201,
            {
                "webhook": {
                    "id": 8589934859,
                    "address": "https://a/",
                    "topic": "orders/update",
                    "createTime": "2024-10-30T16:19:13-04:00",
                }
            },
        ),
    )
    server.script(f"DELETE {API}/app/webhooks/1", Reply(204), Reply(404, {"error": "Not found"}))

    subscriptions = client.list_webhooks()
    assert [(s.id, s.topic) for s in subscriptions] == [("1", "orders/create")]  # the one without an id is left out

    created = client.create_webhook(address="https://a/", topic="orders/update")
    assert created.id == "8589934859"
    assert created.created_at == datetime(2024, 10, 30, 20, 19, 13, tzinfo=UTC)
    assert server.seen(f"POST {API}/app/webhooks")[0].body == {
        "webhook": {"address": "https://a/", "topic": "orders/update"}
    }

    client.delete_webhook("1")
    client.delete_webhook("1")  # already gone: fine


def test_create_webhook_not_retried_on_500_but_retried_on_429(server, client):
    server.script(f"POST {API}/app/webhooks", Reply(500, {"error": "oops"}))
    with pytest.raises(GenstoreServerError) as info:
        client.create_webhook(address="https://a/", topic="orders/create")
    assert info.value.ambiguous is True
    assert len(server.requests) == 1

    server.script(
        f"POST {API}/app/webhooks",
        Reply(429, {"error": "slow"}, headers={"Retry-After": "0.5"}),
        Reply(201, {"webhook": {"id": 5, "address": "https://a/", "topic": "orders/create"}}),
    )
    assert client.create_webhook(address="https://a/", topic="orders/create").id == "5"
    assert len(server.requests) == 3


# --- many workers, one store --------------------------------------------------------------------------------------


@pytest.mark.redis
def test_workers_sharing_the_redis_bucket_stay_inside_the_stores_bucket(server, limiter_redis):
    """Four workers, each with its own client and Redis connection, push to a server that enforces its own bucket.

    Every request succeeds, and 429s stay rare: the shared bucket keeps the burst close to the allowed rate.
    """
    capacity, refill = 5, 25.0
    server_bucket = {"tokens": float(capacity), "ts": time.monotonic()}
    bucket_lock = threading.Lock()
    answered = {"ok": 0, "429": 0}

    def metered(request: SeenRequest) -> Reply:
        with bucket_lock:
            now = time.monotonic()
            server_bucket["tokens"] = min(capacity, server_bucket["tokens"] + (now - server_bucket["ts"]) * refill)
            server_bucket["ts"] = now
            used = capacity - int(server_bucket["tokens"])
            if server_bucket["tokens"] < 1:
                answered["429"] += 1
                return Reply(
                    429,
                    {"error": "Too many requests"},
                    headers={"X-Genstore-Shop-Api-Rate-Limit": f"{capacity}/{capacity}"},
                )
            server_bucket["tokens"] -= 1
            answered["ok"] += 1
        return Reply(200, {"count": 1}, headers={"X-Genstore-Shop-Api-Rate-Limit": f"{used + 1}/{capacity}"})

    server.handle(f"GET {API}/orders/count", metered)
    per_worker, workers = 10, 4
    failures: list[BaseException] = []
    clients: list[GenstoreClient] = []

    def work() -> None:
        client = GenstoreClient(
            base_url=server.base_url,
            api_version="202412",
            access_token="t",
            limiter=limiter_redis.bucket(),
            limiter_key="store:shared",
            # A little under the store's refill: network jitter between our grant and the server's count.
            bucket_capacity=capacity,
            bucket_refill_per_second=refill * 0.9,
            backoff_base=0.05,
            max_retries=8,
        )
        clients.append(client)
        try:
            for _ in range(per_worker):
                client.count_orders()
        except BaseException as exc:
            failures.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    assert answered["ok"] == workers * per_worker
    rate_limited = sum(c.stats.rate_limited for c in clients)
    assert rate_limited == answered["429"]
    print(f"shared bucket: {answered['ok']} requests answered, {rate_limited} x 429")
    # Typically 0-2: only network jitter between our grant and the server's count can cause one. Four workers
    # pacing themselves separately would send four times the allowed rate and collect dozens.
    assert rate_limited <= workers * per_worker // 5, f"{rate_limited} 429s for {workers * per_worker} requests"


# --- helpers ------------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _scripted_server_on(port: int) -> ScriptedServer:
    """A server that starts late, on a port the client already tried (for the connection-refused test)."""
    late = ScriptedServer(port=port)
    late.script(f"POST {API}/fulfillments", Reply(201, {"fulfillment": fulfillment("F9")}))
    return late.start()
