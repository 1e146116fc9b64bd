from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from oma.sandbox import LINK_HEADER_VARIANTS, GenstoreSandbox
from oma.sandbox.server import format_link_header
from tests.sandbox.conftest import orders_url, parse_link, walk


def test_full_walk_by_order_id_sees_every_order_exactly_once_in_id_order(sandbox, api):
    seen, _ = walk(api, orders_url(sandbox), {"limit": 7})

    assert len(seen) == len(set(seen)) == 300
    assert set(seen) == set(sandbox.order_ids("shop1"))
    assert [int(order_id) for order_id in seen] == sorted(int(order_id) for order_id in seen)


def test_walk_with_updated_at_min_is_ordered_by_updated_at_and_complete(sandbox, api):
    everything, _ = walk(api, orders_url(sandbox), {"limit": 50, "updatedAtMin": "2000-01-01T00:00:00Z"})
    assert sorted(everything) == sorted(sandbox.order_ids("shop1"))
    keys = [(sandbox.canonical("shop1", oid)["updatedAt"], int(oid)) for oid in everything]
    assert keys == sorted(keys)

    middle = sandbox.canonical("shop1", everything[150])["updatedAt"]
    later, _ = walk(api, orders_url(sandbox), {"limit": 50, "updatedAtMin": middle.isoformat()})
    assert later == [oid for oid in everything if sandbox.canonical("shop1", oid)["updatedAt"] >= middle]


def test_default_limit_is_50_and_limit_is_capped(sandbox, api):
    assert len(api.get(orders_url(sandbox)).json()["orders"]) == 50
    assert len(api.get(orders_url(sandbox), params={"limit": 250}).json()["orders"]) == 250
    too_many = api.get(orders_url(sandbox), params={"limit": 251})
    assert too_many.status_code == 400
    assert "limit" in too_many.json()["error"]


def test_link_header_comes_in_every_documented_spelling_during_a_walk(sandbox, api):
    _, headers = walk(api, orders_url(sandbox), {"limit": 20})

    assert any(h.startswith('"') for h in headers), "whole value quoted"
    assert any(h.lstrip('"').startswith("< ") for h in headers), "stray space after <"
    assert any(" >;" in h for h in headers), "stray space before >"
    assert any(h.startswith("<http") for h in headers), "plain"
    assert all('rel="' not in h for h in headers), "rel is never quoted"
    assert all("rel=prev," not in h and not h.rstrip('"').endswith("rel=prev") for h in headers)
    assert any("rel=previous" in h for h in headers) and any("rel=next" in h for h in headers)
    assert len(LINK_HEADER_VARIANTS) == 4


def test_format_link_header_variants():
    links = [("previous", "http://x/orders?pageToken=a"), ("next", "http://x/orders?pageToken=b")]
    assert (
        format_link_header(links, 0)
        == "<http://x/orders?pageToken=a>; rel=previous, <http://x/orders?pageToken=b>; rel=next"
    )
    assert format_link_header(links, 1).startswith('"<http://x/orders?pageToken=a>; rel=previous')
    assert format_link_header(links, 2).startswith("< http://x/orders?pageToken=a >; rel=previous")
    assert (
        format_link_header(links, 3)
        == '"< http://x/orders?pageToken=b>; rel=next, < http://x/orders?pageToken=a>; rel=previous"'
    )


def test_next_url_carries_only_page_token_and_limit_and_last_page_has_no_next(sandbox, api):
    first = api.get(orders_url(sandbox), params={"limit": 100, "financialStatus": "paid"})
    next_url = parse_link(first.headers["Link"])["next"]
    assert set(parse_qs(urlsplit(next_url).query)) == {"pageToken", "limit"}
    assert "previous" not in parse_link(first.headers["Link"])

    last = api.get(orders_url(sandbox), params={"limit": 250, "sinceId": sandbox.order_ids("shop1")[-5]})
    assert len(last.json()["orders"]) == 4
    assert "Link" not in last.headers


def test_previous_links_walk_back_over_the_same_pages(sandbox, api):
    pages = []
    response = api.get(orders_url(sandbox), params={"limit": 40, "fulfillmentStatus": "unfulfilled"})
    while True:
        pages.append([o["orderId"] for o in response.json()["orders"]])
        next_url = parse_link(response.headers.get("Link")).get("next")
        if not next_url:
            break
        response = api.get(next_url)
    backwards = []
    previous_url = parse_link(response.headers.get("Link")).get("previous")
    while previous_url:
        response = api.get(previous_url)
        backwards.append([o["orderId"] for o in response.json()["orders"]])
        previous_url = parse_link(response.headers.get("Link")).get("previous")
    assert backwards == list(reversed(pages[:-1]))


