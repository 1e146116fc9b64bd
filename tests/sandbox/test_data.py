from __future__ import annotations

import random
import re
from datetime import datetime
from decimal import Decimal

import pytest

from oma.sandbox import QUIRKS, GenstoreSandbox
from oma.sandbox.data import (
    CHANNEL_NAMES,
    FINANCIAL_STATUSES,
    _mod10_check,
    dhl_tracking_number,
    fedex_tracking_number,
    ups_tracking_number,
    usps_tracking_number,
)
from tests.sandbox.conftest import ANCHOR, orders_url, walk

LINE_FIELDS = {
    "id", "productId", "variantId", "sku", "title", "variantTitle", "quantity", "fulfillableQuantity",
    "fulfillmentStatus", "requiresShipping", "price", "grams",
}  # fmt: skip


def test_same_seed_same_orders_other_seed_other_orders():
    with (
        GenstoreSandbox(orders=50, seed=3, anchor=ANCHOR) as first,
        GenstoreSandbox(orders=50, seed=3, anchor=ANCHOR) as second,
    ):
        assert list(first.orders("shop1")) == list(second.orders("shop1"))
        assert first.quirky_order_ids("shop1") == second.quirky_order_ids("shop1")
    with GenstoreSandbox(orders=50, seed=4, anchor=ANCHOR) as other:
        assert list(other.orders("shop1")) != list(first.orders("shop1"))


def test_orders_are_realistic(sandbox):
    orders = list(sandbox.orders("shop1"))
    assert {o["sourceName"] for o in orders} == set(CHANNEL_NAMES)
    assert {o["financialStatus"] for o in orders} == set(FINANCIAL_STATUSES)
    assert {o["fulfillmentStatus"] for o in orders} == {None, "unfulfilled", "partial", "fulfilled", "restocked"}
    cancelled = [o for o in orders if o["cancelledAt"]]
    assert 3 <= len(cancelled) <= 40 and all(o["cancelReason"] for o in cancelled)
    assert all(1 <= len(o["lineItems"]) <= 5 for o in orders)
    assert all(set(line) >= LINE_FIELDS for o in orders for line in o["lineItems"])
    assert any(not line["requiresShipping"] for o in orders for line in o["lineItems"]), "digital goods"
    assert sum(1 for o in orders if o["email"]) > len(orders) * 0.7
    assert any(o["email"] is None for o in orders), "protected field filtered on some"
    for order in orders:
        assert Decimal(order["totalPrice"]) >= 0 and order["currency"]
        assert order["createdAt"] <= order["updatedAt"] < "2025-03-01"
        for line in order["lineItems"]:
            assert 0 <= line["fulfillableQuantity"] <= line["quantity"]


@pytest.mark.parametrize(
    ("channel", "pattern"),
    [
        ("amazon", r"^\d{3}-\d{7}-\d{7}$"),
        ("ebay", r"^\d{2}-\d{5}-\d{5}$"),
        ("shipbob", r"^\d{9}$"),
        ("walmart", r"^\d{13}$"),
        ("tiktok", r"^\d{18}$"),
    ],
)
def test_marketplace_and_3pl_orders_carry_their_channel_id(sandbox, channel, pattern):
    identifiers = [o["sourceIdentifier"] for o in sandbox.orders("shop1") if o["sourceName"] == channel]
    assert identifiers
    assert all(re.match(pattern, identifier) for identifier in identifiers)


def test_web_orders_have_no_source_identifier(sandbox):
    assert all(o["sourceIdentifier"] is None for o in sandbox.orders("shop1") if o["sourceName"] == "web")


def test_line_items_and_fulfillments_agree(sandbox):
    for order in sandbox.orders("shop1"):
        shipped: dict[str, int] = {}
        for fulfillment in order["fulfillments"]:
            for part in fulfillment["lineItems"]:
                shipped[part["id"]] = shipped.get(part["id"], 0) + part["quantity"]
        for line in order["lineItems"]:
            if order["cancelledAt"] is None and order["fulfillmentStatus"] != "restocked":
                assert line["fulfillableQuantity"] == line["quantity"] - shipped.get(line["id"], 0)
        if order["fulfillmentStatus"] == "fulfilled":
            assert all(line["fulfillableQuantity"] == 0 for line in order["lineItems"])
        if order["fulfillmentStatus"] == "partial":
            assert order["fulfillments"]


