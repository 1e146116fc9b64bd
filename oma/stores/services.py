"""Connecting stores and building their Genstore clients."""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.utils import timezone

from oma.core.leases import lease_release, lease_renew, lease_take
from oma.core.ratelimit import RateLimiter, rate_limiter_for
from oma.core.redis import get_redis
from oma.genstore.bucket import GENSTORE_BUCKET
from oma.genstore.client import BUCKET_KEY_PREFIX, GenstoreClient
from oma.genstore.errors import GenstoreClientError
from oma.stores.domains import (
    InvalidStoreDomain,
    is_plain_host_name,
    store_domain_normalize,
    store_domain_problem,
)
from oma.stores.models import Store

logger = logging.getLogger(__name__)


def genstore_limiter() -> RateLimiter:
    """The Genstore token buckets: in Redis, shared by every process, when REDIS_URL is set; else one bucket per
    process (embedded mode runs a single worker, the only process that calls Genstore)."""
    return rate_limiter_for(get_redis(), key_prefix=BUCKET_KEY_PREFIX)


def genstore_limiter_key(store: Store) -> str:
    """The store's bucket in the limiter (one per store domain, whoever calls)."""
    return f"genstore:{store.domain}"


@dataclass(frozen=True)
class GenstoreBucket:
    """The Genstore bucket OMA paces a store by now: `source` is "pinned" (the store's figures), "learned" (from
    its answers, oma.genstore.bucket) or "starting" (nothing learned yet: the contract's figures)."""

    capacity: int
    refill_per_second: float
    source: str

    @property
    def label(self) -> str:
        return f"{self.capacity}/{self.refill_per_second:g} ({self.source})"


def genstore_bucket(store: Store) -> GenstoreBucket:
    if store.rate_limit_capacity is not None and store.rate_limit_refill_per_second is not None:
        return GenstoreBucket(store.rate_limit_capacity, store.rate_limit_refill_per_second, "pinned")
    learned = genstore_limiter().learned(genstore_limiter_key(store))
    if learned is not None:
        return GenstoreBucket(learned[0], learned[1], "learned")
    return GenstoreBucket(GENSTORE_BUCKET.start_capacity, GENSTORE_BUCKET.start_refill, "starting")


def genstore_client_for(store: Store) -> GenstoreClient:
    """A client for this store (one HTTP session: close it, or use it as a context manager, when done).
    GenstoreClientError, before anything is sent, for a store whose domain OMA does not connect."""
    try:
        base_url = store.resolved_api_base_url
    except InvalidStoreDomain as exc:
        raise GenstoreClientError(f"store {store.domain!r} cannot be called: {exc}") from None
    return GenstoreClient(
        base_url=base_url,
        api_version=store.api_version,
        access_token=store.access_token,
        limiter=genstore_limiter(),
        limiter_key=genstore_limiter_key(store),
        # Both None unless the store pins its bucket: then the client learns it.
        bucket_capacity=store.rate_limit_capacity,
        bucket_refill_per_second=store.rate_limit_refill_per_second,
        connect_timeout=settings.GENSTORE_CONNECT_TIMEOUT,
        read_timeout=settings.GENSTORE_READ_TIMEOUT,
        max_retries=settings.GENSTORE_MAX_RETRIES,
        fulfillment_create_path=store.fulfillment_create_path,
        on_fulfillment_create_path=partial(store_fulfillment_create_path_save, store),
    )


def genstore_client_key(store: Store) -> tuple[int, str, str]:
    """What a client from genstore_client_for depends on: a cache keyed by it builds a new client for a changed
    store (token, URL, a pinned bucket: updated_at) and for a create path learned by another client (a learned
    bucket lives in the limiter, shared: no new client needed)."""
    return store.pk, store.updated_at.isoformat() if store.updated_at else "", store.fulfillment_create_path


def store_fulfillment_create_path_save(store: Store, path: str) -> None:
    """Keep the fulfillment create path the store answered on, so its next clients try it first."""
    if path and path != store.fulfillment_create_path:
        Store.objects.filter(pk=store.pk).update(fulfillment_create_path=path)
        store.fulfillment_create_path = path


class StoreNotFound(Exception):
    """No store has the domain asked for; the message names the stores there are."""


def store_get_by_domain(*, domain: str) -> Store:
    """The store with this domain, as an operator types or pastes it (for commands)."""
    store = Store.objects.filter(domain=store_domain_normalize(domain)).first()
    if store is None:
        known = list(Store.objects.order_by("domain").values_list("domain", flat=True)[:10])
        hint = f"known stores: {', '.join(known)}" if known else "no store is connected yet"
        raise StoreNotFound(f"no store {domain!r} ({hint}); connect it with connect_store")
    return store


