"""Genstore webhook subscriptions of a store: create the missing ones at OMA's address (admin, connect_store,
register_webhooks). The receiving side lives in webhooks/, above this app."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from oma.genstore.topics import SUBSCRIBABLE_TOPICS
from oma.stores.models import Store
from oma.stores.services import genstore_client_for

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegisterResult:
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)


def _same_address(left: str, right: str) -> bool:
    return left.strip().rstrip("/").lower() == right.strip().rstrip("/").lower()


def subscription_address_error(address: str) -> str | None:
    """Genstore wants HTTPS; plain HTTP is allowed only to a loopback host (the sandbox, local runs)."""
    parts = urlsplit(address)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname in {"127.0.0.1", "localhost", "::1"}:
        return None
    return f"webhook address must be an https:// URL (got {address!r})"


def subscribable_topics() -> list[str]:
    """Every topic OMA handles that an app subscribes to through the API.

    The compliance topics are left out: their callback URLs live in the app's configuration on Genstore.
    """
    return list(SUBSCRIBABLE_TOPICS)


def webhook_subscriptions_register(*, store: Store, address: str) -> RegisterResult:
    """List the store's subscriptions and create the missing ones at `address`; running it twice creates nothing."""
    problem = subscription_address_error(address)
    if problem:
        raise ValueError(problem)
    client = genstore_client_for(store)
    subscribed = {sub.topic for sub in client.list_webhooks() if _same_address(sub.address, address)}
    result = RegisterResult()
    for topic in subscribable_topics():
        if topic in subscribed:
            result.existing.append(topic)
            continue
        client.create_webhook(address=address, topic=topic)
        result.created.append(topic)
    logger.info("webhooks for %s at %s: %d created, %d already there", store.domain, address,
                len(result.created), len(result.existing))
    return result
