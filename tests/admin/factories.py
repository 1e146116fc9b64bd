"""factory-boy factories for the merchant-facing tests (orders, parcels, events)."""

from __future__ import annotations

from datetime import timedelta

import factory
from django.utils import timezone

from oma.orders.models import LineItem, Order
from oma.stores.models import Store
from tracking.models import Shipment, TrackingEvent


class StoreFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Store

    domain = factory.Sequence(lambda n: f"shop{n}.genmystore.com")
    name = factory.Sequence(lambda n: f"Shop {n}")
    access_token = "token"
    client_secret = "secret"


class OrderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Order

    store = factory.SubFactory(StoreFactory)
    order_id = factory.Sequence(lambda n: f"{100000 + n}")
    name = factory.LazyAttribute(lambda o: f"#{o.order_id}")
    email = factory.Sequence(lambda n: f"customer{n}@example.com")
    source_name = "web"
    financial_status = "paid"
    fulfillment_status = "fulfilled"
    unified_status = "in_transit"
    total_price = "25.00"
    currency = "USD"
    genstore_created_at = factory.LazyFunction(lambda: timezone.now() - timedelta(days=3))
    genstore_updated_at = factory.LazyFunction(timezone.now)


class LineItemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = LineItem

    order = factory.SubFactory(OrderFactory)
    line_item_id = factory.Sequence(lambda n: f"li{n}")
    title = factory.Sequence(lambda n: f"Blue mug {n}")
    sku = factory.Sequence(lambda n: f"SKU{n}")
    quantity = 1
    requires_shipping = True


class ShipmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Shipment

    store = factory.LazyAttribute(lambda s: s.order.store if s.order else StoreFactory())
    order = factory.SubFactory(OrderFactory)
    tracking_number = factory.Sequence(lambda n: f"1ZTEST{n:010d}")
    carrier = "ups"
    status = "in_transit"
    last_event_at = factory.LazyFunction(lambda: timezone.now() - timedelta(hours=5))


class TrackingEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TrackingEvent

    shipment = factory.SubFactory(ShipmentFactory)
    occurred_at = factory.LazyFunction(lambda: timezone.now() - timedelta(hours=5))
    status = "in_transit"
    raw_text = "Departed facility"
    location = "Louisville, KY, US"
    key = factory.Sequence(lambda n: f"key{n}")
