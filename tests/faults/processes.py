"""Real processes for the fault battery, beyond tests/fixtures_celery.py: Celery beat, a private PostgreSQL cluster,
SIGKILL of a process tree, and pointing this process's Celery app or database connection elsewhere."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from django.db import connections

from tests.fixtures_celery import ROOT, free_port, port_open, wait_until


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def sigkill_tree(process: subprocess.Popen) -> None:
    """SIGKILL a process and its children at once: nothing gets to finish, acknowledge or clean up."""
    for pid in [process.pid, *children_of(process.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait(timeout=10)


class BeatProcess:
    """`celery -A oma beat` (the scheduler from settings: the leased DatabaseScheduler) with its log in a file."""

    def __init__(self, *, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> BeatProcess:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "oma", "beat", "--loglevel=INFO",
             f"--schedule={self.log_path.with_suffix('.schedule')}"],
            cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        if self.process is not None:
            sigkill_tree(self.process)
            self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                sigkill_tree(self.process)
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None


class PrivatePostgres:
    """A PostgreSQL cluster of our own (initdb + pg_ctl on a free port), so a test may stop and restart it.

    The shared server on 5432 is never touched. As root, the cluster runs as the `postgres` user (initdb refuses
    root), in a temporary directory that user can reach.
    """

    def __init__(self) -> None:
        self.bin = self._find_bin()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="oma-faults-pg-"))
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root without a postgres user to run a private cluster")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self.root.chmod(0o755)
            self._as_user = ["runuser", "-u", "postgres", "--"]

    @staticmethod
    def _find_bin() -> Path:
        candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
        for candidate in candidates:
            if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
                return candidate
        found = shutil.which("pg_ctl")
        if found:
            return Path(found).resolve().parent
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) for a private cluster")

    def _run(self, *command: str, timeout: float = 60) -> None:
        subprocess.run([*self._as_user, *command], check=True, capture_output=True, timeout=timeout)

    def init(self) -> PrivatePostgres:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync",
                  "-E", "UTF8", "--locale=C")
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_path), "-o", options, "-w",
                  "-t", "30", "start")
        wait_until(lambda: port_open(self.port), timeout=15, what="private PostgreSQL")

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")
        wait_until(lambda: not port_open(self.port), timeout=15, what="private PostgreSQL to stop")

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            if port_open(self.port):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "oma") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def create_database_from(self, source_url: str, database: str = "oma") -> None:
        """A copy of another database (schema, and rows such as content types and the beat schedule)."""
        self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", database)
        dump = subprocess.run([str(self.bin / "pg_dump"), "--no-owner", "--no-privileges", source_url],
                              check=True, capture_output=True, timeout=120)
        subprocess.run([str(self.bin / "psql"), "-q", "-v", "ON_ERROR_STOP=1", self.url(database)],
                       input=dump.stdout, check=True, capture_output=True, timeout=120)


@contextlib.contextmanager
def default_database_at(*, host: str, port: int, name: str, user: str = "postgres") -> Iterator[None]:
    """Point this process's default connection at another database for the block (ORM reads and writes there)."""
    connection = connections["default"]
    keys = ("HOST", "PORT", "NAME", "USER", "PASSWORD")
    saved = {key: connection.settings_dict.get(key) for key in keys}
    connection.close()
    connection.settings_dict.update({"HOST": host, "PORT": port, "NAME": name, "USER": user, "PASSWORD": ""})
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.update(saved)


@contextlib.contextmanager
def celery_app_publishing_to(url: str) -> Iterator[None]:
    """This process's tasks (`.delay()`, on-commit triggers) go to `url`, where the test's workers listen."""
    from oma.celery import app

    saved = {name: app.conf[name] for name in ("broker_url", "broker_write_url", "broker_read_url")}
    app.conf.update(broker_url=url, broker_write_url=url, broker_read_url=url)
    app._pool = None
    app.amqp._producer_pool = None
    try:
        yield
    finally:
        app.conf.update(saved)
        app._pool = None
        app.amqp._producer_pool = None
