"""Signed, permanent customer tracking links: /track/<token>/ (the tracking page's side of them).

The token itself is made and checked in oma.fulfillment.tracking_links, which the fulfillment push also uses to put
the link on the Genstore order; this module keeps the names the page, admin, exports and emails import.
"""

from __future__ import annotations

from oma.fulfillment.tracking_links import (
    SALT,
    order_id_from_token,
    tracking_page_url_for,
    tracking_path_for,
    tracking_token_for,
)

__all__ = ["SALT", "order_id_from_token", "tracking_page_url_for", "tracking_path_for", "tracking_token_for"]
