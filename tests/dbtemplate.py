"""Under pytest-xdist, one migrated database that every worker's test database is copied from.

Migrating the test database costs about 5 s of CPU (and PostgreSQL's); with four workers that was four times the
same work. Now the controller names a template database (`OMA_TEST_DB_TEMPLATE`, inherited by the workers), the first
worker to need a database migrates it once (`manage.py migrate`, under a file lock the workers share) and each
worker's `CREATE DATABASE` copies it (Django's TEST["TEMPLATE"]). Django's own migrate then finds every migration
applied and only re-runs the post_migrate handlers. The controller drops the template at the end. Should building
it fail, each worker migrates its own database as before.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import warnings
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
ENV = "OMA_TEST_DB_TEMPLATE"


def template_name() -> str:
    return f"test_oma_{os.environ.get('OMA_TEST_DB_SUFFIX') or os.getpid()}_template"


def _url(database: str) -> str:
    return urlunsplit(urlsplit(os.environ["DATABASE_URL"])._replace(path=f"/{database}"))


def prepare(name: str, *, lock_dir: Path) -> bool:
    """Make sure the migrated template `name` exists (built by whichever worker comes first); False if it could not
    be built, and the caller migrates its own database."""
    ready = lock_dir / f"{name}.ready"
    with (lock_dir / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the others wait here while the first one migrates
        if ready.exists():
            return ready.read_text() == "ok"
        try:
            _build(name)
        except subprocess.CalledProcessError as exc:
            return _failed(ready, f"{exc}\n{exc.stderr.decode(errors='replace')[-2000:]}")
        except (OSError, psycopg.Error) as exc:
            return _failed(ready, str(exc))
        ready.write_text("ok")
        return True


def _failed(ready: Path, why: str) -> bool:
    warnings.warn(f"no template test database ({why}); each worker migrates its own", stacklevel=2)
    ready.write_text("failed")
    return False


def _build(name: str) -> None:
    with psycopg.connect(_url("postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    env = {**os.environ, "DATABASE_URL": _url(name), "DJANGO_SETTINGS_MODULE": "tests.settings"}
    subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "--verbosity=0"], cwd=ROOT, env=env,
                   check=True, capture_output=True)


def drop(name: str) -> None:
    try:
        with psycopg.connect(_url("postgres"), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        warnings.warn(f"could not drop the template test database {name}: {exc}", stacklevel=1)
