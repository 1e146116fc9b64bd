"""What management commands need from stores: the one store lookup (and its one "unknown store" message), and a
quick check that a store's Genstore API can be reached at all before a command starts work that retries.

A person running `sync_orders` against a mistyped API address should not wait through eight retries (41 s) to
learn that the name does not resolve: `genstore_reachable` makes one attempt, without retries, and stops the
command with one line when the connection could not even be made (DNS, refused, connect timeout). Any answer,
even an error, means the API is there: the command's own calls (with their retries) go on and report it. Celery
tasks never call this: background work keeps its retries.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.core.management.base import CommandError

from oma.core.cli import connection_problem
from oma.genstore.errors import GenstoreClientError, GenstoreError, GenstoreTransportError
from oma.stores.domains import InvalidStoreDomain, store_domain_normalize
from oma.stores.models import Store
from oma.stores.services import genstore_client_for

KNOWN_STORES_SHOWN = 20


def unknown_store_message(value: str) -> str:
    """`unknown store 'x'; known stores: a.genmystore.com, b.genmystore.com` (or how to connect the first one)."""
    known = list(Store.objects.order_by("domain").values_list("domain", flat=True)[: KNOWN_STORES_SHOWN + 1])
    if not known:
        return f"unknown store {value!r}; no stores yet: connect one with connect_store"
    listed = ", ".join(known[:KNOWN_STORES_SHOWN])
    more = " and more" if len(known) > KNOWN_STORES_SHOWN else ""
    return f"unknown store {value!r}; known stores: {listed}{more}"


def store_for_cli(value: str, *, active: bool = False) -> Store:
    """The store a command's `--store` names: its domain as typed or pasted (any case, even a URL), or its id.
    CommandError with `unknown_store_message` when there is none; with `active`, also for an inactive store."""
    text = str(value).strip()
    store = None
    if text.isdigit():
        store = Store.objects.filter(pk=int(text)).first()
    if store is None and text:
        store = Store.objects.filter(domain=store_domain_normalize(text)).first()
    if store is None:
        raise CommandError(unknown_store_message(text))
    if active and not store.is_active:
        raise CommandError(f"store {store.domain} is inactive (uninstalled or deactivated); reconnect it first")
    return store


def stores_for_cli(values: Iterable[str]) -> list[Store]:
    """Several `--store` values (a repeated option): every one must name a store."""
    return [store_for_cli(value) for value in values]


def genstore_reachable(store: Store) -> None:
    """Stop the command (CommandError, one line) when the store's Genstore API cannot be connected to at all.
    One request (GET /shops/info), no retry; `store` may be unsaved (connect_store checks before saving)."""
    try:
        client = genstore_client_for(store)
    except GenstoreClientError as exc:
        raise CommandError(str(exc)) from None
    client.max_retries = 0  # the client reads it per call (oma.genstore.client)
    try:
        client.shop_info()
    except GenstoreTransportError as exc:
        problem = connection_problem(exc)
        if problem:
            where = _api_address(store)
            raise CommandError(f"cannot reach Genstore for {store.domain} at {where}: {problem}") from None
    except GenstoreError:
        pass  # an answer: the API is there; the command's own calls report what it said
    finally:
        client.close()


def _api_address(store: Store) -> str:
    try:
        return store.resolved_api_base_url
    except InvalidStoreDomain:
        return store.domain
