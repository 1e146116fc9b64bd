"""oma/gunicorn_conf.py gives each gunicorn worker OMA_GUNICORN_THREADS gthread threads (32 unless set), enough for
the webhook senders that post at once to share the intake's group commits; the command line still wins."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.fixtures_celery import ROOT

# gunicorn's own reading of its command line and OMA's config file, as `gunicorn ...` does before it starts.
_RESOLVE = (
    "import sys\n"
    "from gunicorn.app.wsgiapp import WSGIApplication\n"
    "sys.argv = ['gunicorn', '--config', 'python:oma.gunicorn_conf', *sys.argv[1:], 'oma.wsgi:application']\n"
    "config = WSGIApplication().cfg\n"
    "print(config.worker_class_str, config.threads)\n"
)


def _resolved(*args: str, threads: str | None = None) -> tuple[str, int]:
    """(worker class, threads) as gunicorn resolves them with OMA's config file."""
    env = {key: value for key, value in os.environ.items() if key != "OMA_GUNICORN_THREADS"}
    if threads is not None:
        env["OMA_GUNICORN_THREADS"] = threads
    result = subprocess.run([sys.executable, "-c", _RESOLVE, *args], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise AssertionError(f"gunicorn's config failed ({result.returncode}): {result.stderr[-2000:]}")
    worker_class, count = result.stdout.split()
    return worker_class, int(count)


def test_each_worker_gets_32_gthread_threads_by_default() -> None:
    assert _resolved() == ("gthread", 32)


def test_the_thread_count_is_a_setting_and_the_command_line_wins() -> None:
    assert _resolved(threads="48") == ("gthread", 48)
    assert _resolved("--threads=6", threads="48") == ("gthread", 6)


@pytest.mark.parametrize("value", ["many", "0"])
def test_a_thread_count_that_is_not_a_positive_number_stops_gunicorn(value: str) -> None:
    with pytest.raises(AssertionError, match="OMA_GUNICORN_THREADS must"):
        _resolved(threads=value)
