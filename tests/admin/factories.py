"""factory-boy factories for the merchant-facing tests (orders, parcels, events), and external orders as a channel
gives them (the parsed inputs of oma.channels.connectors.base: plain dataclasses)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import factory
from django.utils import timezone

from oma.channels.connectors.base import AddressInput, ExternalOrderInput, ExternalOrderLineInput
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


class AddressInputFactory(factory.Factory):
    class Meta:
        model = AddressInput

    name = "Ada Buyer"
    address1 = factory.Sequence(lambda n: f"{n + 1} Harbour Street")
    city = "Portland"
    province_code = "OR"
    zip = "97201"
    country_code = "US"
    phone = "+1 503 555 0100"


class ExternalOrderLineInputFactory(factory.Factory):
    class Meta:
        model = ExternalOrderLineInput

    sku = factory.Sequence(lambda n: f"EXT-SKU-{n}")
    title = factory.LazyAttribute(lambda line: f"Item {line.sku}")
    quantity = 1
    price = Decimal("12.50")
    external_line_id = factory.Sequence(lambda n: f"{40000000000000 + n}")


class ExternalOrderInputFactory(factory.Factory):
    """An order sold elsewhere (Amazon-like ids), as a webhook or an order file gives it to the intake."""

    class Meta:
        model = ExternalOrderInput

    external_order_id = factory.Sequence(lambda n: f"114-{n:07d}-{(n * 7919) % 10_000_000:07d}")
    created_at = factory.LazyFunction(lambda: timezone.now().replace(microsecond=0) - timedelta(hours=2))
    currency = "USD"
    lines = factory.LazyFunction(lambda: (ExternalOrderLineInputFactory(), ExternalOrderLineInputFactory(quantity=2)))
    email = factory.Sequence(lambda n: f"buyer{n}@example.com")
    name = "Ada Buyer"
    shipping_address = factory.SubFactory(AddressInputFactory)
    shipping_price = Decimal("4.99")
    source_ref = "test"
