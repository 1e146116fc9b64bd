"""CLI test helpers: running a command as a person would, a port nothing listens on, a small Genstore sandbox."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from oma.sandbox.server import GenstoreSandbox
from tests.genstore_sandbox import start_sandbox


@dataclass
class Ran:
    out: str
    err: str
    status: int  # 0, or the CommandError's returncode (what manage.py exits with)
    error: str = ""


def run(*args: str, stdin: Any = None, stderr: io.StringIO | None = None, **options: Any) -> Ran:
    """call_command, with the exit status manage.py would give (CommandError -> its returncode)."""
    out, err = io.StringIO(), stderr if stderr is not None else io.StringIO()
    if stdin is not None:
        options["stdin"] = stdin
    try:
        call_command(*args, stdout=out, stderr=err, **options)
    except CommandError as exc:
        return Ran(out.getvalue(), err.getvalue(), exc.returncode, str(exc))
    return Ran(out.getvalue(), err.getvalue(), 0)


class Terminal(io.StringIO):
    """A stream that says it is a terminal (what a person's shell gives a command)."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that refuses connections (bound once to find it free, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def sandbox() -> Iterator[GenstoreSandbox]:
    server = start_sandbox(orders=5, rate_limit=None)
    yield server
    server.stop()