def parse_rate_limit(value: str) -> tuple[int, float]:
    """'40/2' -> (40, 2.0): bucket capacity / refill per second."""
    try:
        capacity_text, refill_text = value.split("/", 1)
        capacity, refill = int(capacity_text), float(refill_text)
    except ValueError as exc:
        raise ValueError(f"rate limit must look like CAPACITY/REFILL, e.g. 40/2 (got {value!r})") from exc
    if capacity < 1 or not 0 < refill < math.inf:
        raise ValueError(f"rate limit needs a capacity >= 1 and a refill > 0 (got {value!r})")
    return capacity, refill


class StoreConnectRefused(ValueError):
    """store_connect will not connect this store (a domain OMA does not connect, or a token of another shop);
    nothing was saved. The message is fit for a form or a command's error."""


@dataclass(frozen=True)
class ConnectResult:
    store: Store
    created: bool
    verified_shop_name: str | None


def store_connect(
    *,
    domain: str,
    access_token: str,
    client_secret: str,
    api_base_url: str = "",
    name: str = "",
    rate_limit: tuple[int, float] | None = None,
    verify: bool = True,
) -> ConnectResult:
    """Create or update a store; unless told not to, prove the token works with GET /shops/info first.

    The domain must be a Genstore shop domain (see oma.stores.domains), and the shop Genstore says the token
    belongs to must be that very domain: otherwise StoreConnectRefused, before any request for a bad domain.
    Verification happens before anything is saved, so a wrong token never overwrites a working one.
    A changed client secret is kept as the previous one, so webhooks signed during the switch still verify.
    """
    domain = store_domain_normalize(domain)
    problem = store_domain_problem(domain)
    if problem:
        raise StoreConnectRefused(problem)
    existing = Store.objects.filter(domain=domain).first()
    store = existing or Store(domain=domain)
    store.access_token = access_token
    if existing and existing.client_secret and existing.client_secret != client_secret:
        store.previous_client_secret = existing.client_secret
    store.client_secret = client_secret
    if api_base_url:
        store.api_base_url = api_base_url.rstrip("/")
    if rate_limit:
        store.rate_limit_capacity, store.rate_limit_refill_per_second = rate_limit
    shop_name = None
    if verify:
        with genstore_client_for(store) as client:
            shop = client.shop_info()  # raises GenstoreAuthError on a bad token
        # A token opens one shop: connecting it under another shop's domain would squat that domain.
        shop_domain = store_domain_normalize(shop.domain or "")
        if shop_domain != domain:
            if not shop_domain:
                raise StoreConnectRefused(f"Genstore did not say which shop this token belongs to: {domain} was "
                                          "not connected.")
            owner = shop_domain if is_plain_host_name(shop_domain) else "another shop"
            raise StoreConnectRefused(f"This token belongs to {owner}, not to {domain}: check the store domain.")
        shop_name = shop.name
        store.genstore_shop_id = shop.id or store.genstore_shop_id
    store.name = name or store.name or shop_name or domain
    store.is_active = True
    store.save()
    logger.info("store connected: %s (created=%s, verified=%s)", domain, existing is None, verify)
    return ConnectResult(store=store, created=existing is None, verified_shop_name=shop_name)


def store_deactivate(*, store: Store, reason: str) -> None:
    """No more sweeps, polls or pushes for this store; its data is kept."""
    Store.objects.filter(pk=store.pk).update(is_active=False, updated_at=timezone.now())
    store.is_active = False
    logger.warning("store deactivated: %s (%s)", store.domain, reason)


# --- one sweep per store at a time: a lease on the store row (oma.core.leases) ------------------------------


def store_sweep_lease_acquire(*, store: Store, ttl: timedelta) -> str | None:
    """Take the store's sweep lease for `ttl` (of two callers, one wins); its token, or None when another sweep
    holds it."""
    token = uuid.uuid4().hex
    taken = lease_take(
        Store.objects.filter(pk=store.pk), holder=token, ttl=ttl, now=timezone.now(),
        holder_field="sweep_lease_token", until_field="sweep_lease_until",
    )
    return token if taken else None


def store_sweep_lease_renew(*, store: Store, token: str, ttl: timedelta) -> bool:
    """Extend our lease; False when it is no longer ours (it expired and another sweep took it)."""
    return bool(lease_renew(
        Store.objects.filter(pk=store.pk), holder=token, ttl=ttl, now=timezone.now(),
        holder_field="sweep_lease_token", until_field="sweep_lease_until",
    ))


def store_sweep_lease_release(*, store: Store, token: str) -> None:
    lease_release(
        Store.objects.filter(pk=store.pk), holder=token,
        holder_field="sweep_lease_token", until_field="sweep_lease_until",
    )
