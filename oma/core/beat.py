"""Sync the code-defined beat schedule (oma.celery.BEAT_SCHEDULE) into django-celery-beat's tables.

The project hands its schedule over with `beat_schedule_define` when oma/celery.py is imported (the `oma`
package imports it first, so every process has it before a sync runs): core imports no project module.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from celery.schedules import crontab

# Marks the entries this sync owns: an entry dropped from BEAT_SCHEDULE by an upgrade is deleted at the next sync,
# while periodic tasks an operator added in admin (without the mark) are never touched.
OWNED_MARK = "[defined in oma/celery.py]"

# name -> task, schedule (a crontab or a number of seconds), kwargs, expire_seconds, description.
BeatSchedule = Mapping[str, Mapping[str, Any]]

_schedule: dict[str, Mapping[str, Any]] = {}


def beat_schedule_define(schedule: BeatSchedule) -> None:
    """Make `schedule` the one `beat_schedule_sync` writes (called by oma/celery.py with BEAT_SCHEDULE)."""
    _schedule.clear()
    _schedule.update(schedule)


def beat_schedule_sync() -> list[str]:
    """Create or update one PeriodicTask per schedule entry, keeping the merchant's enabled/paused choice, and
    delete the entries an earlier version defined that BEAT_SCHEDULE no longer has (their task may be gone)."""
    # why: oma/celery.py imports this module before Django's apps are loaded; models load only after
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

    names = []
    for name, spec in _schedule.items():
        schedule = spec["schedule"]
        defaults: dict[str, Any] = {
            "task": spec["task"],
            "kwargs": json.dumps(spec.get("kwargs", {}), sort_keys=True),
            "expire_seconds": spec.get("expire_seconds"),
            "description": f"{OWNED_MARK} {spec.get('description', '')}".strip(),
            "crontab": None,
            "interval": None,
        }
        if isinstance(schedule, crontab):
            written = vars(schedule)  # the fields as written in BEAT_SCHEDULE (crontab keeps them, untyped)
            defaults["crontab"], _ = CrontabSchedule.objects.get_or_create(
                minute=written["_orig_minute"],
                hour=written["_orig_hour"],
                day_of_week=written["_orig_day_of_week"],
                day_of_month=written["_orig_day_of_month"],
                month_of_year=written["_orig_month_of_year"],
                timezone="UTC",
            )
        else:
            defaults["interval"], _ = IntervalSchedule.objects.get_or_create(
                every=int(schedule), period=IntervalSchedule.SECONDS
            )
        PeriodicTask.objects.update_or_create(name=name, defaults=defaults)
        names.append(name)
    # One by one, so django-celery-beat's signals tell a running beat its schedule changed.
    for dropped in PeriodicTask.objects.filter(description__startswith=OWNED_MARK).exclude(name__in=names):
        dropped.delete()
    return names


def sync_after_migrate(sender: Any, **kwargs: Any) -> None:
    # post_migrate fires once per app; sync once, when the beat tables exist.
    if getattr(sender, "label", None) != "django_celery_beat":
        return
    beat_schedule_sync()
