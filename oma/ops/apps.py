from django.apps import AppConfig

from oma.core.outbound import add_response_observer
from oma.ops import signals


class OpsConfig(AppConfig):
    name = "oma.ops"
    label = "ops"
    verbose_name = "Operations"

    def ready(self) -> None:
        from oma.ops.metrics import observe_upstream_response  # why: metrics imports every app's models

        signals.connect()
        add_response_observer(observe_upstream_response)
