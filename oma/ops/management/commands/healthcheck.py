"""`manage.py healthcheck [--only beat,worker]`: the /healthz checks from a shell (container health checks, cron).

Prints the report as JSON and exits 1 when a selected check fails.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from oma.ops.health import run_checks


class Command(BaseCommand):
    help = "Check the database, the broker, beat and the workers; exit 1 if a selected check fails."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--only", default="", help="comma-separated checks: database,broker,beat,worker")

    def handle(self, *args: Any, only: str, **options: Any) -> None:
        report = run_checks()
        selected = {name.strip() for name in only.split(",") if name.strip()}
        unknown = selected - {check.name for check in report.checks}
        if unknown:
            raise CommandError(f"unknown checks: {', '.join(sorted(unknown))}")
        failing = [name for name in report.failing if not selected or name in selected]
        self.stdout.write(json.dumps(report.as_dict(), indent=2))
        if failing:
            raise CommandError(f"failing: {', '.join(failing)}")
