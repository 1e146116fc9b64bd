from django.apps import AppConfig


class FulfillmentConfig(AppConfig):
    name = "oma.fulfillment"
    label = "fulfillment"
    verbose_name = "Fulfillment push"

    def ready(self) -> None:
        from oma.fulfillment.triggers import register_triggers

        register_triggers()
