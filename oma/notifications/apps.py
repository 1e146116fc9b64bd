"""Customer notifications: milestone emails about a parcel, opted in per store, sent by a worker, at most once."""

from django.apps import AppConfig

from tracking.signals import shipments_changed


class NotificationsConfig(AppConfig):
    name = "oma.notifications"
    label = "notifications"
    verbose_name = "Customer notifications"

    def ready(self) -> None:
        from oma.notifications import receivers  # why: the receivers import models, importable only now

        shipments_changed.connect(receivers.on_shipments_changed, dispatch_uid="notifications.on_shipments_changed")
