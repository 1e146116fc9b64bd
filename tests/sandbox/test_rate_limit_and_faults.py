from __future__ import annotations

import time

import pytest
import requests

from tests.sandbox.conftest import orders_url


def test_an_empty_bucket_answers_429_with_retry_after_on_most(sandbox, api):
    sandbox.set_rate_limit(3, 0.0)  # no refill: the bucket stays empty
    statuses = [api.get(orders_url(sandbox, path="orders/count")) for _ in range(12)]

    assert [r.status_code for r in statuses[:3]] == [200, 200, 200]
    assert [r.headers["X-Genstore-Shop-Api-Rate-Limit"] for r in statuses[:3]] == ["1/3", "2/3", "3/3"]
    limited = statuses[3:]
    assert all(r.status_code == 429 for r in limited)
    assert all(r.json()["error"] for r in limited)
    assert all(r.headers["X-Genstore-Shop-Api-Rate-Limit"] == "3/3" for r in limited)
    with_retry_after = [r for r in limited if "Retry-After" in r.headers]
    assert len(limited) / 2 < len(with_retry_after) < len(limited), "most, not all, 429s say Retry-After"
    assert all(int(r.headers["Retry-After"]) >= 1 for r in with_retry_after)
    stats = sandbox.stats("shop1")
    assert stats["rate_limited"] == 9
    assert stats["by_status"] == {"200": 3, "429": 9}


def test_buckets_are_per_shop(sandbox, api):
    sandbox.set_rate_limit(2, 0.0, handle="shop1")
    for _ in range(3):
        api.get(orders_url(sandbox, "shop1", "orders/count"))
    assert api.get(orders_url(sandbox, "shop1", "orders/count")).status_code == 429
    assert api.get(orders_url(sandbox, "shop2", "orders/count")).status_code == 200


def test_a_refilling_bucket_lets_requests_through_again(sandbox, api):
    sandbox.set_rate_limit(1, 1000.0)  # one token, back within a millisecond
    statuses = []
    for _ in range(5):
        statuses.append(api.get(orders_url(sandbox, path="orders/count")).status_code)
        time.sleep(0.005)  # a keep-alive request on 127.0.0.1 can come back faster than the token does
    assert statuses == [200] * 5


def test_unauthorized_requests_do_not_spend_tokens(sandbox, api):
    sandbox.set_rate_limit(2, 0.0)
    for _ in range(5):
        assert requests.get(orders_url(sandbox), timeout=5).status_code == 401
    assert api.get(orders_url(sandbox, path="orders/count")).status_code == 200


def test_faults_are_injected_at_the_configured_rate(sandbox, api):
    sandbox.set_faults(error_rate=0.3, status=503)
    responses = [api.get(orders_url(sandbox, path="orders/count")) for _ in range(300)]
    faults = [r for r in responses if r.status_code == 503]

    assert 45 <= len(faults) <= 135  # 90 expected; the dice are seeded, the window is wide
    assert all(r.json()["error"] for r in faults)
    assert all(r.status_code in (200, 503) for r in responses)
    assert sandbox.stats("shop1")["faults_injected"] == len(faults)

    sandbox.set_faults()
    assert all(api.get(orders_url(sandbox, path="orders/count")).status_code == 200 for _ in range(20))


def test_fault_status_is_configurable(sandbox, api):
    sandbox.set_faults(error_rate=1.0, status=500)
    response = api.get(orders_url(sandbox))
    assert response.status_code == 500
    assert "X-Genstore-Shop-Api-Rate-Limit" in response.headers


def test_slow_answers_make_a_short_client_timeout_expire(sandbox, api):
    sandbox.set_faults(slow_rate=1.0, slow_seconds=1.5)
    with pytest.raises(requests.Timeout):
        api.get(orders_url(sandbox, path="orders/count"), timeout=(2, 0.2))
    assert sandbox.stats("shop1")["slow_responses"] == 1


def test_reset_stats(sandbox, api):
    api.get(orders_url(sandbox))
    assert sandbox.stats("shop1")["requests"] == 1
    assert sandbox.stats("shop1")["by_endpoint"] == {"GET /orders": 1}
    sandbox.reset_stats()
    assert sandbox.stats("shop1")["requests"] == 0
