"""Signed, permanent unsubscribe links: /notifications/unsubscribe/<token>/, one per order.

The token is the order's (store id, order pk) signed with SECRET_KEY under a salt of its own, so a tracking-page
token (oma.merchant.tokens) never unsubscribes anyone and neither token can be forged. It does not expire: a
customer may click it in an old email.
"""

from __future__ import annotations

from django.core import signing
from django.urls import reverse

from oma.orders.models import Order

SALT = "oma.notifications.unsubscribe"


def _signer() -> signing.Signer:
    return signing.Signer(salt=SALT)


def unsubscribe_token_for(order: Order) -> str:
    return _signer().sign_object([order.store_id, order.pk])


def order_ids_from_unsubscribe_token(token: str) -> tuple[int, int] | None:
    """(store id, order pk) from a genuine token, or None for anything tampered with or malformed."""
    try:
        value = _signer().unsign_object(token)
    except (signing.BadSignature, ValueError, TypeError, UnicodeDecodeError):
        return None
    if not (isinstance(value, list) and len(value) == 2 and all(type(part) is int for part in value)):
        return None
    return value[0], value[1]


def unsubscribe_path_for(order: Order) -> str:
    return reverse("notifications:unsubscribe", args=[unsubscribe_token_for(order)])
