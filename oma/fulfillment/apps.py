from django.apps import AppConfig

from oma.orders.signals import orders_changed
from tracking.signals import shipments_changed


class FulfillmentConfig(AppConfig):
    name = "oma.fulfillment"
    label = "fulfillment"
    verbose_name = "Fulfillment push"

    def ready(self) -> None:
        from oma.fulfillment.receivers import on_orders_changed, on_shipments_changed  # why: they import models

        orders_changed.connect(on_orders_changed, dispatch_uid="fulfillment.on_orders_changed")
        shipments_changed.connect(on_shipments_changed, dispatch_uid="fulfillment.on_shipments_changed")
