"""Helpers for benchmarks: Django on a throwaway database, figures printed in one format.

Every benchmark prints its figures as lines `FIGURE<TAB>name<TAB>value<TAB>unit<TAB>target` (target may be
empty), which `make bench` (python -m bench) collects into one table.

HTTP benchmarks drive their load with wrk (a C load generator; `wrk_run`), never with Python threads sharing the
server's CPUs: pre-generated requests (`wrk_request_files`) replayed by bench/wrk/replay.lua, with wrk's own CPU
share measured beside the server's, and `canned_http_server` to show what wrk reaches when the server costs
next to nothing (the generator's ceiling).
"""

from __future__ import annotations

import atexit
import csv
import io
import os
import resource
import select
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def postgres_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def setup_django(database_name: str) -> str:
    """Configure Django on a fresh benchmark database (PostgreSQL when reachable, else a SQLite file).

    The name gets the process id, so two benchmark runs on one server never drop each other's database.
    """
    database_name = f"{database_name}_{os.getpid()}"
    os.environ.setdefault("SECRET_KEY", "bench-secret-key")
    os.environ.setdefault("OMA_ENCRYPTION_KEYS", "u6HqWmtyJ5bOVyI1Q4JkQqoWW9cXfC5nCUEO1GJwbQ0=")
    os.environ.setdefault("DEBUG", "0")
    os.environ["LOG_LEVEL"] = "WARNING"
    if "DATABASE_URL" not in os.environ:
        if postgres_reachable():
            import psycopg

            with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{database_name}" WITH (FORCE)')
                conn.execute(f'CREATE DATABASE "{database_name}"')
            atexit.register(_drop_postgres_database, database_name)
            os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{database_name}"
        else:
            path = ROOT / "var" / f"{database_name}.sqlite3"
            path.parent.mkdir(exist_ok=True)
            path.unlink(missing_ok=True)
            os.environ["DATABASE_URL"] = f"sqlite:///{path}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oma.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from django.db import connection

    return connection.vendor


def _drop_postgres_database(name: str) -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def figure(name: str, value: float | str, unit: str = "", target: str = "") -> None:
    text = f"{value:.3f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)
    print(f"FIGURE\t{name}\t{text}\t{unit}\t{target}", flush=True)


def postgres_cpu_seconds() -> float:
    """CPU seconds used so far by the local PostgreSQL server: every live process's own, plus (through the
    postmaster's children's times) those of backends that have exited, e.g. a sweep's writer thread's connection.
    0 when PostgreSQL is not on this machine (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                text = stat.read()
        except OSError:
            continue
        name, _, rest = text.partition(" (")[2].partition(")")
        if name != "postgres":
            continue
        fields = rest.split()
        total += sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime
    return total / ticks


# PostgreSQL's shared background processes whose work a database's writes cause (WAL flushes and writes).
_POSTGRES_WRITERS = (": walwriter", ": background writer", ": checkpointer")


def postgres_database_cpu(database: str) -> dict[int, float]:
    """CPU seconds used so far by each live backend connected to `database`, and by the WAL writer, background
    writer and checkpointer, by process id: on a machine other work shares, the part of PostgreSQL's CPU that a
    benchmark's database causes. Compare two with postgres_cpu_between."""
    ticks = os.sysconf("SC_CLK_TCK")
    marker = f" {database} "
    found: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                title = cmdline.read().replace(b"\0", b" ").decode(errors="replace").rstrip()
            if not title.startswith("postgres:") or (marker not in title and not title.endswith(_POSTGRES_WRITERS)):
                continue
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[int(entry)] = (int(fields[11]) + int(fields[12])) / ticks
    return found


def postgres_cpu_between(before: Mapping[int, float], after: Mapping[int, float]) -> float:
    """CPU seconds between two postgres_database_cpu snapshots: what the processes of `after` used since `before`
    (all of it for a backend that connected meanwhile). A backend that exited meanwhile is not counted (Django
    reconnects each CONN_MAX_AGE): a slight undercount, never a negative figure."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def process_tree_cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU of these processes and their live children (Linux /proc), in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    seen: set[int] = set()
    pending = list(pids)
    while pending:
        pid = pending.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/task/{pid}/children") as children:
                pending.extend(int(child) for child in children.read().split())
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def child_pids(pid: int) -> list[int]:
    """The live children of a process (a gunicorn master's workers, say); [] when it is gone (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(child) for child in children.read().split()]
    except OSError:
        return []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"process exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port} after {timeout:.0f} s")


# --- HTTP load from wrk -----------------------------------------------------------------------------------------

WRK_REPLAY_SCRIPT = ROOT / "bench" / "wrk" / "replay.lua"


