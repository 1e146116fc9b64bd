from django.apps import AppConfig


class StoresConfig(AppConfig):
    name = "oma.stores"
    label = "stores"

    def ready(self) -> None:
        # why inline: the handlers import models, which can be imported only once the app registry is ready.
        from oma.stores.webhook_handlers import register_webhook_handlers

        register_webhook_handlers()
