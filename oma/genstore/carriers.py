"""What Genstore's `trackingCompany` says for a carrier code: the carrier's display name, as customers know it.

Keyed by plain strings: the carrier codes of the tracking engine (tracking.models.CarrierCode and the courier codes
of tracking/detection/formats.py), which this package may not import; tests/genstore/test_carriers.py checks that
every one of those codes has its name here. S10 numbers belong to a national post, named from the number's country
suffix.
"""

from __future__ import annotations

__all__ = ["AGGREGATOR_CODES", "CARRIER_DISPLAY_NAMES", "S10_POSTS", "UNKNOWN_CARRIER_NAME", "tracking_company_for"]

# 17TRACK is an aggregator, not a carrier: a number tracked through it names no carrier.
AGGREGATOR_CODES: frozenset[str] = frozenset({"17track"})

CARRIER_DISPLAY_NAMES: dict[str, str] = {
    "ups": "UPS",
    "fedex": "FedEx",
    "usps": "USPS",
    "dhl": "DHL",
    "dhl_express": "DHL Express",
    "dhl_ecommerce": "DHL eCommerce",
    "canada_post": "Canada Post",
    "royal_mail": "Royal Mail",
    "amazon": "Amazon Logistics",
    "dpd": "DPD",
    "ontrac": "OnTrac",
    "lasership": "LaserShip",
    "purolator": "Purolator",
    "yodel": "Yodel",
    "yunexpress": "YunExpress",
    "landmark": "Landmark Global",
    "gofo": "GOFO Express",
    "speedee": "Spee-Dee Delivery",
    "old_dominion": "Old Dominion",
    "canpar": "Canpar",
    "australia_post": "Australia Post",
    "china_post": "China Post",
    "japan_post": "Japan Post",
    "la_poste": "La Poste",
    "deutsche_post": "Deutsche Post",
    "postnl": "PostNL",
    "gls": "GLS",
    "evri": "Evri",
    "cainiao": "Cainiao",
    "4px": "4PX",
    "yanwen": "Yanwen",
}

# S10 (UPU) numbers end in the issuing post's ISO country code.
S10_POSTS: dict[str, str] = {
    "US": "USPS",
    "CA": "Canada Post",
    "GB": "Royal Mail",
    "CN": "China Post",
    "AU": "Australia Post",
    "JP": "Japan Post",
    "FR": "La Poste",
    "DE": "Deutsche Post",
    "NL": "PostNL",
    "HK": "Hongkong Post",
    "SG": "Singapore Post",
    "IN": "India Post",
    "NZ": "NZ Post",
}

# Genstore's fallback when the carrier is not known (Shopify-style "Other").
UNKNOWN_CARRIER_NAME = "Other"


def tracking_company_for(carrier: str, tracking_number: str = "") -> str:
    """The `trackingCompany` to send for a shipment of this carrier code (and number, for S10 posts)."""
    code = (carrier or "").strip().lower()
    if not code or code in AGGREGATOR_CODES:
        return UNKNOWN_CARRIER_NAME
    if code == "s10":
        return S10_POSTS.get(tracking_number[-2:].upper(), "Postal service")
    return CARRIER_DISPLAY_NAMES.get(code) or code.replace("_", " ").replace("-", " ").title()
