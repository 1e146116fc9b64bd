"""Signed, permanent customer tracking links: /track/<token>/, as a path and as the absolute URL pushed to Genstore.

The token is the order's (store id, order pk) signed with SECRET_KEY (django.core.signing, its own salt), so it
cannot be forged or altered; it does not expire, because stores put it in emails customers keep and Genstore keeps
it as the fulfillment's `trackingUrl`. Rotating SECRET_KEY (with SECRET_KEY_FALLBACKS during the switch) is how
every link would be revoked.

It lives here, below oma.merchant (which serves the page and re-exports these from oma.merchant.tokens), because
the fulfillment push puts the link on the Genstore order.
"""

from __future__ import annotations

from django.core import signing
from django.urls import reverse

from oma.orders.models import Order

SALT = "oma.merchant.track"


def _signer() -> signing.Signer:
    return signing.Signer(salt=SALT)


def tracking_token_for(order: Order) -> str:
    return _signer().sign_object([order.store_id, order.pk])


def order_id_from_token(token: str) -> tuple[int, int] | None:
    """(store id, order pk) from a genuine token, or None for anything tampered with or malformed."""
    try:
        value = _signer().unsign_object(token)
    except (signing.BadSignature, ValueError, TypeError, UnicodeDecodeError):
        return None
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(part, int) for part in value)):
        return None
    return value[0], value[1]


def tracking_path_for(order: Order) -> str:
    return reverse("track:order", args=[tracking_token_for(order)])


def tracking_page_url_for(order: Order, *, public_url: str) -> str:
    """The absolute link to the order's tracking page on OMA's public address; "" when that address is unknown."""
    base = (public_url or "").strip().rstrip("/")
    return base + tracking_path_for(order) if base else ""
