"""gunicorn settings for OMA's web server: `gunicorn --config python:oma.gunicorn_conf oma.wsgi:application ...`.

Threads: each worker is a gthread worker with OMA_GUNICORN_THREADS request threads (32 unless set; `--threads` on
the command line wins). Why that many: a webhook sender keeps its connections open, and a gthread worker keeps
every connection it accepted, so one worker may end up serving all the concurrent senders; with fewer threads
than senders the rest wait in its queue instead of joining the group commit (webhooks/intake.py), which writes
the deliveries of every thread waiting at that moment in one statement and one commit. Threads that wait for a
commit cost no CPU; each one may hold a database connection of its own (CONN_MAX_AGE), so workers x threads, plus
the Celery workers, must fit in PostgreSQL's max_connections.

Each worker process is pinned to a CPU of its own (round robin when there are more workers than CPUs).

Why: a gthread worker runs its request threads under one GIL, so it never uses more than one CPU for Python anyway.
Left free, the kernel spreads those threads over every CPU, and each hand-off of the GIL between threads on
different CPUs costs a cross-CPU wake-up and cold caches. The webhook intake hands the GIL over at least once per
delivery (a request waits for its group commit), so this costs it more than it costs a view that never waits: on
2 vCPUs, pinning raised webhook throughput by about a fifth and the trivial view's by nothing measurable
(`bench/webhooks.py`). uWSGI offers the same as `cpu-affinity`.

OMA_GUNICORN_PIN_WORKERS=0 turns it off (a host whose CPUs are mostly busy with other work, say). Without
sched_setaffinity (macOS) nothing is pinned.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

DEFAULT_THREADS = 32


def _threads() -> int:
    value = os.environ.get("OMA_GUNICORN_THREADS", "").strip()
    if not value:
        return DEFAULT_THREADS
    try:
        threads = int(value)
    except ValueError:
        raise SystemExit(f"OMA_GUNICORN_THREADS must be a whole number of threads, not {value!r}") from None
    if threads < 1:
        raise SystemExit(f"OMA_GUNICORN_THREADS must be at least 1, not {threads}")
    return threads


# gunicorn reads these module-level names as its settings (the command line overrides them).
worker_class = "gthread"
threads = _threads()


def _pinning_enabled() -> bool:
    return os.environ.get("OMA_GUNICORN_PIN_WORKERS", "1").strip().lower() not in ("0", "false", "no", "off", "")


def _usable_cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))  # the CPUs this container or cgroup may use
    except AttributeError:  # not Linux
        return []


def pre_fork(server: Any, worker: Any) -> None:
    """In the arbiter, before a worker is forked: give it the CPU that the fewest live workers hold."""
    cpus = _usable_cpus()
    worker.oma_cpu = None
    if not _pinning_enabled() or len(cpus) < 2:
        return
    held = Counter(getattr(other, "oma_cpu", None) for other in server.WORKERS.values() if other is not worker)
    worker.oma_cpu = min(cpus, key=lambda cpu: (held[cpu], cpu))


def post_fork(server: Any, worker: Any) -> None:
    """In the new worker: stay on the CPU the arbiter chose."""
    cpu = getattr(worker, "oma_cpu", None)
    if cpu is None:
        return
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as exc:  # a CPU taken away since (cgroup change): run unpinned rather than not at all
        server.log.warning("worker %s not pinned to CPU %s: %s", worker.pid, cpu, exc)
    else:
        server.log.info("worker %s pinned to CPU %s", worker.pid, cpu)
