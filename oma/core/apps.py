from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CoreConfig(AppConfig):
    name = "oma.core"
    label = "core"
    verbose_name = "OMA core"

    def ready(self) -> None:
        from oma.core.beat import sync_after_migrate

        post_migrate.connect(sync_after_migrate, dispatch_uid="oma.core.beat.sync")
