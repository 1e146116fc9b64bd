"""Helpers for benchmarks: Django on a throwaway database, figures printed in one format.

Every benchmark prints its figures as lines `FIGURE<TAB>name<TAB>value<TAB>unit<TAB>target` (target may be
empty), which `make bench` (python -m bench) collects into one table.
"""

from __future__ import annotations

import atexit
import os
import resource
import socket
import sys
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
