"""Channel webhooks ride on the Genstore receiver's machinery (webhooks/): its delivery log, outbox and replay.

The extension point is the receiver's processor table (`webhooks.processors.PROCESSORS`, topic -> processor): a
verified channel delivery is stored with `webhooks.services.delivery_receive` under the topic CHANNEL_TOPIC and
the id "<channel slug>/<webhook-id>", so it is stored before anything else, processed after commit by the same
task, retried with the same backoff, deduplicated by the same unique key, listed and replayable in the same admin.
The processor registered here turns it into records through the channel services.
"""

from __future__ import annotations

from typing import Any

CHANNEL_TOPIC = "channels/shipments"


def delivery_webhook_id(*, slug: str, msg_id: str) -> str:
    """The delivery's id in the shared log: channel slugs keep two platforms' message ids apart."""
    return f"{slug}/{msg_id}"


def process_channel_delivery(store: Any, delivery: Any, payload: dict[str, Any]) -> str:
    """Processor for CHANNEL_TOPIC: store and match the delivery's shipments. Idempotent (records dedupe)."""
    from oma.channels.connectors.base import PayloadError
    from oma.channels.connectors.webhook import parse_payload
    from oma.channels.models import Channel
    from oma.channels.services import external_shipments_receive
    from webhooks.services import PermanentProcessingError

    slug, _, msg_id = delivery.webhook_id.partition("/")
    channel = Channel.objects.select_related("store").filter(store=store, slug=slug).first()
    if channel is None:
        raise PermanentProcessingError(f"channel {slug!r} no longer exists")
    try:
        records = parse_payload(payload, source_ref=f"delivery {msg_id}")
    except PayloadError as exc:
        raise PermanentProcessingError(f"payload: {exc}") from exc
    summary = external_shipments_receive(channel=channel, records=records, delivery_id=delivery.pk)
    return f"channel {slug}: {summary.describe()}"


def register_with_webhook_receiver() -> None:
    from webhooks.processors import PROCESSORS

    PROCESSORS.setdefault(CHANNEL_TOPIC, process_channel_delivery)
