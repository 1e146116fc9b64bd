"""Reads for the webhook app."""

from __future__ import annotations

import threading
import time
from functools import lru_cache
from typing import Any

from django.db import connection

from oma.core.crypto import decrypt
from oma.stores.models import Store
from webhooks.conf import webhook_setting

# domain -> (fetched at, row): the secrets as stored (encrypted), so no plaintext outlives a request.
_store_rows: dict[str, tuple[float, tuple[Any, ...]]] = {}
_store_rows_lock = threading.Lock()


@lru_cache(maxsize=1)
def _store_by_domain_sql() -> str:
    meta = Store._meta
    quote = connection.ops.quote_name
    columns = ", ".join(
        quote(meta.get_field(name).column) for name in ("id", "domain", "client_secret", "previous_client_secret")
    )
    # Identifiers come from the model's metadata, the value is a parameter.
    return f"SELECT {columns} FROM {quote(meta.db_table)} WHERE {quote(meta.get_field('domain').column)} = %s"  # noqa: S608


def _fetch_store_row(domain: str) -> tuple[Any, ...] | None:
    with connection.cursor() as cursor:
        cursor.execute(_store_by_domain_sql(), [domain])
        return cursor.fetchone()


def store_for_webhook(domain: str, *, fresh: bool = False) -> Store | None:
    """The store a delivery names in X-Genstore-Shop-Domain, with only what verifying it needs (id, domain and
    the two secrets; not a full row: never save it).

    This runs on every delivery, so the row is read with one plain SELECT and kept for a few seconds per process
    (OMA_WEBHOOK_STORE_CACHE_SECONDS). The caller asks again with `fresh=True` when a signature does not match, so a
    secret changed in another process is seen at once; saving a store clears its entry in this process. Unknown
    shops are never cached. Inactive stores are found too: after app/uninstalled, Genstore still sends the
    compliance topics.
    """
    domain = domain.strip().lower()
    if not domain or len(domain) > 255:
        return None
    ttl = webhook_setting("OMA_WEBHOOK_STORE_CACHE_SECONDS")
    now = time.monotonic()
    cached = None if fresh or ttl <= 0 else _store_rows.get(domain)
    if cached is not None and now - cached[0] < ttl:
        row = cached[1]
    else:
        row = _fetch_store_row(domain)
        with _store_rows_lock:
            if row is None:
                _store_rows.pop(domain, None)
            elif ttl > 0:
                if len(_store_rows) > 10_000:
                    _store_rows.clear()
                _store_rows[domain] = (now, row)
    if row is None:
        return None
    store_id, store_domain, secret, previous = row
    return Store(
        id=store_id,
        domain=store_domain,
        client_secret=decrypt(secret) if secret else "",
        previous_client_secret=decrypt(previous) if previous else "",
    )


def store_for_webhook_forget(domain: str) -> None:
    with _store_rows_lock:
        _store_rows.pop(domain.strip().lower(), None)
