"""Reads for the webhook app."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Field

from oma.core.crypto import decrypt
from oma.genstore.webhooks import WebhookVerifier
from oma.stores.models import Store


@dataclass(frozen=True, slots=True)
class WebhookStore:
    """What receiving a delivery needs of its store: its id and domain, and verifiers keyed with its secrets
    (the current one alone, and current plus previous while a rotation completes). Not a model: never saved."""

    pk: int
    domain: str
    current_secret: WebhookVerifier
    any_secret: WebhookVerifier


# domain -> (fetched at, store). The verifiers hold keyed HMAC states, not the secrets' text.
_stores: dict[str, tuple[float, WebhookStore]] = {}
_stores_lock = threading.Lock()


@lru_cache(maxsize=1)
def _store_by_domain_sql() -> str:
    meta = Store._meta
    quote = connection.ops.quote_name

    def column(name: str) -> str:
        field = meta.get_field(name)
        assert isinstance(field, Field) and field.column is not None  # concrete columns of Store
        return quote(field.column)

    columns = ", ".join(column(name) for name in ("id", "domain", "client_secret", "previous_client_secret"))
    # Identifiers come from the model's metadata, the value is a parameter.
    return f"SELECT {columns} FROM {quote(meta.db_table)} WHERE {column('domain')} = %s"  # noqa: S608


def _fetch_store_row(domain: str) -> tuple[Any, ...] | None:
    with connection.cursor() as cursor:
        cursor.execute(_store_by_domain_sql(), [domain])
        return cursor.fetchone()


def _webhook_store(row: tuple[Any, ...]) -> WebhookStore:
    store_id, store_domain, secret, previous = row
    current = decrypt(secret) if secret else ""
    return WebhookStore(
        pk=store_id,
        domain=store_domain,
        current_secret=WebhookVerifier([current]),
        any_secret=WebhookVerifier([current, decrypt(previous) if previous else ""]),
    )


def store_for_webhook(domain: str, *, fresh: bool = False) -> WebhookStore | None:
    """The store a delivery names in X-Genstore-Shop-Domain, with what verifying it needs.

    This runs on every delivery, so the row is read with one plain SELECT, its secrets decrypted and keyed once,
    and the result kept for a few seconds per process (OMA_WEBHOOK_STORE_CACHE_SECONDS). The caller asks again
    with `fresh=True` when a signature does not match, so a secret changed in another process is seen at once;
    saving a store clears its entry in this process. Unknown shops are never cached. Inactive stores are found
    too: after app/uninstalled, Genstore still sends the compliance topics.
    """
    domain = domain.strip().lower()
    # Control characters are never in a domain, and a NUL would make the database refuse the query (a 5xx).
    if not domain or len(domain) > 255 or not domain.isprintable():
        return None
    ttl = settings.OMA_WEBHOOK_STORE_CACHE_SECONDS
    now = time.monotonic()
    cached = None if fresh or ttl <= 0 else _stores.get(domain)
    if cached is not None and now - cached[0] < ttl:
        return cached[1]
    row = _fetch_store_row(domain)
    store = _webhook_store(row) if row is not None else None
    with _stores_lock:
        if store is None:
            _stores.pop(domain, None)
        elif ttl > 0:
            if len(_stores) > 10_000:
                _stores.clear()
            _stores[domain] = (now, store)
    return store


def store_for_webhook_forget(domain: str) -> None:
    with _stores_lock:
        _stores.pop(domain.strip().lower(), None)


def forget_store_on_change(sender: type[Store], instance: Store, **kwargs: object) -> None:
    """post_save/post_delete of a Store (connected in WebhooksConfig.ready): the next delivery reads it afresh."""
    store_for_webhook_forget(instance.domain)
