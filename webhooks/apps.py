from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        from oma.stores.models import Store

        # A store saved or deleted in this process is read afresh by the next delivery (other processes see the
        # change within OMA_WEBHOOK_STORE_CACHE_SECONDS, or at once when a signature no longer matches).
        post_save.connect(_forget_store, sender=Store, dispatch_uid="webhooks.forget_store.save")
        post_delete.connect(_forget_store, sender=Store, dispatch_uid="webhooks.forget_store.delete")


def _forget_store(sender: object, instance: object, **kwargs: object) -> None:
    from webhooks.selectors import store_for_webhook_forget

    store_for_webhook_forget(str(getattr(instance, "domain", "")))
