"""oma/gunicorn_conf.py: each gunicorn worker on a CPU of its own, as deployed (docker-compose) and benchmarked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures_celery import ROOT, free_port, port_open, wait_until

CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
pytestmark = pytest.mark.skipif(len(CPUS) < 2, reason="pinning needs Linux and at least two CPUs")


def _allowed_cpus(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no Cpus_allowed_list for {pid}")


def _workers_cpus(tmp_path: Path, *, workers: int, pin: str) -> list[str]:
    """Start gunicorn with OMA's config and `workers` workers; the CPUs each worker may run on."""
    port = free_port()
    env = {**os.environ, "OMA_GUNICORN_PIN_WORKERS": pin, "SECRET_KEY": "test-secret-key-" + "x" * 40,
           "OMA_ENCRYPTION_KEYS": "u6HqWmtyJ5bOVyI1Q4JkQqoWW9cXfC5nCUEO1GJwbQ0=", "DATABASE_URL": "sqlite:///:memory:"}
    log = (tmp_path / "gunicorn.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "oma.wsgi:application", "--config", "python:oma.gunicorn_conf",
         f"--bind=127.0.0.1:{port}", f"--workers={workers}", "--threads=2", "--worker-class=gthread",
         "--log-level=info"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: port_open(port), timeout=30, what="gunicorn")
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
        wait_until(lambda: len(children.read_text().split()) == workers, timeout=30, what="its workers")
        if pin == "1":  # each worker pins itself right after the fork, and says so
            log_text = lambda: (tmp_path / "gunicorn.log").read_text()  # noqa: E731
            wait_until(lambda: log_text().count("pinned to CPU") == workers, timeout=30, what="workers pinned")
        pids = [int(pid) for pid in children.read_text().split()]
        return sorted(_allowed_cpus(pid) for pid in pids)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        log.close()


def test_each_worker_runs_on_a_cpu_of_its_own(tmp_path: Path) -> None:
    assert _workers_cpus(tmp_path, workers=2, pin="1") == sorted(str(cpu) for cpu in CPUS[:2])


def test_more_workers_than_cpus_share_them_round_robin(tmp_path: Path) -> None:
    cpus = _workers_cpus(tmp_path, workers=len(CPUS) + 1, pin="1")
    assert sorted(set(cpus)) == sorted(str(cpu) for cpu in CPUS) and len(cpus) == len(CPUS) + 1


def test_pinning_can_be_turned_off(tmp_path: Path) -> None:
    assert set(_workers_cpus(tmp_path, workers=2, pin="0")) == {_allowed_cpus(os.getpid())}
