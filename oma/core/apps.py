from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CoreConfig(AppConfig):
    name = "oma.core"
    label = "core"
    verbose_name = "OMA core"

    def ready(self) -> None:
        from oma.core.beat import sync_after_migrate  # why: AppConfig modules load before models are ready

        post_migrate.connect(sync_after_migrate, dispatch_uid="oma.core.beat.sync")