def _quietly(command: list[str]) -> int:
    return subprocess.run(command, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode


def wrk_binary() -> str:
    """wrk's path; installed with apt-get when it is missing and we may (root on Debian or Ubuntu)."""
    found = shutil.which("wrk")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk is missing: apt-get install -y wrk", flush=True)
        if _quietly(["apt-get", "install", "-y", "-q", "wrk"]) != 0:
            _quietly(["apt-get", "update", "-q"])  # a fresh machine has no package lists yet
            _quietly(["apt-get", "install", "-y", "-q", "wrk"])
        found = shutil.which("wrk")
    if found is None:
        raise SystemExit(
            "HTTP benchmarks drive their load with wrk, a C load generator, so that the generator is never what "
            "limits the figures: install it (Debian/Ubuntu: apt-get install wrk; macOS: brew install wrk)"
        )
    return found


def wrk_request_files(prefix: Path, requests: Iterable[tuple[Mapping[str, str], bytes]], *, threads: int) -> int:
    """Write requests (headers without Host and Content-Length, body) for bench/wrk/replay.lua, dealt round robin
    into `<prefix>.1` .. `<prefix>.<threads>`, one file per wrk thread. Returns how many were written."""
    files = [open(f"{prefix}.{number}", "wb") for number in range(1, threads + 1)]  # noqa: SIM115
    count = 0
    try:
        for headers, body in requests:
            head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            record = f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
            files[count % threads].write(b"%d\n%b" % (len(record), record))
            count += 1
    finally:
        for file in files:
            file.close()
    return count


def wrk_request_files_remove(prefix: Path, *, threads: int) -> None:
    for number in range(1, threads + 1):
        Path(f"{prefix}.{number}").unlink(missing_ok=True)


@dataclass(frozen=True)
class WrkResult:
    """One wrk run. CPU figures are seconds used during the run (from the moment wrk starts sending)."""

    requests: int  # responses received
    sent: int  # requests written; those still in flight when the run stops get no response
    wrapped: int  # times a wrk thread ran out of pre-generated requests and started over
    seconds: float
    errors: dict[str, int]  # connect, read, write, status (>= 400), timeout
    latency_ms: dict[str, float]  # p50, p90, p99, p99.9, mean, max (wrk's histogram)
    generator_cpu: float  # wrk itself
    server_cpu: float  # the server_pids given, and their children
    database_cpu: float  # the database's backends on a local PostgreSQL server (or the whole server)
    machine_cpu: float  # every process on the machine: what is left over is other work sharing the machine

    @property
    def others_cpu(self) -> float:
        """CPU seconds of processes that are neither wrk, the server nor PostgreSQL (noise on a shared machine)."""
        return max(0.0, self.machine_cpu - self.generator_cpu - self.server_cpu - self.database_cpu)

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    def share(self, cpu_seconds: float) -> float:
        """CPU seconds as CPUs kept busy on average (1.0: one whole CPU) over the run."""
        return cpu_seconds / self.seconds


def machine_busy_cpu_seconds() -> float:
    """CPU seconds every process on the machine has used since boot, all CPUs together (Linux /proc/stat)."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
    except OSError:
        return 0.0
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # user .. steal (guest time is inside user)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (all its threads) so far, in seconds; 0 when it is gone (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk_run(
    *,
    url: str,
    path: str,
    requests_prefix: Path,
    seconds: int,
    connections: int,
    threads: int = 1,
    reuse: bool = True,
    server_pids: Sequence[int] = (),
    database: str | None = None,
    timeout_seconds: int = 10,
) -> WrkResult:
    """Replay the requests of `wrk_request_files(requests_prefix, ...)` against `url` + `path` for `seconds`.

    `reuse=False`: every request at most once (the caller checks `wrapped == 0`). wrk's CPU is counted from the
    line it prints once its threads are running (so reading the request files is not counted) to its exit.
    PostgreSQL's CPU: that of `database`'s backends (postgres_database_cpu), else the whole server's.
    """
    def database_cpu() -> dict[int, float]:
        return postgres_database_cpu(database) if database else {0: postgres_cpu_seconds()}

    command = [
        wrk_binary(), f"--threads={threads}", f"--connections={connections}", f"--duration={seconds}s",
        f"--timeout={timeout_seconds}s", f"--script={WRK_REPLAY_SCRIPT}", url,
        "--", str(requests_prefix), path, "1" if reuse else "0",
    ]
    stdbuf = shutil.which("stdbuf")
    if stdbuf:  # line-buffered stdout (stdbuf execs wrk: same process), so "Running ..." arrives as it is printed
        command = [stdbuf, "-oL", *command]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    generator_before = 0.0
    server_before, database_before = process_tree_cpu_seconds(server_pids), database_cpu()
    machine_before = machine_busy_cpu_seconds()
    values: dict[str, str] = {}
    other: list[str] = []
    for line in process.stdout:
        if line.startswith("Running "):
            generator_before = process_cpu_seconds(process.pid)
            server_before, database_before = process_tree_cpu_seconds(server_pids), database_cpu()
            machine_before = machine_busy_cpu_seconds()
        elif line.startswith("WRK\t"):
            _, name, value = line.rstrip("\n").split("\t")
            values[name] = value
        else:
            other.append(line)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    server_cpu = process_tree_cpu_seconds(server_pids) - server_before
    database_used = postgres_cpu_between(database_before, database_cpu())
    machine_cpu = machine_busy_cpu_seconds() - machine_before
    if process.returncode != 0 or "requests" not in values:
        raise SystemExit(f"wrk failed ({process.returncode}):\n{''.join(other)[-2000:]}")
    return WrkResult(
        requests=int(values["requests"]),
        sent=int(values["sent"]),
        wrapped=int(values["wrapped"]),
        seconds=int(values["duration_us"]) / 1e6,
        errors={name: int(values[f"error_{name}"]) for name in ("connect", "read", "write", "status", "timeout")},
        latency_ms={
            name: float(values[f"latency_{name}_us"]) / 1000
            for name in ("p50", "p90", "p99", "p99.9", "mean", "max")
        },
        generator_cpu=usage.ru_utime + usage.ru_stime - generator_before,
        server_cpu=server_cpu,
        database_cpu=database_used,
        machine_cpu=machine_cpu,
    )


_CANNED_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"status\":\"ok\"}"


def complete_requests(buffer: bytes) -> tuple[int, bytes]:
    """How many whole requests (headers and Content-Length body) `buffer` starts with, and what is left over."""
    count = 0
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return count, buffer
        head = buffer[:end].lower()
        start = head.find(b"\r\ncontent-length:")
        length = 0
        if start >= 0:
            stop = head.find(b"\r\n", start + 2)
            length = int(head[start + 17 : stop if stop >= 0 else len(head)])
        if len(buffer) < end + 4 + length:
            return count, buffer
        buffer = buffer[end + 4 + length :]
        count += 1


def serve_canned_http(port: int) -> None:
    """Answer every HTTP/1.1 request on 127.0.0.1:`port` with the same 200, from one epoll loop: about the least
    work a server can do per request, for measuring what the load generator alone can reach. Runs until killed."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(1024)
    listener.setblocking(False)
    poller = select.epoll()
    poller.register(listener.fileno(), select.EPOLLIN)
    connections: dict[int, tuple[socket.socket, list[bytes]]] = {}
    while True:
        for fd, _ in poller.poll():
            if fd == listener.fileno():
                while True:
                    try:
                        connection, _ = listener.accept()
                    except BlockingIOError:
                        break
                    connection.setblocking(False)
                    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    connections[connection.fileno()] = (connection, [b""])
                    poller.register(connection.fileno(), select.EPOLLIN)
                continue
            connection, pending = connections[fd]
            try:
                data = connection.recv(1 << 18)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                poller.unregister(fd)
                connection.close()
                del connections[fd]
                continue
            answered, pending[0] = complete_requests(pending[0] + data)
            if answered:
                connection.sendall(_CANNED_RESPONSE * answered)


@contextmanager
def canned_http_server() -> Iterator[int]:
    """`serve_canned_http` in a process of its own; yields its port."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", f"from bench.common import serve_canned_http; serve_canned_http({port})"], cwd=ROOT
    )
    try:
        wait_for_port(port, 10, process)
        yield port
    finally:
        process.kill()
        process.wait(timeout=10)


# The external orders' generic order CSV (bench/imports.py, bench/external_orders.py): one or two lines per order.
GENERIC_HEADER = ("order", "created_at", "currency", "email", "sku", "title", "quantity", "price", "shipping_price",
                  "name", "address1", "city", "province_code", "zip", "country_code", "line_item_id")
SKUS = ("MUG-1", "POT-2", "TEA-3", "NAP-4")


def generic_order_file(count: int, *, prefix: str) -> tuple[bytes, int]:
    """A generic order CSV of `count` orders (one or two lines each); the file and its data rows."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(GENERIC_HEADER)
    ordered_at = (datetime.now(UTC) - timedelta(days=1)).replace(microsecond=0).isoformat()
    rows = 0
    for i in range(count):
        for k in range(1 + i % 2):
            sku = SKUS[(i + k) % 4]
            writer.writerow((f"{prefix}-{i:07d}", ordered_at, "USD", f"buyer{i}@example.com", sku, f"Item {sku}",
                             1 + k, f"{9.5 + k:.2f}", "4.99", "Ana Souza", "1200 Pine St", "Seattle", "WA", "98101",
                             "US", f"{i}-{k}"))
            rows += 1
    return out.getvalue().encode(), rows
