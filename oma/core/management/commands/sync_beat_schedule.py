from django.core.management.base import BaseCommand

from oma.core.beat import beat_schedule_sync


class Command(BaseCommand):
    help = "Sync the periodic tasks defined in oma/celery.py into django-celery-beat (keeps paused ones paused)."

    def handle(self, *args: object, **options: object) -> None:
        for name in beat_schedule_sync():
            self.stdout.write(f"synced: {name}")
