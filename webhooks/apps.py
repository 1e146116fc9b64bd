from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        # why inline: the selectors import models, which can be imported only once the app registry is ready.
        from webhooks.selectors import forget_store_on_change

        # A store saved or deleted in this process is read afresh by the next delivery (other processes see the
        # change within OMA_WEBHOOK_STORE_CACHE_SECONDS, or at once when a signature no longer matches).
        post_save.connect(forget_store_on_change, sender="stores.Store", dispatch_uid="webhooks.forget_store.save")
        post_delete.connect(forget_store_on_change, sender="stores.Store", dispatch_uid="webhooks.forget_store.delete")
