"""Writes of the merchant tools: merchant logins, branding, and (in their own modules) alerts and estimates."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.db import transaction
from django.utils import timezone

from oma.core.outbox import enqueue_each_on_commit
from oma.core.tenancy import MERCHANT_GROUP, forget_store_ids
from oma.fulfillment.services.unified_status import orders_unified_status_refresh
from oma.genstore.errors import GenstoreNotFound
from oma.merchant.models import StoreBranding
from oma.orders.models import Order
from oma.orders.services import orders_upsert_page
from oma.stores.models import Store, StoreMembership
from oma.stores.services import genstore_client_for
from tracking.models import Shipment
from tracking.tasks import poll_due
from tracking.vocabulary import TERMINAL_STATUSES

logger = logging.getLogger(__name__)


class UnknownStores(ValueError):
    def __init__(self, domains: Sequence[str]) -> None:
        super().__init__(f"no connected store with domain {', '.join(domains)}")
        self.domains = list(domains)


@dataclass(frozen=True)
class MerchantUserResult:
    user: AbstractBaseUser
    created: bool
    stores_added: list[str] = field(default_factory=list)
    stores_removed: list[str] = field(default_factory=list)


def merchant_group() -> Group:
    group, _ = Group.objects.get_or_create(name=MERCHANT_GROUP)
    return group


@transaction.atomic
def merchant_user_upsert(
    *, username: str, password: str | None, store_domains: Sequence[str], only_these_stores: bool = False
) -> MerchantUserResult:
    """Create or update a staff login that works on `store_domains` (added to the ones it has, or replacing them
    with `only_these_stores`). It joins the Merchants group: full rights on its stores' rows, nothing else."""
    wanted = {domain.strip().lower() for domain in store_domains if domain.strip()}
    stores = {store.domain: store for store in Store.objects.filter(domain__in=wanted)}
    missing = sorted(wanted - stores.keys())
    if missing:
        raise UnknownStores(missing)
    user_model = get_user_model()
    user = user_model.objects.filter(username=username).first()
    created = user is None
    if user is None:
        if not password:
            raise ValueError("a new user needs a password")
        user = user_model(username=username)
    if password:
        user.set_password(password)
    user.is_staff = True
    user.is_active = True
    user.save()
    user.groups.add(merchant_group())
    have = set(StoreMembership.objects.filter(user=user).values_list("store__domain", flat=True))
    to_add = sorted(wanted - have)
    StoreMembership.objects.bulk_create(
        [StoreMembership(user=user, store=stores[domain]) for domain in to_add], ignore_conflicts=True
    )
    removed: list[str] = []
    if only_these_stores:
        removed = sorted(have - wanted)
        StoreMembership.objects.filter(user=user, store__domain__in=removed).delete()
    forget_store_ids(user)
    logger.info("merchant user %s %s: +%s -%s", username, "created" if created else "updated", to_add, removed)
    return MerchantUserResult(user=user, created=created, stores_added=to_add, stores_removed=removed)


# --- branding ------------------------------------------------------------------------------------------------

LOGO_MAX_BYTES = 256 * 1024
# Raster formats only: an SVG logo could carry script.
_LOGO_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def logo_content_type(data: bytes) -> str | None:
    """The image type of `data` judged by its first bytes (never by the name or the browser's claim)."""
    for signature, content_type in _LOGO_SIGNATURES:
        if data.startswith(signature):
            return content_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def branding_set_logo(*, branding: StoreBranding, data: bytes) -> None:
    """Store a logo (PNG, JPEG, GIF or WebP, at most 256 KB); empty data removes it."""
    if not data:
        branding.logo, branding.logo_content_type, branding.logo_sha256 = b"", "", ""
        return
    if len(data) > LOGO_MAX_BYTES:
        raise ValueError(f"the logo must be at most {LOGO_MAX_BYTES // 1024} KB")
    content_type = logo_content_type(data)
    if content_type is None:
        raise ValueError("the logo must be a PNG, JPEG, GIF or WebP image")
    branding.logo = data
    branding.logo_content_type = content_type
    branding.logo_sha256 = hashlib.sha256(data).hexdigest()


# --- admin actions on orders ---------------------------------------------------------------------------------


@dataclass
class ResyncResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    stale: int = 0
    not_found: list[str] = field(default_factory=list)


def orders_resync(*, store: Store, order_pks: Sequence[int]) -> ResyncResult:
    """Read these orders of `store` again from Genstore (order details) and upsert them through the mirror's one
    write path (newest updatedAt still wins); their unified status is recomputed even when nothing changed.
    Order pks of another store are ignored: the caller's selection is never trusted on its own."""
    orders = list(Order.objects.filter(store=store, pk__in=list(order_pks)).values_list("pk", "order_id"))
    result = ResyncResult()
    if not orders:
        return result
    client = genstore_client_for(store)
    records = []
    try:
        for _pk, order_id in orders:
            try:
                records.append(client.get_order(order_id))
            except GenstoreNotFound:
                result.not_found.append(order_id)
    finally:
        client.close()
    counts = orders_upsert_page(store=store, records=records)
    result.created, result.updated, result.unchanged, result.stale = (
        counts.created, counts.updated, counts.unchanged, counts.stale
    )
    orders_unified_status_refresh(order_ids=[pk for pk, _ in orders])
    logger.info("re-synced %d orders of %s: %s", len(orders), store.domain, result)
    return result


def orders_poll_now(*, order_pks: Sequence[int], store_ids: Sequence[int] | None = None) -> int:
    """Make the selected orders' live shipments due now and wake the poller once per store (after commit).
    Returns the number of shipments made due."""
    shipments = Shipment.objects.filter(order_id__in=list(order_pks)).exclude(status__in=TERMINAL_STATUSES)
    if store_ids is not None:
        shipments = shipments.filter(store_id__in=list(store_ids))
    stores = sorted(set(shipments.values_list("store_id", flat=True)))
    now = timezone.now()
    count = shipments.update(next_poll_at=now, consecutive_failures=0, updated_at=now)

    if count:  # the broker is down: the beat's minute dispatch still finds them due
        enqueue_each_on_commit(poll_due, [(store_id,) for store_id in stores])
    return count
