"""Receiving: store an authentic delivery once (webhooks.intake's INSERT) and enqueue its processing after commit."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Protocol

from django.conf import settings
from django.db import connection
from django.utils import timezone

from oma.core.outbox import after_commit
from webhooks.dispatch import delivery_enqueue_after_receipt
from webhooks.intake import delivery_insert_unless_duplicate
from webhooks.models import WebhookDelivery

State = WebhookDelivery.State

# Headers never stored with a delivery (Genstore sends none of them, but a proxy might add them).
_UNSTORED_HEADERS = {"cookie", "authorization", "proxy-authorization", "x-genstore-access-token"}


def delivery_content_sha256(*, topic: str, body: bytes) -> str:
    """SHA-256 of the topic, a newline and the exact body: what a delivery says, whatever id it comes under."""
    return hashlib.sha256(topic.encode() + b"\n" + body).hexdigest()


def delivery_dedupe_key(*, topic: str, body: bytes, webhook_id: str, content_sha256: str = "") -> str:
    """The webhook id when Genstore sends one, else the topic and the SHA-256 of the exact body (`content_sha256`
    when the caller has it already)."""
    if webhook_id:
        if len(webhook_id) <= 200:
            return f"id:{webhook_id}"
        return f"id-sha256:{hashlib.sha256(webhook_id.encode()).hexdigest()}"
    return f"sha256:{content_sha256 or delivery_content_sha256(topic=topic, body=body)}"


def storable_text(text: str) -> str:
    """`text` as the database can store it: without NUL characters or lone surrogates. Headers and webhook ids
    are not signed, so whoever holds a signed body can send them with anything in them."""
    if text.isascii() and "\x00" not in text:  # nearly always: both checks are cheap
        return text
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")


def storable_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {
        storable_text(name): storable_text(value[:1024])
        for name, value in headers.items()
        if name.lower() not in _UNSTORED_HEADERS
    }


@dataclass(frozen=True)
class ReceiveResult:
    delivery_id: int | None
    duplicate: bool
    ignored: bool


class StoreIdentity(Protocol):
    """What receiving needs of a store: a Store row, or the view's light WebhookStore."""

    @property
    def pk(self) -> int: ...

    @property
    def domain(self) -> str: ...


def delivery_receive(
    *,
    store: StoreIdentity,
    topic: str,
    body: bytes,
    headers: Mapping[str, str],
    webhook_id: str = "",
    resource_id: str = "",
    handled: bool = True,
    dedupe_by_content: bool = True,
) -> ReceiveResult:
    """Store an authentic delivery once and enqueue its processing after the commit.

    A second delivery with the same dedupe key (even one racing this one), or with `dedupe_by_content` the same
    topic and body as a delivery of this store still retained, meets a unique constraint and is reported as a
    duplicate: it is neither stored nor processed again. (Genstore's webhook id is not signed, so a signed body
    resent under a new id is a replay; a sender that signs its ids, as channels do, passes False.) A broker
    failure never reaches the caller.
    """
    webhook_id = storable_text(webhook_id.strip())
    topic = storable_text(topic)
    content_sha256 = delivery_content_sha256(topic=topic, body=body)
    now = timezone.now()
    redispatch_after = timedelta(seconds=settings.OMA_WEBHOOK_REDISPATCH_SECONDS)
    row = {
        "store_id": store.pk,
        "shop_domain": store.domain,
        "topic": topic[:64],
        "webhook_id": webhook_id[:255],
        "dedupe_key": delivery_dedupe_key(
            topic=topic, body=body, webhook_id=webhook_id, content_sha256=content_sha256
        ),
        "content_sha256": content_sha256 if dedupe_by_content else None,
        "resource_id": storable_text(resource_id[:64]),
        "body": body.decode("utf-8"),
        "headers": storable_headers(headers),
        "received_at": now,
        "state": State.RECEIVED if handled else State.IGNORED,
        # The fast path publishes right after the commit; this deadline is only for when that gets lost.
        "next_dispatch_at": now + redispatch_after if handled else None,
        "outcome": "" if handled else "topic not handled by OMA",
    }
    in_transaction = connection.in_atomic_block
    delivery_id = delivery_insert_unless_duplicate(row, in_transaction=in_transaction)
    if delivery_id is None:
        return ReceiveResult(delivery_id=None, duplicate=True, ignored=not handled)
    if handled:  # once the caller's transaction commits (the row is committed already outside one)
        after_commit(partial(delivery_enqueue_after_receipt, delivery_id))
    return ReceiveResult(delivery_id=delivery_id, duplicate=False, ignored=not handled)