def test_page_token_with_any_parameter_but_limit_is_rejected(sandbox, api):
    first = api.get(orders_url(sandbox), params={"limit": 10})
    next_url = parse_link(first.headers["Link"])["next"]
    token = parse_qs(urlsplit(next_url).query)["pageToken"][0]

    with_filter = api.get(orders_url(sandbox), params={"pageToken": token, "financialStatus": "paid"})
    assert with_filter.status_code == 400
    assert "financialStatus" in with_filter.json()["error"]
    assert api.get(orders_url(sandbox), params={"pageToken": token, "limit": 5}).status_code == 200
    assert len(api.get(orders_url(sandbox), params={"pageToken": token, "limit": 5}).json()["orders"]) == 5
    assert api.get(orders_url(sandbox), params={"pageToken": token + "x"}).status_code == 400
    other_shop = api.get(orders_url(sandbox, "shop2"), params={"pageToken": token})
    assert other_shop.status_code == 400


@pytest.mark.parametrize(
    ("params", "field", "accepted"),
    [
        ({"financialStatus": "paid"}, "financialStatus", {"paid"}),
        ({"financialStatus": "refunded,voided"}, "financialStatus", {"refunded", "voided"}),
        ({"fulfillmentStatus": "unfulfilled"}, "fulfillmentStatus", {None, "unfulfilled"}),
        ({"fulfillmentStatus": "partial"}, "fulfillmentStatus", {"partial"}),
    ],
)
def test_filters_and_count_agree(sandbox, api, params, field, accepted):
    seen, _ = walk(api, orders_url(sandbox), {"limit": 25, **params})
    count = api.get(orders_url(sandbox, path="orders/count"), params=params).json()["count"]
    expected = [o["orderId"] for o in sandbox.orders("shop1") if o[field] in accepted]

    assert 0 < len(expected) < 300
    assert seen == expected
    assert count == len(expected)


def test_since_id_and_combined_filters(sandbox, api):
    ids = sandbox.order_ids("shop1")
    seen, _ = walk(api, orders_url(sandbox), {"limit": 30, "sinceId": ids[99], "financialStatus": "paid"})
    expected = [o["orderId"] for o in sandbox.orders("shop1") if int(o["orderId"]) > int(ids[99])]
    expected = [oid for oid in expected if sandbox.order("shop1", oid)["financialStatus"] == "paid"]
    assert seen == expected


def test_bad_filters_are_400(sandbox, api):
    for params in ({"financialStatus": "lost"}, {"updatedAtMin": "yesterday"}, {"sinceId": "abc"}):
        response = api.get(orders_url(sandbox), params=params)
        assert response.status_code == 400
        assert response.json()["error"]


def test_count_without_filters(sandbox, api):
    assert api.get(orders_url(sandbox, path="orders/count")).json() == {"count": 300}


def test_order_detail_includes_fulfillments_and_matches_the_list(sandbox, api):
    fulfilled = next(o for o in sandbox.orders("shop1") if o["fulfillmentStatus"] == "fulfilled")
    detail = api.get(orders_url(sandbox, path=f"orders/{fulfilled['orderId']}"))

    assert detail.status_code == 200
    assert detail.json()["order"] == sandbox.raw_order("shop1", fulfilled["orderId"])
    fulfillments = api.get(orders_url(sandbox, path=f"orders/{fulfilled['orderId']}/fulfillments")).json()
    assert [str(f["fulfillId"]) for f in fulfillments["fulfillments"]] == [
        f["fulfillId"] for f in fulfilled["fulfillments"]
    ]
    assert fulfillments["fulfillments"][0]["trackingNumber"]


def test_unknown_order_and_unknown_paths_are_json_404(sandbox, api):
    for path in ("orders/123", "orders/5000000000000", "nothing/here"):
        response = api.get(orders_url(sandbox, path=path))
        assert response.status_code == 404
        assert response.json()["error"]
    unknown_shop = api.get(f"{sandbox.url}/nosuchshop/api/202412/orders")
    assert unknown_shop.status_code == 404


def test_wrong_or_missing_token_is_401_with_json_error(sandbox):
    assert requests.get(orders_url(sandbox), timeout=5).status_code == 401
    response = requests.get(orders_url(sandbox), headers={"X-Genstore-Access-Token": "nope"}, timeout=5)
    assert response.status_code == 401
    assert "error" in response.json()
    lower_case = requests.get(orders_url(sandbox), headers={"x-genstore-access-token": sandbox.access_token}, timeout=5)
    assert lower_case.status_code == 200


