from django.apps import AppConfig

from oma.orders.signals import orders_changed


class ChannelsConfig(AppConfig):
    name = "oma.channels"
    label = "channels"
    verbose_name = "External channels"

    def ready(self) -> None:
        # why inline (each import here): these modules import models, which exist once the app registry is ready.
        from oma.channels import tasks  # noqa: F401  (services publish channels.* tasks by name: register them)
        from oma.channels.inbound import register_webhook_handlers
        from oma.channels.services import on_orders_changed

        # Records waiting for an order are matched as soon as the mirror commits it (webhook or sweep).
        orders_changed.connect(on_orders_changed, dispatch_uid="channels.on_orders_changed")
        register_webhook_handlers()
