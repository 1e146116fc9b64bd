from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import transaction

from oma.core.crypto import EncryptedTextField


class Command(BaseCommand):
    help = "Re-encrypt every encrypted field with the first key of OMA_ENCRYPTION_KEYS (run after adding a new key)."

    def handle(self, *args: object, **options: object) -> None:
        total = 0
        for model in apps.get_models():
            fields = [f.name for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]
            if not fields:
                continue
            with transaction.atomic():
                for obj in model._default_manager.select_for_update().only("pk", *fields).iterator():
                    obj.save(update_fields=fields)  # read decrypts with any key, save encrypts with the first
                    total += 1
        self.stdout.write(f"re-encrypted {total} rows")
