"""What every management command shares: reading `--since`, reading secrets without argv, output that a closed pipe
ends quietly, progress on a terminal, the exit status for rejected rows, and one line saying why a host is unreachable.

* `parse_since`: an ISO 8601 date or date-time (Z, an offset, or none meaning UTC), or how long ago: `90m`, `6h`,
  `2d`, `1w` (decimals too: `1.5h`). Every command taking a time reads it with this one function.
* `secret_option`: a secret given on the command line is visible to every user of the machine (`ps`) and kept in
  shell history, so each secret option also comes from an environment variable, from standard input when its value
  is `-`, or from a prompt (no echo) on a terminal. The command-line form still works, discouraged.
* `PipeSafeCommand`: `manage.py export_orders | head -1` ends with status 0 and no traceback when `head` stops
  reading.
* `tty_progress`: a progress bar on standard error, only when it is a terminal (never in logs, cron mail or pipes).
* `EXIT_REJECTS`: the status of an import that read its file but rejected rows (`--allow-rejects` makes it 0).
* `connection_problem`: "the host name does not resolve" / "connection refused" / "the connection timed out" for a
  failure that happened before anything was sent, else None: interactive commands stop at once on those.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from getpass import getpass
from typing import Any, Protocol, TextIO, cast

import requests
from django.core.management.base import BaseCommand, CommandError, OutputWrapper
from django.utils import timezone
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NameResolutionError, NewConnectionError

__all__ = [
    "EXIT_REJECTS",
    "SINCE_HELP",
    "PipeSafeCommand",
    "ProgressUpdate",
    "connection_problem",
    "parse_since",
    "secret_help",
    "secret_option",
    "stream_is_tty",
    "tty_progress",
]

# An import read its file but rejected some rows (documented in each import command's --help and in README).
# 1 stays Django's "the command failed" (a file that cannot be read, an unknown store, wrong arguments).
EXIT_REJECTS = 3

_AGO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m|min|h|d|w)\s*$", re.IGNORECASE)
_AGO_UNITS = {"m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str, *, now: datetime | None = None, option: str = "--since") -> datetime:
    """`--since`: an ISO 8601 date or time (Z or an offset; none means UTC), or how long ago (90m, 6h, 2d, 1w), as
    an aware UTC datetime. CommandError for anything else, and for a time in the future."""
    now = now or timezone.now()
    text = value.strip()
    ago = _AGO.match(text)
    if ago:
        amount, unit = float(ago.group(1)), _AGO_UNITS[ago.group(2).lower()]
        return now - timedelta(**{unit: amount})
    try:
        parsed = datetime.fromisoformat(text)  # Python 3.11 reads dates, Z and offsets
    except ValueError:
        raise CommandError(
            f"{option} {value!r}: give an ISO 8601 date or time (2026-11-01, 2026-11-01T08:00:00Z) "
            "or how long ago (90m, 6h, 2d, 1w)"
        ) from None
    parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    if parsed > now:
        raise CommandError(f"{option} {value!r} is in the future ({parsed.isoformat()})")
    return parsed


SINCE_HELP = "ISO 8601 (2026-11-01, 2026-11-01T08:00Z; no offset means UTC) or how long ago (90m, 6h, 2d, 1w)"


# --- secrets ---------------------------------------------------------------------------------------------------


def stream_is_tty(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (OSError, ValueError):  # a closed or detached stream
        return False


def secret_option(
    value: str | None,
    *,
    option: str,
    env: str,
    label: str,
    required: bool = True,
    stdin: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
    confirm: bool = False,
    missing: str = "",
) -> str:
    """A secret option's value, from the first of: the command line (`-` reads one line of standard input), the
    environment variable `env`, and (when `required`) a prompt without echo if standard input is a terminal. ""
    when none gives one and it is not `required`; otherwise CommandError naming every way to give it (after
    `missing`, what needs it, when given)."""
    stdin = stdin if stdin is not None else sys.stdin
    environ = environ if environ is not None else os.environ
    if value == "-":
        line = stdin.readline()
        secret = line.rstrip("\r\n")
        if not secret.strip():
            raise CommandError(f"{option} -: standard input gave no {label} (one line per '-', in option order)")
        return secret
    if value:
        return value
    if environ.get(env):
        return environ[env]
    if not required:
        return ""
    if stream_is_tty(stdin):
        secret = getpass(f"{label}: ")
        if confirm and secret and getpass(f"{label} (again): ") != secret:
            raise CommandError(f"the two {label}s differ")
        if secret:
            return secret
    raise CommandError(
        f"{missing or 'give the ' + label}: set {env}, or pass {option} - and write it to standard input "
        f"({option} VALUE works too but shows it to other users of this machine)"
    )


def secret_help(what: str, env: str) -> str:
    return (f"{what}; default: ${env}; '-' reads it from standard input; on a terminal, asked for without echo "
            "(the value on the command line works but is visible to other users: discouraged)")


# --- output ----------------------------------------------------------------------------------------------------


def _silence(stream: OutputWrapper | TextIO) -> None:
    """The reader of `stream` is gone: send what is still buffered, and everything written later (the interpreter
    flushes stdout on exit), to /dev/null, so no second BrokenPipeError is printed."""
    target = getattr(stream, "_out", stream)  # Django's OutputWrapper wraps the real stream
    try:
        fd = target.fileno()
    except (AttributeError, OSError, ValueError):  # an in-memory stream cannot break
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


class PipeSafeCommand(BaseCommand):
    """A command whose output may go to a reader that stops early (`| head`, `| less` quit): it then ends quietly
    with status 0 instead of a BrokenPipeError traceback. `stdin` is accepted as a stealth option, as
    `createsuperuser` does, so call_command can hand secrets to `secret_option`."""

    stealth_options = ("stdin",)

    def execute(self, *args: Any, **options: Any) -> str:
        self.stdin: TextIO = options.get("stdin") or sys.stdin
        try:
            output = super().execute(*args, **options)
            self.stdout.flush()  # here, not at exit, so that a closed pipe is seen while it can still be handled
        except BrokenPipeError:
            _silence(self.stdout)
            return ""
        return output or ""


class ProgressUpdate(Protocol):
    def __call__(self, done: int, total: int | None, note: str = "") -> None: ...


@contextmanager
def tty_progress(
    label: str, *, unit: str = "rows", stream: TextIO | OutputWrapper | None = None
) -> Iterator[ProgressUpdate | None]:
    """A progress bar on `stream` (standard error) while the block runs, only when it is a terminal. Yields
    `update(done, total, note)`, or None when the stream is not a terminal (callers then skip any work done only
    to show progress, such as counting first)."""
    # An OutputWrapper (a command's self.stderr) is asked about the stream it wraps.
    target = cast(TextIO, getattr(stream, "_out", stream) if stream is not None else sys.stderr)
    if not stream_is_tty(target):
        yield None
        return
    with Progress(
        TextColumn(f"[bold]{escape(label)}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(f"{escape(unit)}{{task.fields[note]}}"),
        TimeElapsedColumn(),
        transient=True,
        console=Console(file=target),
    ) as bar:
        task = bar.add_task(label, total=None, note="")

        def update(done: int, total: int | None, note: str = "") -> None:
            bar.update(task, completed=done, total=total, note=f", {note}" if note else "")

        yield update


# --- why a host cannot be reached ------------------------------------------------------------------------------


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and everything it wraps: exception chains, urllib3's `reason`, exceptions passed as arguments."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
        stack.extend(item for item in linked if isinstance(item, BaseException))


def connection_problem(exc: BaseException) -> str | None:
    """What stopped a connection before any byte was sent, in words ("the host name does not resolve",
    "connection refused", "the connection timed out"), or None when the failure is something else (an answer, a
    read timeout, a connection reset mid-request): the first kind is not worth retrying in front of a person."""
    causes = list(_causes(exc))
    if any(isinstance(cause, NameResolutionError | socket.gaierror) for cause in causes):
        return "the host name does not resolve (DNS)"
    if any(isinstance(cause, ConnectionRefusedError) for cause in causes):
        return "connection refused"
    if any(isinstance(cause, ConnectTimeoutError | requests.ConnectTimeout) for cause in causes):
        return "the connection timed out"
    if any(isinstance(cause, NewConnectionError) for cause in causes) and any(
        isinstance(cause, MaxRetryError | requests.ConnectionError) for cause in causes
    ):
        return "no connection could be made"
    return None
