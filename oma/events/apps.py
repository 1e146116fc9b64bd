"""Outbound events: merchant alerts and `shipment.updated` / `order.status_changed` sent to other tools, signed the
Standard Webhooks way, delivered by a worker with retries and a delivery log."""

from django.apps import AppConfig, apps
from django.db.models.signals import post_save

from oma.orders.signals import orders_changed
from tracking.signals import shipments_changed


class EventsConfig(AppConfig):
    name = "oma.events"
    label = "events"
    verbose_name = "Outbound events"

    def ready(self) -> None:
        # why: both import models, importable only now; the tasks register in every process that records events
        # (services publish them by name).
        from oma.events import receivers, tasks  # noqa: F401

        shipments_changed.connect(receivers.on_shipments_changed, dispatch_uid="events.on_shipments_changed")
        orders_changed.connect(receivers.on_orders_changed, dispatch_uid="events.on_orders_changed")
        for label in ("fulfillment.FulfillmentPush", "channels.ExternalOrder", "tracking.CarrierAccount"):
            post_save.connect(receivers.on_failure_saved, sender=apps.get_model(label),
                              dispatch_uid=f"events.on_failure_saved.{label}")