def test_every_quirk_appears_and_is_really_in_the_wire_json(sandbox):
    quirky = sandbox.quirky_order_ids("shop1")
    assert set(quirky) == set(QUIRKS)
    assert all(quirky[name] for name in QUIRKS), [name for name in QUIRKS if not quirky[name]]

    def raw(name: str, *, unless: str | None = None) -> dict:
        """The wire JSON of the first order with quirk `name` (and without quirk `unless`)."""
        order_id = next(oid for oid in quirky[name] if unless is None or oid not in quirky[unless])
        return sandbox.raw_order("shop1", order_id)

    line = raw("quoted_numbers")["lineItems"]
    line = line if isinstance(line, dict) else line[0]
    assert isinstance(line["quantity"], str) and isinstance(line["grams"], str)
    line = raw("quoted_booleans")["lineItems"]
    line = line if isinstance(line, dict) else line[0]
    assert line["requiresShipping"] in ("true", "false")
    nulls = [sandbox.raw_order("shop1", oid) for oid in quirky["null_strings"]]
    assert all(order.get("email", "null") == "null" for order in nulls)  # or filtered out entirely
    assert any(order["cancelledAt"] == "null" for order in nulls)
    assert any(order["sourceIdentifier"] == "null" for order in nulls)
    assert isinstance(raw("bare_number_ids")["orderId"], int)
    assert raw("stray_quote_timestamp", unless="offset_timestamps")["updatedAt"].endswith('Z"')
    offset = raw("offset_timestamps", unless="malformed_created_at")
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+08:00$", offset["createdAt"])
    assert isinstance(raw("single_line_item_object")["lineItems"], dict)
    assert isinstance(raw("single_fulfillment_object")["fulfillments"], dict)
    assert isinstance(raw("tags_string")["tags"], str)
    assert raw("malformed_total_price")["totalPrice"] == "abc"
    assert raw("malformed_created_at")["createdAt"] == "not a date"
    assert "email" not in raw("missing_email")
    assert all(oid in sandbox.order_ids("shop1") for ids in quirky.values() for oid in ids)


def test_quirks_hit_only_a_share_of_orders(sandbox):
    quirky = sandbox.quirky_order_ids("shop1")
    for name, ids in quirky.items():
        assert len(ids) < 300 * 0.4, name
    untouched = set(sandbox.order_ids("shop1")) - {oid for ids in quirky.values() for oid in ids}
    assert len(untouched) > 30


def test_the_api_serves_the_quirky_form(sandbox, api):
    quirky = sandbox.quirky_order_ids("shop1")
    served, _ = walk(api, orders_url(sandbox), {"limit": 250})
    assert len(served) == 300
    response = api.get(orders_url(sandbox), params={"limit": 250}).json()["orders"]
    by_id = {str(o["orderId"]): o for o in response}
    assert by_id[quirky["malformed_total_price"][0]]["totalPrice"] == "abc"


def test_canonical_undoes_the_quirks(sandbox):
    quirky = sandbox.quirky_order_ids("shop1")
    bare = sandbox.canonical("shop1", quirky["bare_number_ids"][0])
    assert isinstance(bare["orderId"], str)
    assert all(isinstance(line.id, str) for line in bare["lineItems"])
    quoted = sandbox.canonical("shop1", quirky["quoted_numbers"][0])
    assert all(isinstance(line.quantity, int) for line in quoted["lineItems"])
    assert all(
        isinstance(line.requires_shipping, bool)
        for line in sandbox.canonical("shop1", quirky["quoted_booleans"][0])["lineItems"]
    )
    assert sandbox.canonical("shop1", quirky["null_strings"][0])["email"] is None
    assert sandbox.canonical("shop1", quirky["missing_email"][0])["email"] is None
    assert sandbox.canonical("shop1", quirky["malformed_total_price"][0])["totalPrice"] is None
    assert sandbox.canonical("shop1", quirky["malformed_created_at"][0])["createdAt"] is None
    stray = sandbox.canonical("shop1", quirky["stray_quote_timestamp"][0])
    assert isinstance(stray["updatedAt"], datetime) and stray["updatedAt"].tzinfo is not None
    offset_id = quirky["offset_timestamps"][0]
    assert sandbox.canonical("shop1", offset_id)["updatedAt"].utcoffset().total_seconds() == 0

    plain_id = sorted(set(sandbox.order_ids("shop1")) - {o for ids in quirky.values() for o in ids})[0]
    plain = sandbox.order("shop1", plain_id)
    canonical = sandbox.canonical("shop1", plain_id)
    assert canonical["orderId"] == plain["orderId"]
    assert canonical["sourceName"] == plain["sourceName"]
    assert canonical["sourceIdentifier"] == plain["sourceIdentifier"]
    assert canonical["financialStatus"] == plain["financialStatus"]
    assert canonical["fulfillmentStatus"] == (plain["fulfillmentStatus"] or "unfulfilled")
    assert canonical["cancelled"] is (plain["cancelledAt"] is not None)
    assert canonical["totalPrice"] == Decimal(plain["totalPrice"])
    assert [tuple(line) for line in canonical["lineItems"]] == [
        (li["id"], li["sku"], li["quantity"], li["fulfillableQuantity"], li["requiresShipping"])
        for li in plain["lineItems"]
    ]
    assert canonical["quirks"] == []