def test_token_can_be_rotated_per_shop(sandbox, api):
    sandbox.set_access_token("new-token", handle="shop2")
    assert api.get(orders_url(sandbox, "shop2")).status_code == 401
    assert api.get(orders_url(sandbox, "shop1")).status_code == 200
    assert (
        requests.get(orders_url(sandbox, "shop2"), headers={"X-Genstore-Access-Token": "new-token"}).status_code == 200
    )


def test_any_version_segment_and_json_suffix_are_accepted(sandbox, api):
    assert api.get(f"{sandbox.base_url_for('shop1')}/api/202410/orders/count").json() == {"count": 300}
    assert api.get(f"{sandbox.base_url_for('shop1')}/api/202412/orders.json", params={"limit": 1}).status_code == 200


def test_shops_have_their_own_orders(sandbox):
    assert not set(sandbox.order_ids("shop1")) & set(sandbox.order_ids("shop2"))


def test_shop_info_and_access_scopes(sandbox, api):
    shop = api.get(orders_url(sandbox, "shop2", "shops/info")).json()["shop"]
    assert shop["domain"] == "shop2.genmystore.com" == sandbox.domain_for("shop2")
    scopes = api.get(orders_url(sandbox, "shop1", "oauth2/access_scopes")).json()["accessScopes"]
    assert isinstance(scopes, str) and "write_fulfillments" in scopes


def test_every_response_carries_the_rate_limit_header(sandbox, api):
    sandbox.set_rate_limit(40, 2.0)
    for response in (
        api.get(orders_url(sandbox)),
        api.get(orders_url(sandbox, path="orders/1")),
        requests.get(orders_url(sandbox)),
    ):
        used, capacity = response.headers["X-Genstore-Shop-Api-Rate-Limit"].split("/")
        assert capacity == "40" and 0 <= int(used) <= 40


def test_base_url_is_the_part_before_api(sandbox):
    assert sandbox.base_url_for("shop1") == f"http://127.0.0.1:{sandbox.port}/shop1"
    assert sandbox.api_url_for("shop1", "orders") == f"{sandbox.base_url_for('shop1')}/api/202412/orders"


def test_a_100k_order_sandbox_starts_and_serves_a_page_without_building_every_order():
    with GenstoreSandbox(orders=100_000, seed=7, rate_limit=None) as big:
        session = requests.Session()
        session.headers["X-Genstore-Access-Token"] = big.access_token
        page = session.get(big.api_url_for("shop1", "orders"), params={"limit": 250}, timeout=30)
        assert page.status_code == 200
        assert len(page.json()["orders"]) == 250
        assert session.get(big.api_url_for("shop1", "orders/count"), timeout=30).json() == {"count": 100_000}
        last_id = big.order_ids("shop1")[-1]
        assert session.get(big.api_url_for("shop1", f"orders/{last_id}"), timeout=30).status_code == 200
        assert not big._shop("shop1").overlay  # nothing was materialised


@pytest.mark.slow
def test_a_100k_order_sandbox_serves_filtered_and_incremental_pages():
    with GenstoreSandbox(orders=100_000, seed=7, rate_limit=None) as big:
        session = requests.Session()
        session.headers["X-Genstore-Access-Token"] = big.access_token
        changed = big.mutate_orders("shop1", 30, seed=1)
        since = big.canonical("shop1", changed[0])["updatedAt"]
        seen, _ = walk(session, big.api_url_for("shop1", "orders"), {"limit": 250, "updatedAtMin": since.isoformat()})
        assert sorted(seen) == sorted(changed)
        refunded = session.get(big.api_url_for("shop1", "orders/count"), params={"financialStatus": "refunded"}).json()
        assert 1000 < refunded["count"] < 15_000


def test_without_a_shop_in_the_path_the_host_header_picks_the_shop(sandbox, api):
    headers = {"Host": "shop2.genmystore.com"}
    response = api.get(f"{sandbox.url}/api/202412/shops/info", headers=headers)
    assert response.json()["shop"]["domain"] == "shop2.genmystore.com"
    assert api.get(f"{sandbox.url}/api/202412/shops/info").status_code == 404  # two shops: ambiguous


def test_an_orders_fulfillments_can_be_counted(sandbox, api):
    shipped = next(o for o in sandbox.orders("shop1") if len(o["fulfillments"]) == 2)
    url = orders_url(sandbox, path=f"orders/{shipped['orderId']}/fulfillments/count")
    assert api.get(url).json() == {"count": 2}
