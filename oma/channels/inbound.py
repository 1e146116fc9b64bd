"""Channel webhooks ride on the Genstore receiver's machinery (webhooks/): its delivery log, outbox and replay.

A verified channel delivery is stored with `webhooks.receive.delivery_receive` under the topic CHANNEL_TOPIC and
the id "<channel slug>/<webhook-id>", so it is stored before anything else, processed after commit by the same
task, retried with the same backoff, deduplicated by the same unique key, listed and replayable in the same admin.
The handler registered here (oma.core.topic_handlers, from ChannelsConfig.ready) hands its order to the external-order
intake and its shipments to the channel services.
"""

from __future__ import annotations

from oma.channels.compliance import CHANNEL_DELIVERY_KEYS, on_customer_redacted
from oma.channels.connectors.base import PayloadError
from oma.channels.connectors.webhook import CHANNEL_TOPIC, parse_order_payload, parse_payload
from oma.channels.models import Channel
from oma.channels.order_intake import external_orders_receive
from oma.channels.services import ChannelInvalid, external_shipments_receive
from oma.core.topic_handlers import PermanentProcessingError, TopicDelivery, register
from oma.orders.compliance import body_allow_list_register, customer_redacted

# Named when deliveries carried shipments only; kept for every channel delivery (stored ones carry it).


def delivery_webhook_id(*, slug: str, msg_id: str) -> str:
    """The delivery's id in the shared log: channel slugs keep two platforms' message ids apart."""
    return f"{slug}/{msg_id}"


def process_channel_delivery(delivery: TopicDelivery) -> str:
    """Handler of CHANNEL_TOPIC: the delivery's order first (stored, its creation in Genstore queued), then its
    shipments (so tracking in the same delivery finds the order's row). Idempotent: the same order is unchanged
    the second time, records dedupe."""
    slug, _, msg_id = delivery.webhook_id.partition("/")
    channel = Channel.objects.select_related("store").filter(store_id=delivery.store_id, slug=slug).first()
    if channel is None:
        raise PermanentProcessingError(f"channel {slug!r} no longer exists")
    source_ref = f"delivery {msg_id}"
    try:
        order = parse_order_payload(delivery.payload, source_ref=source_ref)
        records = parse_payload(delivery.payload, source_ref=source_ref)
    except PayloadError as exc:
        raise PermanentProcessingError(f"payload: {exc}") from exc
    outcomes = []
    if order is not None:
        try:
            receipt = external_orders_receive(channel=channel, orders=[order], delivery_id=delivery.delivery_id)
        except ChannelInvalid as exc:
            raise PermanentProcessingError(str(exc)) from exc
        outcomes.append(receipt.describe())
    if records or order is None:
        summary = external_shipments_receive(channel=channel, records=records, delivery_id=delivery.delivery_id)
        outcomes.append(summary.describe())
    return f"channel {slug}: {'; '.join(outcomes)}"


def register_webhook_handlers() -> None:
    """ChannelsConfig.ready: handle CHANNEL_TOPIC; tell customers/redact what its stored bodies keep, and erase the
    redacted orders' parcels, channel reports and external orders with it (oma.channels.compliance)."""
    register(CHANNEL_TOPIC, process_channel_delivery)
    body_allow_list_register(CHANNEL_TOPIC, CHANNEL_DELIVERY_KEYS)
    customer_redacted.connect(on_customer_redacted, dispatch_uid="channels.on_customer_redacted")
