from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "oma.orders"
    label = "orders"

    def ready(self) -> None:
        # why inline: the handlers import models, which can be imported only once the app registry is ready.
        from oma.orders.webhook_handlers import register_webhook_handlers

        register_webhook_handlers()
