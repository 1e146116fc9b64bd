"""Reads for the webhook app."""

from __future__ import annotations

from oma.stores.models import Store


def store_for_webhook(domain: str) -> Store | None:
    """The store a delivery names in X-Genstore-Shop-Domain, with only what verifying it needs.

    Inactive stores are found too: after app/uninstalled, Genstore still sends the compliance topics.
    """
    domain = domain.strip().lower()
    if not domain or len(domain) > 255:
        return None
    try:
        return Store.objects.only("id", "domain", "client_secret", "previous_client_secret").get(domain=domain)
    except Store.DoesNotExist:
        return None
