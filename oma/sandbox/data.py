"""Deterministic, lazily generated Genstore orders for the sandbox.

Every order is a pure function of (shop seed, index): nothing is stored until the sandbox changes an order, so a
100,000-order shop starts instantly. An order's key facts (channel, statuses, line count, timestamps) come from a
cheap integer hash (`order_summary`), so the server can filter and sort all orders without building them; the full
body (line items, money, fulfillments) is built from a `random.Random` seeded with the same hash.

Internally an order is a dict with camelCase keys (the API's shape) holding plain Python values: ids and money as
strings, quantities as int, timestamps as int epoch milliseconds, None for null. `oma.sandbox.quirks` turns it into
the wire JSON.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple

MASK64 = (1 << 64) - 1

FINANCIAL_STATUSES: tuple[str, ...] = (
    "pending",
    "authorized",
    "partially_paid",
    "paid",
    "partially_refunded",
    "refunded",
    "voided",
)
# Index 0 stands for "unfulfilled" whether the order says null or "unfulfilled".
FULFILLMENT_STATUSES: tuple[str, ...] = ("unfulfilled", "partial", "fulfilled", "restocked")
FULFILLMENT_RECORD_STATUSES: tuple[str, ...] = ("pending", "open", "success", "cancelled", "error", "failure")
CANCEL_REASONS: tuple[str, ...] = ("customer", "fraud", "inventory", "declined", "other")

# (sourceName, weight in percent). Marketplaces and the 3PL carry the order's id on that channel.
CHANNELS: tuple[tuple[str, int], ...] = (
    ("web", 40),
    ("pos", 8),
    ("instagram", 10),
    ("tiktok", 8),
    ("amazon", 13),
    ("ebay", 7),
    ("shipbob", 8),
    ("walmart", 6),
)
CHANNEL_NAMES: tuple[str, ...] = tuple(name for name, _ in CHANNELS)

_FINANCIAL_WEIGHTS_OPEN = (("pending", 5), ("authorized", 8), ("partially_paid", 3), ("paid", 66),
                           ("partially_refunded", 8), ("refunded", 6), ("voided", 4))  # fmt: skip
_FULFILLMENT_WEIGHTS_BY_FINANCIAL: dict[str, tuple[tuple[str, int], ...]] = {
    "pending": (("unfulfilled", 90), ("partial", 4), ("fulfilled", 6)),
    "authorized": (("unfulfilled", 85), ("partial", 7), ("fulfilled", 8)),
    "partially_paid": (("unfulfilled", 80), ("partial", 10), ("fulfilled", 10)),
    "paid": (("unfulfilled", 38), ("partial", 12), ("fulfilled", 50)),
    "partially_refunded": (("unfulfilled", 25), ("partial", 25), ("fulfilled", 50)),
    "refunded": (("unfulfilled", 40), ("fulfilled", 40), ("restocked", 20)),
    "voided": (("unfulfilled", 100),),
}
CANCELLED_PERCENT_X100 = 600  # 6 % of orders are cancelled
_LINE_COUNT_WEIGHTS = ((1, 40), (2, 25), (3, 17), (4, 10), (5, 8))

DAY_MS = 86_400_000
HOUR_MS = 3_600_000


def mix64(value: int) -> int:
    """splitmix64's finalizer: a fast, well-spread integer hash (pure Python, no allocation)."""
    z = (value + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def shop_seed_for(seed: int, handle: str) -> int:
    """Each shop of a sandbox gets its own orders (and its own id ranges) from the sandbox seed."""
    digest = hashlib.sha256(f"genstore-sandbox:{seed}:{handle}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


_CUMULATIVE: dict[int, tuple[list[int], list[Any]]] = {}


def _weighted(table: tuple[tuple[Any, int], ...], roll: int) -> Any:
    """The value whose weight band `roll` (any non-negative int) falls in."""
    cumulative = _CUMULATIVE.get(id(table))
    if cumulative is None:
        bounds, running = [], 0
        for _, weight in table:
            running += weight
            bounds.append(running)
        cumulative = _CUMULATIVE[id(table)] = (bounds, [value for value, _ in table])
    bounds, values = cumulative
    return values[bisect.bisect_right(bounds, roll % bounds[-1])]


class OrderSummary(NamedTuple):
    """The facts of a freshly generated order that listing, filtering and sorting need."""

    hash: int
    source_name: str
    cancelled: bool
    financial_status: str
    fulfillment_status: str  # one of FULFILLMENT_STATUSES
    unfulfilled_as_null: bool  # an unfulfilled order says null (else the string "unfulfilled")
    line_count: int
    created_fraction: float  # where in its time slot the order was created, [0, 1)
    updated_delay_ms: int  # how long after creation the order last changed


def order_summary(shop_seed: int, index: int) -> OrderSummary:
    h1 = mix64(shop_seed ^ mix64(index + 1))
    h2 = mix64(h1)
    source_name = _weighted(CHANNELS, h1 & 0xFFFF)
    cancelled = ((h1 >> 16) & 0xFFFF) % 10_000 < CANCELLED_PERCENT_X100
    if cancelled:
        financial = "voided" if (h1 >> 32) & 1 else "refunded"
        fulfillment = "restocked" if financial == "refunded" and (h1 >> 33) & 1 else "unfulfilled"
        delay = HOUR_MS // 2 + (h2 >> 40) % (5 * DAY_MS)
    else:
        financial = _weighted(_FINANCIAL_WEIGHTS_OPEN, (h1 >> 32) & 0xFFFF)
        fulfillment = _weighted(_FULFILLMENT_WEIGHTS_BY_FINANCIAL[financial], (h1 >> 48) & 0xFFFF)
        delay = {
            "unfulfilled": (h2 >> 40) % (2 * HOUR_MS),
            "partial": DAY_MS + (h2 >> 40) % (2 * DAY_MS),
            "fulfilled": DAY_MS + (h2 >> 40) % (5 * DAY_MS),
            "restocked": 2 * DAY_MS + (h2 >> 40) % (8 * DAY_MS),
        }[fulfillment]
    return OrderSummary(
        hash=h1,
        source_name=source_name,
        cancelled=cancelled,
        financial_status=financial,
        fulfillment_status=fulfillment,
        unfulfilled_as_null=bool((h2 >> 8) & 1),
        line_count=_weighted(_LINE_COUNT_WEIGHTS, h2 & 0xFF),
        created_fraction=((h2 >> 16) & 0xFFFFFF) / float(1 << 24),
        updated_delay_ms=int(delay),
    )


# --- ids -------------------------------------------------------------------------------------------------
# All ids of a shop are 13-digit numbers that grow with the order index, so "by orderId" is "by index" and an
# id maps back to its index arithmetically (no lookup table for 100,000 orders).


@dataclass(frozen=True, slots=True)
class IdScheme:
    shop_seed: int

    @property
    def _shop_part(self) -> int:
        return (self.shop_seed % 90) * 10_000_000_000

    def order_id(self, index: int) -> int:
        return 5_000_000_000_000 + self._shop_part + index * 10 + mix64(self.shop_seed + index) % 10

    def index_for_order_id(self, order_id: int, count: int) -> int | None:
        index = (order_id - 5_000_000_000_000 - self._shop_part) // 10
        if 0 <= index < count and self.order_id(index) == order_id:
            return index
        return None

    def first_index_after_order_id(self, order_id: int) -> int:
        """The smallest index whose orderId is greater than `order_id` (for `sinceId`)."""
        index = max(0, (order_id - 5_000_000_000_000 - self._shop_part) // 10)
        while self.order_id(index) <= order_id:
            index += 1
        return index

    def genstore_id(self, index: int) -> str:
        return str(300_157_930_000_000 + self._shop_part // 10 + index * 13 + 7)

    def line_item_id(self, index: int, position: int) -> str:
        return str(1_400_000_000_000 + self._shop_part // 10 + index * 8 + position)

    def generated_fulfillment_id(self, index: int, position: int) -> str:
        return str(6_000_000_000_000 + self._shop_part + index * 4 + position)

    def index_for_generated_fulfillment_id(self, fulfill_id: int) -> tuple[int, int] | None:
        offset = fulfill_id - 6_000_000_000_000 - self._shop_part
        if offset < 0 or offset >= 10_000_000_000:
            return None
        return divmod(offset, 4)

    def created_fulfillment_id(self, counter: int) -> str:
        return str(7_000_000_000_000 + self._shop_part + counter)

    def created_line_item_id(self, counter: int) -> str:
        """Lines of orders created through POST /orders: their own range (an order may have any number)."""
        return str(1_500_000_000_000 + self._shop_part // 10 + counter)


# --- catalog ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Variant:
    product_id: str
    variant_id: str
    sku: str
    title: str
    variant_title: str | None
    price: str  # decimal text, as the API writes money
    price_cents: int
    grams: int
    requires_shipping: bool
    taxable: bool


_MATERIALS = (("Organic Cotton", "ORG"), ("Merino Wool", "MER"), ("Linen", "LIN"), ("Recycled", "REC"),
              ("Bamboo", "BAM"), ("Ceramic", "CER"), ("Walnut", "WAL"), ("Leather", "LEA"), ("Canvas", "CAN"),
              ("Stainless", "STN"))  # fmt: skip
# (name, code, grams, base price, apparel?)
_ITEMS = (
    ("Tee", "TEE", 180, 24, True),
    ("Hoodie", "HOO", 650, 58, True),
    ("Socks", "SOC", 80, 12, True),
    ("Beanie", "BEA", 120, 22, False),
    ("Tote Bag", "TOT", 300, 28, False),
    ("Mug", "MUG", 420, 18, False),
    ("Water Bottle", "BOT", 350, 32, False),
    ("Notebook", "NBK", 250, 14, False),
    ("Candle", "CDL", 380, 26, False),
    ("Cutting Board", "CUT", 900, 45, False),
    ("Wallet", "WLT", 110, 49, False),
    ("Backpack", "BPK", 1100, 89, False),
    ("Scarf", "SCF", 160, 39, False),
)
_SIZES = ("S", "M", "L", "XL")
_COLORS = ("Black", "Oat", "Navy", "Sage", "Rust")
# (title, sku, variant title, price in cents)
_DIGITAL = (
    ("Gift Card", "GC-25", None, 2500),
    ("Gift Card", "GC-50", None, 5000),
    ("Gift Card", "GC-100", None, 10000),
    ("E-book: Caring for Natural Fibres", "EBK-FIB", None, 999),
    ("Extended Warranty", "WAR-2Y", "2 years", 1400),
)


def build_catalog(shop_seed: int) -> tuple[tuple[Variant, ...], tuple[Variant, ...]]:
    """(physical variants, digital variants) of one shop."""
    rng = random.Random(shop_seed)
    physical: list[Variant] = []
    combos = [(m, i) for m in _MATERIALS for i in _ITEMS]
    rng.shuffle(combos)
    next_product = 8_100_000_000_000 + shop_seed % 1_000_000 * 1000
    next_variant = 4_300_000_000_000 + shop_seed % 1_000_000 * 10_000
    for (material, material_code), (item, item_code, grams, base_price, apparel) in combos[:40]:
        next_product += 1
        title = f"{material} {item}"
        price = (base_price + rng.choice((0, 2, 4, 6, 10))) * 100 - 1
        colors = rng.sample(_COLORS, rng.randint(1, 3))
        options: list[tuple[str | None, str]]
        if apparel:
            options = [(f"{size} / {color}", f"{color[:3].upper()}-{size}") for color in colors for size in _SIZES]
        elif rng.random() < 0.3:
            options = [(None, "OS")]
        else:
            options = [(color, color[:3].upper()) for color in colors]
        for variant_title, suffix in options:
            next_variant += 1
            physical.append(
                Variant(
                    product_id=str(next_product),
                    variant_id=str(next_variant),
                    sku=f"{item_code}-{material_code}-{suffix}",
                    title=title,
                    variant_title=variant_title,
                    price=money(price),
                    price_cents=price,
                    grams=grams + rng.randint(-10, 10),
                    requires_shipping=True,
                    taxable=True,
                )
            )
    digital: list[Variant] = []
    for title, sku, variant_title, price in _DIGITAL:
        next_product += 1
        next_variant += 1
        digital.append(
            Variant(
                str(next_product),
                str(next_variant),
                sku,
                title,
                variant_title,
                money(price),
                price,
                0,
                False,
                not sku.startswith("GC"),
            )
        )
    return tuple(physical), tuple(digital)


# --- tracking numbers (valid check digits, so OMA's carrier detection accepts them) -------------------------


def _mod10_check(sequence: str, *, evens_multiplier: int, odds_multiplier: int, reverse: bool = False) -> int:
    chars = sequence[::-1] if reverse else sequence
    total = 0
    for position, char in enumerate(chars):
        digit = int(char) if char.isdigit() else (ord(char) - 3) % 10
        total += digit * (evens_multiplier if position % 2 == 0 else odds_multiplier)
    remainder = total % 10
    return 0 if remainder == 0 else 10 - remainder


def ups_tracking_number(rng: random.Random) -> str:
    alphabet = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"
    shipper = "".join(rng.choice(alphabet) for _ in range(6))
    body = shipper + rng.choice(("01", "02", "03", "12", "13")) + f"{rng.randrange(10**7):07d}"
    return "1Z" + body + str(_mod10_check(body, evens_multiplier=1, odds_multiplier=2))


def usps_tracking_number(rng: random.Random) -> str:
    body = f"94001{rng.randrange(10**16):016d}"
    return body + str(_mod10_check(body, evens_multiplier=3, odds_multiplier=1, reverse=True))


def fedex_tracking_number(rng: random.Random) -> str:
    serial = _digits(rng, 11)
    weights = (3, 1, 7, 3, 1, 7, 3, 1, 7, 3, 1)
    check = sum(int(d) * w for d, w in zip(serial, weights, strict=True)) % 11 % 10
    return serial + str(check)


def dhl_tracking_number(rng: random.Random) -> str:
    serial = rng.randint(100_000_000, 999_999_999)
    return f"{serial}{serial % 7}"


CARRIERS: tuple[tuple[str, Any, str], ...] = (
    ("UPS", ups_tracking_number, "https://www.ups.com/track?tracknum={}"),
    ("USPS", usps_tracking_number, "https://tools.usps.com/go/TrackConfirmAction?tLabels={}"),
    ("FedEx", fedex_tracking_number, "https://www.fedex.com/fedextrack/?trknbr={}"),
    ("DHL Express", dhl_tracking_number, "https://www.dhl.com/en/express/tracking.html?AWB={}"),
)


def tracking_for(rng: random.Random) -> tuple[str, str, str]:
    company, make, url = CARRIERS[rng.randrange(len(CARRIERS))]
    number = make(rng)
    return number, company, url.format(number)


# --- external order ids ------------------------------------------------------------------------------------


def _digits(rng: random.Random, count: int) -> str:
    """`count` random digits, the first not zero."""
    return str(rng.randrange(10 ** (count - 1), 10**count))


def source_identifier_for(source_name: str, rng: random.Random) -> str | None:
    if source_name == "amazon":
        return f"{rng.choice(('111', '112', '113', '114'))}-{_digits(rng, 7)}-{_digits(rng, 7)}"
    if source_name == "ebay":
        return f"{_digits(rng, 2)}-{_digits(rng, 5)}-{_digits(rng, 5)}"
    if source_name == "shipbob":
        return _digits(rng, 9)
    if source_name == "walmart":
        return "10" + _digits(rng, 11)
    if source_name == "tiktok":
        return "5764" + _digits(rng, 14)
    return None  # web, pos, instagram: the order lives on Genstore only


# --- the order body ----------------------------------------------------------------------------------------

_FIRST_NAMES = ("ava", "liam", "mia", "noah", "zoe", "ethan", "isla", "omar", "lena", "kai", "sofia", "yuki")
_LAST_NAMES = ("garcia", "chen", "smith", "okafor", "nguyen", "muller", "rossi", "silva", "kowalski", "haddad")
_TAGS = ("vip", "wholesale", "gift", "preorder", "subscription", "first-order", "influencer", "b2b", "rush")
_CURRENCIES = (("USD", 80), ("CAD", 8), ("EUR", 6), ("GBP", 6))
_GATEWAYS = {
    "web": (("Credit Card",), ("PayPal",), ("Credit Card", "Gift Card")),
    "pos": (("cash",), ("Credit Card",)),
    "instagram": (("Credit Card",), ("Shop Pay",)),
    "tiktok": (("TikTok Pay",),),
    "amazon": (("Amazon",),),
    "ebay": (("eBay Managed Payments",),),
    "shipbob": (("Credit Card",),),
    "walmart": (("Walmart",),),
}


def money(cents: int) -> str:
    """Cents as the API's decimal text: 1999 -> "19.99"."""
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}{whole}.{part:02d}"


def cents(text: str) -> int:
    return int((Decimal(text) * 100).to_integral_value())


def generate_order(
    *,
    ids: IdScheme,
    catalog: tuple[tuple[Variant, ...], tuple[Variant, ...]],
    index: int,
    summary: OrderSummary,
    created_ms: int,
    updated_ms: int,
) -> dict[str, Any]:
    rng = random.Random(summary.hash)
    physical, digital = catalog
    order_id = str(ids.order_id(index))

    lines: list[dict[str, Any]] = []
    prices: list[int] = []
    chosen: set[str] = set()
    for position in range(summary.line_count):
        pool = digital if rng.random() < 0.07 else physical
        variant = rng.choice(pool)
        if variant.sku in chosen:
            variant = next(v for v in physical if v.sku not in chosen)
        chosen.add(variant.sku)
        prices.append(variant.price_cents)
        quantity = 1 if not variant.requires_shipping or rng.random() < 0.7 else rng.randint(2, 4)
        lines.append(
            {
                "id": ids.line_item_id(index, position),
                "productId": variant.product_id,
                "variantId": variant.variant_id,
                "sku": variant.sku,
                "title": variant.title,
                "variantTitle": variant.variant_title,
                "quantity": quantity,
                "fulfillableQuantity": quantity,
                "fulfillmentStatus": None,
                "requiresShipping": variant.requires_shipping,
                "taxable": variant.taxable,
                "price": variant.price,
                "grams": variant.grams,
            }
        )

    status = summary.fulfillment_status
    if status == "partial" and sum(line["quantity"] for line in lines) < 2:
        lines[0]["quantity"] = lines[0]["fulfillableQuantity"] = 2  # a partial order needs two units at least

    fulfillments: list[dict[str, Any]] = []
    if status in ("fulfilled", "partial"):
        if status == "fulfilled":
            shipped = [(line, line["quantity"]) for line in lines]
        elif len(lines) == 1:
            shipped = [(lines[0], lines[0]["quantity"] - 1)]
        else:
            shipped = [(line, line["quantity"]) for line in lines[: rng.randint(1, len(lines) - 1)]]
        physical_part = [(line, qty) for line, qty in shipped if line["requiresShipping"]]
        digital_part = [(line, qty) for line, qty in shipped if not line["requiresShipping"]]
        span = max(updated_ms - created_ms, 1)
        for position, part in enumerate(p for p in (physical_part, digital_part) if p):
            has_tracking = part is physical_part and rng.random() < 0.95
            number, company, url = tracking_for(rng) if has_tracking else (None, None, None)
            shipped_ms = created_ms + span // 3 + rng.randrange(max(span // 3, 1))
            shipped_ms -= shipped_ms % 1000
            shipment_status = None
            if has_tracking:
                shipment_status = rng.choice((None, "confirmed", "in_transit", "in_transit", "delivered", "delivered"))
            fulfillments.append(
                {
                    "fulfillId": ids.generated_fulfillment_id(index, position),
                    "orderId": order_id,
                    "status": "success",
                    "shipmentStatus": shipment_status,
                    "trackingNumber": number,
                    "trackingCompany": company,
                    "trackingUrl": url,
                    "lineItems": [{"id": line["id"], "quantity": qty} for line, qty in part],
                    "createdAt": shipped_ms,
                    "updatedAt": max(shipped_ms, min(updated_ms, shipped_ms + DAY_MS)),
                }
            )
            for line, qty in part:
                line["fulfillableQuantity"] -= qty
                line["fulfillmentStatus"] = "fulfilled" if line["fulfillableQuantity"] == 0 else "partial"

    if summary.cancelled or status == "restocked":
        for line in lines:
            if status == "restocked":
                line["fulfillmentStatus"] = "restocked"
            line["fulfillableQuantity"] = 0

    currency = _weighted(_CURRENCIES, rng.randrange(100))
    subtotal = sum(prices[position] * line["quantity"] for position, line in enumerate(lines))
    discount = (subtotal + 5) // 10 if rng.random() < 0.15 else 0  # 10 % off
    tax_rate_bp = rng.choice((0, 500, 725, 800, 1300))  # basis points
    tax = ((subtotal - discount) * tax_rate_bp + 5000) // 10_000
    needs_shipping = any(line["requiresShipping"] for line in lines)
    shipping = rng.choice((0, 499, 999)) if needs_shipping else 0
    total = subtotal - discount + tax + shipping

    tag_count = rng.choice((0, 0, 1, 1, 2, 3))
    tags = sorted(rng.sample(_TAGS, tag_count))
    if summary.source_name not in ("web", "pos"):
        tags.append(summary.source_name)

    first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
    order: dict[str, Any] = {
        "id": ids.genstore_id(index),
        "orderId": order_id,
        "name": f"#{1001 + index}",
        "sourceName": summary.source_name,
        "sourceIdentifier": source_identifier_for(summary.source_name, rng),
        "financialStatus": summary.financial_status,
        "fulfillmentStatus": _fulfillment_status_value(status, summary.unfulfilled_as_null),
        "cancelledAt": None,
        "cancelReason": None,
        "createdAt": created_ms,
        "updatedAt": updated_ms,
        "email": f"{first}.{last}{rng.randint(1, 999)}@example.com",
        "currency": currency,
        "subtotalPrice": money(subtotal),
        "totalDiscounts": money(discount),
        "totalTax": money(tax),
        "totalShippingPrice": money(shipping),
        "totalPrice": money(total),
        "paymentGatewayNames": list(rng.choice(_GATEWAYS[summary.source_name])),
        "tags": tags,
        "note": rng.choice((None, None, None, "Leave at the back door", "Gift wrap please")),
        "lineItems": lines,
        "fulfillments": fulfillments,
    }
    if summary.cancelled:
        order["cancelledAt"] = max(created_ms, updated_ms - rng.randrange(HOUR_MS))
        order["cancelReason"] = rng.choice(CANCEL_REASONS)
    return order


def _fulfillment_status_value(status: str, unfulfilled_as_null: bool) -> str | None:
    if status == "unfulfilled":
        return None if unfulfilled_as_null else "unfulfilled"
    return status


def recompute_fulfillment_status(order: dict[str, Any]) -> None:
    """Roll the active fulfillments up into line and order statuses (after a fulfillment is created or cancelled).

    A restocked order keeps its status; a cancelled order has nothing left to fulfil.
    """
    if order["fulfillmentStatus"] == "restocked":
        return
    shipped: dict[str, int] = {}
    for fulfillment in order["fulfillments"]:
        if fulfillment["status"] in ("cancelled", "error", "failure"):
            continue
        for part in fulfillment["lineItems"]:
            shipped[part["id"]] = shipped.get(part["id"], 0) + part["quantity"]
    cancelled = order["cancelledAt"] is not None
    for line in order["lineItems"]:
        done = min(shipped.get(line["id"], 0), line["quantity"])
        line["fulfillableQuantity"] = 0 if cancelled else line["quantity"] - done
        line["fulfillmentStatus"] = "fulfilled" if done == line["quantity"] else "partial" if done else None
    if all(line["fulfillmentStatus"] == "fulfilled" for line in order["lineItems"]):
        order["fulfillmentStatus"] = "fulfilled"
    elif any(line["fulfillmentStatus"] for line in order["lineItems"]):
        order["fulfillmentStatus"] = "partial"
    else:  # keep the order's own way of saying "unfulfilled"
        order["fulfillmentStatus"] = "unfulfilled" if order["fulfillmentStatus"] == "unfulfilled" else None


def fulfillment_status_code(value: str | None) -> int:
    return FULFILLMENT_STATUSES.index(value) if value else 0


# --- timestamps ---------------------------------------------------------------------------------------------


_DAY_PREFIX: dict[int, str] = {}


def iso_from_ms(ms: int, *, offset_minutes: int = 0) -> str:
    """ISO 8601: `Z` for UTC, else `+HH:MM`; milliseconds only when there are some."""
    seconds, millis = divmod(ms + offset_minutes * 60_000, 1000)
    day, second_of_day = divmod(seconds, 86_400)
    prefix = _DAY_PREFIX.get(day)
    if prefix is None:  # the date part, computed once per day: formatting is on the hot path of every page
        prefix = _DAY_PREFIX[day] = datetime.fromtimestamp(day * 86_400, UTC).strftime("%Y-%m-%dT")
    hours, rest = divmod(second_of_day, 3600)
    text = f"{prefix}{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    if millis:
        text += f".{millis:03d}"
    if offset_minutes == 0:
        return text + "Z"
    sign = "+" if offset_minutes > 0 else "-"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


def datetime_from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def ms_from_datetime(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


def parse_iso_ms(text: str) -> int:
    """Parse an ISO 8601 query value (`Z` or offset, optional fraction) into epoch ms; ValueError if not a date."""
    value = text.strip().replace(" ", "+")  # a `+` in a query string often arrives decoded as a space
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    return ms_from_datetime(parsed)
