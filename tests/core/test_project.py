import json

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_migrations_are_committed():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


@pytest.mark.django_db
def test_beat_schedule_synced_into_django_celery_beat_and_pause_survives_resync():
    from django_celery_beat.models import PeriodicTask

    from oma.celery import BEAT_SCHEDULE
    from oma.core.beat import beat_schedule_sync

    beat_schedule_sync()
    names = set(PeriodicTask.objects.values_list("name", flat=True))
    assert set(BEAT_SCHEDULE) <= names
    name = next(iter(BEAT_SCHEDULE))
    task = PeriodicTask.objects.get(name=name)
    assert json.loads(task.kwargs) == BEAT_SCHEDULE[name].get("kwargs", {})
    PeriodicTask.objects.filter(name=name).update(enabled=False)  # the merchant pauses it in admin
    beat_schedule_sync()
    assert PeriodicTask.objects.get(name=name).enabled is False