def test_mutate_orders_changes_exactly_those_and_bumps_updated_at(sandbox, api):
    before = {o["orderId"]: o for o in sandbox.orders("shop1")}
    changed = sandbox.mutate_orders("shop1", 100, seed=9)

    assert len(changed) == len(set(changed)) == 100
    after = {o["orderId"]: o for o in sandbox.orders("shop1")}
    assert {oid for oid in after if after[oid] != before[oid]} == set(changed)
    assert all(after[oid]["updatedAt"] > before[oid]["updatedAt"] for oid in changed)
    kinds = set()
    for oid in changed:
        old, new = before[oid], after[oid]
        if new["financialStatus"] != old["financialStatus"]:
            kinds.add("financial")
        if new["fulfillmentStatus"] != old["fulfillmentStatus"]:
            kinds.add("fulfillment")
        if new["cancelledAt"] and not old["cancelledAt"]:
            kinds.add("cancel")
    assert kinds == {"financial", "fulfillment", "cancel"}

    oldest_change = min(sandbox.canonical("shop1", oid)["updatedAt"] for oid in changed)
    seen, _ = walk(api, orders_url(sandbox), {"limit": 15, "updatedAtMin": oldest_change.isoformat()})
    assert sorted(seen) == sorted(changed)


def test_mutations_are_reproducible_with_a_seed():
    results = []
    for _ in range(2):
        with GenstoreSandbox(orders=100, seed=2, anchor=ANCHOR) as box:
            ids = box.mutate_orders("shop1", 10, seed=77)
            results.append((ids, [box.canonical("shop1", oid)["financialStatus"] for oid in ids]))
    assert results[0] == results[1]


def test_add_and_cancel_orders(sandbox, api):
    new_ids = sandbox.add_orders("shop1", 3)
    assert len(new_ids) == 3
    assert api.get(orders_url(sandbox, path="orders/count")).json() == {"count": 303}
    assert all(int(new) > int(sandbox.order_ids("shop1")[299]) for new in new_ids)
    new = sandbox.order("shop1", new_ids[0])
    assert new["cancelledAt"] is None and new["fulfillmentStatus"] in (None, "unfulfilled")
    seen, _ = walk(api, orders_url(sandbox), {"limit": 100})
    assert seen[-3:] == new_ids

    cancelled = sandbox.cancel_order("shop1", new_ids[0], reason="fraud")
    assert cancelled["cancelledAt"] and cancelled["cancelReason"] == "fraud"
    assert cancelled["financialStatus"] in ("voided", "refunded")
    assert all(line["fulfillableQuantity"] == 0 for line in cancelled["lineItems"])
    with pytest.raises(KeyError):
        sandbox.order("shop1", "123")


def _ups_valid(number: str) -> bool:
    return _mod10_check(number[2:17], evens_multiplier=1, odds_multiplier=2) == int(number[17])


def _usps_valid(number: str) -> bool:
    return _mod10_check(number[:-1], evens_multiplier=3, odds_multiplier=1, reverse=True) == int(number[-1])


def _fedex_valid(number: str) -> bool:
    weights = (3, 1, 7, 3, 1, 7, 3, 1, 7, 3, 1)
    return sum(int(d) * w for d, w in zip(number[:11], weights, strict=True)) % 11 % 10 == int(number[11])


def test_check_digit_rules_accept_published_sample_numbers():
    # Valid samples from the tracking_number_data project (UPS, USPS IMpb, FedEx Express, DHL Express).
    assert _ups_valid("1Z5R89390357567127") and _ups_valid("1Z879E930346834440")
    assert _usps_valid("9400111206206406260787")
    assert _fedex_valid("986578788855") and _fedex_valid("477179081230")
    assert int("331881002") % 7 == 5  # DHL Express 3318810025


def test_generated_tracking_numbers_have_valid_check_digits():
    rng = random.Random(1)
    for _ in range(50):
        ups, usps, fedex, dhl = (
            ups_tracking_number(rng),
            usps_tracking_number(rng),
            fedex_tracking_number(rng),
            dhl_tracking_number(rng),
        )
        assert re.match(r"^1Z[0-9A-Z]{16}$", ups) and _ups_valid(ups)
        assert re.match(r"^94\d{20}$", usps) and _usps_valid(usps)
        assert re.match(r"^\d{12}$", fedex) and _fedex_valid(fedex)
        assert re.match(r"^\d{10}$", dhl) and int(dhl[:-1]) % 7 == int(dhl[-1])
