"""Deployment gates: production settings pass `check --deploy`, the Celery settings that make tasks survive crashes,
and the docker-compose production shape (one beat, gunicorn, health checks)."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.management import call_command

from oma.ops.beat import lease_acquire_or_renew
from oma.ops.tasks import heartbeat
from tests.fixtures_celery import ROOT


def test_production_settings_pass_check_deploy_with_only_debug_off_and_a_strong_secret_key() -> None:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"),
           "DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(50), "DJANGO_SETTINGS_MODULE": "oma.settings"}
    if (ROOT / ".env").exists():
        pytest.skip("a developer .env would add settings; CI (a fresh clone) runs this check")
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_celery_settings_make_every_task_survive_a_killed_worker() -> None:
    assert settings.CELERY_TASK_ACKS_LATE is True
    assert settings.CELERY_TASK_REJECT_ON_WORKER_LOST is True
    assert settings.CELERY_WORKER_PREFETCH_MULTIPLIER == 1
    # HTTP budget < soft limit < hard limit < visibility timeout: a slow task is stopped before it is redelivered.
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    assert settings.CELERY_TASK_SOFT_TIME_LIMIT < settings.CELERY_TASK_TIME_LIMIT < visibility
    assert settings.CELERY_BEAT_SCHEDULER == "oma.ops.beat:LeasedDatabaseScheduler"
    assert settings.OMA_BEAT_LEASE_SECONDS < settings.OMA_BEAT_STALE_SECONDS


def test_the_beat_schedule_sends_the_heartbeat_often_enough_for_healthz() -> None:
    from oma.celery import BEAT_SCHEDULE

    [entry] = [spec for spec in BEAT_SCHEDULE.values() if spec["task"] == "ops.heartbeat"]
    assert entry["schedule"] * 3 < settings.OMA_WORKER_STALE_SECONDS


def test_compose_runs_the_production_shape() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    services = re.findall(r"^  ([a-z][a-z0-9_-]*):\s*$", compose.split("\nservices:\n", 1)[1].split("\nvolumes:", 1)[0],
                          flags=re.MULTILINE)
    assert {"postgres", "redis", "web", "worker", "beat", "flower"} <= set(services)
    assert "gunicorn" in compose and "--scheduler" not in compose  # the leased scheduler comes from settings
    assert compose.count("celery\", \"-A\", \"oma\", \"beat\"") == 1
    assert "replicas: 1" in compose
    assert "/healthz" in compose and "\"healthcheck\", \"--only\", \"beat\"" in compose
    assert "noeviction" in compose
    assert "profiles: [\"flower\"]" in compose


@pytest.mark.django_db
def test_healthcheck_command_exits_non_zero_naming_the_failing_check(capsys) -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="failing: beat"):
        call_command("healthcheck", "--only", "database,beat")
    assert lease_acquire_or_renew(holder="beat-1", seconds=30)
    heartbeat()
    call_command("healthcheck", "--only", "database,beat,worker")
    assert '"beat"' in capsys.readouterr().out
