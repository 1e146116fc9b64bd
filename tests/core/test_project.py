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


@pytest.mark.django_db
def test_beat_entries_dropped_from_the_code_are_deleted_and_operators_own_entries_kept():
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    from oma.celery import BEAT_SCHEDULE
    from oma.core.beat import OWNED_MARK, beat_schedule_sync

    every_minute, _ = IntervalSchedule.objects.get_or_create(every=60, period=IntervalSchedule.SECONDS)
    # An entry an earlier OMA version defined, and one the operator added in admin.
    PeriodicTask.objects.create(name="orders: a schedule since removed", task="orders.gone", interval=every_minute,
                                description=f"{OWNED_MARK} what it did")
    PeriodicTask.objects.create(name="operator: extra sweep", task="orders.sweep_all_stores", interval=every_minute)
    beat_schedule_sync()
    names = set(PeriodicTask.objects.values_list("name", flat=True))
    assert "orders: a schedule since removed" not in names
    assert "operator: extra sweep" in names and set(BEAT_SCHEDULE) <= names


def test_env_example_documents_every_setting_read_from_the_environment():
    import re
    from pathlib import Path

    from webhooks.conf import _DEFAULTS as WEBHOOK_DEFAULTS

    root = Path(__file__).resolve().parents[2]
    read = set(re.findall(r'env(?:\.\w+)?\(\s*"([A-Z0-9_]+)"', (root / "oma" / "settings.py").read_text()))
    read |= set(WEBHOOK_DEFAULTS)
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (root / ".env.example").read_text(), re.MULTILINE))
    assert len(read) > 50
    assert sorted(read - documented) == []
    # django-environ takes everything after `=` as the value: a comment on the same line would become part of it.
    with_comments = [line for line in (root / ".env.example").read_text().splitlines()
                     if re.match(r"^#?\s*[A-Z][A-Z0-9_]+=.*\s#", line)]
    assert with_comments == []
