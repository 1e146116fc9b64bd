"""Channel reads: the channel a command names, which orders a polling channel should ask about, and what waits or
was rejected."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Exists, F, IntegerField, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce, Mod

from oma.channels.connectors import REGISTRY
from oma.channels.connectors.base import PolledOrder
from oma.channels.matching import CANCELLED
from oma.channels.models import Channel, ExternalOrder, ExternalShipment, OrderPoll
from oma.orders.models import LineItem, Order
from oma.stores.cli import unknown_store_message
from oma.stores.domains import store_domain_normalize
from oma.stores.models import Store
from tracking.models import ShipmentLine


def channel_for_webhook(slug: str) -> Channel | None:
    return Channel.objects.select_related("store").filter(slug=slug).first()


class ChannelNotFound(LookupError):
    """No channel (or no store) by the name a command gave; the message lists what there is."""


def channel_by_ref(*, ref: str, store_domain: str | None = None) -> Channel:
    """The channel a command names: by slug, or (within the store `store_domain`) by name or slug. ChannelNotFound,
    listing the slugs there are, when there is none."""
    ref = ref.strip()
    channels = Channel.objects.select_related("store")
    if store_domain:
        store_domain = store_domain_normalize(store_domain)  # as typed or pasted, as every --store is read
        if not Store.objects.filter(domain=store_domain).exists():
            raise ChannelNotFound(unknown_store_message(store_domain))
        channels = channels.filter(store__domain=store_domain)
        found = channels.filter(slug=ref).first() or channels.filter(name=ref).first()
    else:
        found = channels.filter(slug=ref).first()
    if found is not None:
        return found
    known = list(channels.order_by("slug").values_list("slug", flat=True)[:50])
    where = f" in store {store_domain}" if store_domain else ""
    if not known:
        raise ChannelNotFound(f"unknown channel {ref!r}{where}: there are no channels yet (create one with: channel "
                              "add --store D --kind csv --name Amazon --source-names amazon)")
    raise ChannelNotFound(f"unknown channel {ref!r}{where}; known channels: {', '.join(known)}")


def polling_channels() -> QuerySet[Channel]:
    kinds = [kind for kind, connector in REGISTRY.items() if connector.polls]
    return Channel.objects.filter(kind__in=kinds, is_enabled=True, store__is_active=True)


def external_order_id_for(channel: Channel, order: Order) -> str:
    """The number the platform knows the order by.

    A channel covering named sales channels (e.g. amazon) ships those channels' orders: the platform knows them by
    the sales channel's id, Genstore's sourceIdentifier. A channel covering every order (ShipStation as the
    store's shipping tool) imported them from Genstore, under Genstore's orderId.
    """
    if channel.source_names and order.source_identifier:
        return order.source_identifier
    return order.order_id


def orders_to_poll(*, channel: Channel, now: datetime, limit: int | None = None) -> list[PolledOrder]:
    """The channel's orders worth asking about now, the longest-unasked first.

    Worth asking: not cancelled, placed within CHANNELS_POLL_LOOKBACK_DAYS, not asked within
    CHANNELS_POLL_INTERVAL_MINUTES, and either still lacking tracking for some shippable item, or holding a
    shipment this channel reported within CHANNELS_VOID_WINDOW_DAYS (its label may still be voided).
    """
    lookback = timedelta(days=settings.CHANNELS_POLL_LOOKBACK_DAYS)
    interval = timedelta(minutes=settings.CHANNELS_POLL_INTERVAL_MINUTES)
    void_window = timedelta(days=settings.CHANNELS_VOID_WINDOW_DAYS)
    limit = limit or settings.CHANNELS_POLL_MAX_ORDERS

    shippable = (
        LineItem.objects.filter(order=OuterRef("pk"))
        .exclude(requires_shipping=False)
        .values("order")
        .annotate(total=Sum("quantity"))
        .values("total")
    )
    covered = (
        ShipmentLine.objects.filter(line_item__order=OuterRef("pk"))
        .exclude(shipment__status=CANCELLED)
        .values("line_item__order")
        .annotate(total=Sum("quantity"))
        .values("total")
    )
    reported_recently = ExternalShipment.objects.filter(
        channel=channel, order=OuterRef("pk"), state=ExternalShipment.State.MATCHED, received_at__gte=now - void_window
    )
    polls = OrderPoll.objects.filter(channel=channel, order=OuterRef("pk"))
    queryset = Order.objects.filter(
        store_id=channel.store_id, cancelled_at__isnull=True, genstore_created_at__gte=now - lookback
    )
    if channel.source_names:
        queryset = queryset.filter(source_name__in=channel.source_names)
    queryset = (
        queryset.annotate(
            shippable=Coalesce(Subquery(shippable, output_field=IntegerField()), 0),
            covered=Coalesce(Subquery(covered, output_field=IntegerField()), 0),
            last_polled=Subquery(polls.values("last_polled_at")[:1]),
        )
        .filter(Q(shippable__gt=F("covered")) | Exists(reported_recently))
        .exclude(Exists(polls.filter(last_polled_at__gte=now - interval)))
        .order_by(F("last_polled").asc(nulls_first=True), "-genstore_created_at", "pk")
        .only("pk", "order_id", "source_identifier")
    )
    return [
        PolledOrder(order_pk=order.pk, external_order_id=external_order_id_for(channel, order))
        for order in queryset[:limit]
    ]


def channel_record_counts(channel: Channel) -> dict[str, int]:
    """Records per state, for the admin and `channel list`."""
    counts = {state: 0 for state in ExternalShipment.State.values}
    for row in channel.external_shipments.values("state").annotate(n=Count("pk")).order_by():
        counts[row["state"]] = row["n"]
    return counts


# --- external orders ------------------------------------------------------------------------------------------

_ORDER = ExternalOrder.State
EXTERNAL_ORDERS_DUE_PER_QUERY = 100


def external_orders_due_q(*, now: datetime) -> Q:
    """Rows with Genstore work due: pending and due, `creating` with nobody holding it (a killed worker: on
    PostgreSQL its lock tells, elsewhere its lease ran out), or a cancel owed."""
    due_now = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    # A row flagged for the merchant (a cancel that cannot be settled here) waits for them, not for the next drain.
    pending = Q(state=_ORDER.PENDING, needs_attention="") & due_now
    abandoned = Q(state=_ORDER.CREATING, needs_attention="") & (Q(lease_until__isnull=True) | Q(lease_until__lt=now))
    cancel = (
        Q(state__in=[_ORDER.CREATED, _ORDER.ADOPTED], cancel_requested_at__isnull=False, needs_attention="") & due_now
    )
    return pending | abandoned | cancel


def external_orders_due(
    *,
    store_id: int,
    now: datetime,
    after_pk: int = 0,
    limit: int = EXTERNAL_ORDERS_DUE_PER_QUERY,
    slot: int = 0,
    slots: int = 1,
) -> list[int]:
    """The store's due rows, oldest first (from `after_pk` on); of drain `slot`'s share (pk % slots == slot) when
    the store has `slots` drains."""
    rows = ExternalOrder.objects.filter(store_id=store_id, pk__gt=after_pk).filter(external_orders_due_q(now=now))
    if slots > 1:
        rows = rows.alias(drain_slot=Mod("pk", slots)).filter(drain_slot=slot)
    return list(rows.order_by("pk").values_list("pk", flat=True)[:limit])


def external_order_stores_due(*, now: datetime) -> list[int]:
    """Active stores with external-order work due (beat queues their drains)."""
    return list(
        ExternalOrder.objects.filter(store__is_active=True)
        .filter(external_orders_due_q(now=now))
        .order_by("store_id")
        .values_list("store_id", flat=True)
        .distinct()
    )
