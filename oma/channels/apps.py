from django.apps import AppConfig


class ChannelsConfig(AppConfig):
    name = "oma.channels"
    label = "channels"
    verbose_name = "External channels"

    def ready(self) -> None:
        from oma.channels.inbound import register_with_webhook_receiver
        from oma.channels.services import on_orders_changed
        from oma.orders.services import orders_changed_hooks

        # Records waiting for an order are matched as soon as the mirror commits it (webhook or sweep).
        if on_orders_changed not in orders_changed_hooks:
            orders_changed_hooks.append(on_orders_changed)
        register_with_webhook_receiver()
