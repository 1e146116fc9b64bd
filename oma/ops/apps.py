from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "oma.ops"
    label = "ops"
    verbose_name = "Operations"

    def ready(self) -> None:
        from oma.ops import signals

        signals.connect()
