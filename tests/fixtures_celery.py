"""Real processes for tests: a private Redis server, Celery workers and a gunicorn web server, on 127.0.0.1.

Reusable by any test package: import the fixtures into its conftest.py
(`from tests.fixtures_celery import celery_worker_factory, private_redis, gunicorn_factory  # noqa: F401`).

* Each test gets its own `redis-server` on a free port (`private_redis`): the shared 6379 is never stopped or
  flushed, and a test may stop and restart its own (`.stop()`, `.start()`) to play a broker outage.
* Workers and web servers see the test's database: use them from a `transactional_db` test (data committed, so
  other processes see it); `subprocess_env()` points DATABASE_URL at the test database pytest-django created.
* Everything started is stopped at teardown (workers get a few seconds of warm shutdown, then SIGKILL), before the
  test database is dropped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(predicate: Callable[[], bool], *, timeout: float, interval: float = 0.1, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what or predicate}")
        time.sleep(interval)


def database_url_for_subprocesses() -> str:
    """DATABASE_URL of the database this test run uses (pytest-django's test database once it is set up)."""
    settings = connection.settings_dict
    if connection.vendor != "postgresql":
        raise RuntimeError("subprocess services need PostgreSQL (an in-memory SQLite is not shared)")
    user = quote(settings.get("USER") or "")
    password = settings.get("PASSWORD") or ""
    auth = f"{user}:{quote(password)}@" if password else (f"{user}@" if user else "")
    host = settings.get("HOST") or "127.0.0.1"
    port = settings.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{settings['NAME']}"


def subprocess_env(
    *, broker_url: str, settings_module: str = "tests.settings", extra: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment for a worker or web server that shares this test's database and uses `broker_url`."""
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": settings_module,
            "DATABASE_URL": database_url_for_subprocesses(),
            "CELERY_BROKER_URL": broker_url,
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


def _stop(process: subprocess.Popen, *, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _kill_with_children(process: subprocess.Popen) -> None:
    """SIGKILL a process and its children (a worker's pool: Celery's cold shutdown waits on a sleeping task)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if parent == process.pid:
                children.append(int(entry.name))
    for pid in [process.pid, *children]:
        with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
            os.kill(pid, signal.SIGKILL)
    process.wait(timeout=10)


class RedisServer:
    """A redis-server of our own, without persistence: stopping it loses what it held, like a crash."""

    def __init__(self, *, directory: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.directory = directory
        self.process: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory), "--maxmemory-policy", "noeviction", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: port_open(self.port), timeout=10, what=f"redis-server on port {self.port}")

    def stop(self) -> None:
        """Kill it (SIGKILL: nothing saved, connections reset), as an outage would."""
        if self.process is not None:
            _stop(self.process, sig=signal.SIGKILL, timeout=10)
            self.process = None
        wait_until(lambda: not port_open(self.port), timeout=10, what="redis-server to stop")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(directory=tmp_path)
    server.start()
    yield server
    server.stop()


class CeleryWorker:
    """`celery -A oma worker` in a subprocess; its log goes to a file that failures print.

    `queues` (comma-separated) limits it to those queues; by default it consumes every queue, as `make run`'s
    worker does (settings.OMA_CELERY_QUEUES).
    """

    def __init__(self, *, env: dict[str, str], log_path: Path, concurrency: int = 2, pool: str = "prefork",
                 queues: str | None = None) -> None:
        self.env = env
        self.log_path = log_path
        self.concurrency = concurrency
        self.pool = pool
        self.queues = queues
        self.process: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None

    def start(self, *, timeout: float = 60) -> None:
        command = [
            sys.executable, "-m", "celery", "-A", "oma", "worker", "--loglevel=INFO", f"--pool={self.pool}",
            f"--concurrency={self.concurrency}", f"--hostname=test-{uuid.uuid4().hex[:8]}@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]
        command.append(f"--queues={self.queues or ','.join(settings.OMA_CELERY_QUEUES)}")
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        wait_until(self._ready, timeout=timeout, interval=0.2, what=f"celery worker (log: {self.log_path})")

    def _ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"celery worker exited with {self.process.returncode}:\n{self.log_tail()}")
        return b" ready." in self.log_path.read_bytes()

    def stop(self, *, grace: float = 40) -> None:
        """Warm shutdown (running tasks finish) for up to `grace` seconds, then SIGKILL for it and its pool."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    _kill_with_children(self.process)
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture
def celery_worker_factory(tmp_path: Path) -> Iterator[Callable[..., CeleryWorker]]:
    """Start workers with `factory(env=subprocess_env(...), concurrency=2)`; all are stopped at teardown."""
    workers: list[CeleryWorker] = []

    def start(*, env: dict[str, str], concurrency: int = 2, pool: str = "prefork", queues: str | None = None,
              timeout: float = 60) -> CeleryWorker:
        worker = CeleryWorker(env=env, log_path=tmp_path / f"celery-worker-{len(workers)}.log",
                              concurrency=concurrency, pool=pool, queues=queues)
        workers.append(worker)
        worker.start(timeout=timeout)
        return worker

    yield start
    # The test is over: tasks still running (say, retrying a Genstore that never answers) have nothing left to
    # prove, and a warm shutdown would wait for them.
    for worker in workers:
        worker.stop(grace=5)


class GunicornServer:
    """gunicorn serving oma.wsgi on a free port of 127.0.0.1."""

    def __init__(self, *, env: dict[str, str], log_path: Path, workers: int = 2, threads: int = 4,
                 app: str = "oma.wsgi:application") -> None:
        self.env = env
        self.log_path = log_path
        self.workers = workers
        self.threads = threads
        self.app = app
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 30) -> None:
        command = [
            sys.executable, "-m", "gunicorn", self.app, f"--bind=127.0.0.1:{self.port}",
            f"--workers={self.workers}", f"--threads={self.threads}", "--worker-class=gthread",
            "--backlog=256", "--keep-alive=30", "--graceful-timeout=10", "--log-level=warning",
        ]
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)

        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}:\n{self.log_tail()}")
            return port_open(self.port)

        wait_until(ready, timeout=timeout, interval=0.1, what=f"gunicorn on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process, sig=signal.SIGTERM, timeout=20)
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture
def gunicorn_factory(tmp_path: Path) -> Iterator[Callable[..., GunicornServer]]:
    """Start web servers with `factory(env=subprocess_env(...))`; all are stopped at teardown."""
    servers: list[GunicornServer] = []

    def start(*, env: dict[str, str], workers: int = 2, threads: int = 4, app: str = "oma.wsgi:application",
              timeout: float = 30) -> GunicornServer:
        server = GunicornServer(env=env, log_path=tmp_path / f"gunicorn-{len(servers)}.log", workers=workers,
                                threads=threads, app=app)
        servers.append(server)
        server.start(timeout=timeout)
        return server

    yield start
    for server in servers:
        server.stop()
