"""`--cpu-report`: the CPU each test file costs (its own process and the subprocesses it waited for), top 30.

The suite's wall time on a 2-CPU machine is bounded by its CPU, not by any single test's wall time, so this is the
figure to cut. Each phase (setup, call, teardown) of a test is measured in the process that runs it:
`time.process_time()` for the pytest process itself plus the `RUSAGE_CHILDREN` delta, which counts every subprocess
(worker, gunicorn, manage.py, Chromium...) and the descendants each of them waited for, once it has been reaped.
Not counted: PostgreSQL's and Redis's own CPU, and a grandchild orphaned by a SIGKILL of its parent. Session
fixtures are charged to the test that first needs them. Works under xdist: each phase's figure travels in its
report to the controller, which adds them up.

    .venv/bin/python -m pytest tests/security -n 0 --cpu-report
"""

from __future__ import annotations

import resource
import time
from collections import defaultdict
from collections.abc import Generator
from typing import Any

import pytest

_PROPERTY = "cpu_seconds"
_started = pytest.StashKey[tuple[float, float]]()
_phase_cpu = pytest.StashKey[tuple[float, float]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--cpu-report", action="store_true", default=False,
                     help="print the CPU (own + reaped subprocesses) each test file cost, top 30")


def _cpu_now() -> tuple[float, float]:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time(), children.ru_utime + children.ru_stime


def _measured(item: pytest.Item) -> Generator[None, None, None]:
    if not item.config.getoption("--cpu-report"):
        yield
        return
    own, children = _cpu_now()
    yield
    own_after, children_after = _cpu_now()
    item.stash[_phase_cpu] = (own_after - own, children_after - children)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    yield from _measured(item)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    yield from _measured(item)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    yield from _measured(item)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Generator[None, Any, None]:
    outcome = yield
    measured = item.stash.get(_phase_cpu, None)
    if measured is None:
        return
    del item.stash[_phase_cpu]
    report = outcome.get_result()
    # A list of its own: by default every phase's report shares item.user_properties.
    report.user_properties = [*report.user_properties, (_PROPERTY, measured)]


class _Totals:
    def __init__(self) -> None:
        self.own: dict[str, float] = defaultdict(float)
        self.children: dict[str, float] = defaultdict(float)
        self.tests: dict[str, int] = defaultdict(int)
        self.slowest: dict[str, tuple[float, str]] = {}


_totals = _Totals()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for name, value in report.user_properties:
        if name != _PROPERTY:
            continue
        own, children = float(value[0]), float(value[1])  # type: ignore[index]
        path = report.nodeid.split("::", 1)[0]
        _totals.own[path] += own
        _totals.children[path] += children
        if report.when == "call":
            _totals.tests[path] += 1
        per_test = own + children
        if per_test > _totals.slowest.get(path, (0.0, ""))[0]:
            _totals.slowest[path] = (per_test, report.nodeid.split("::", 1)[-1][:60])


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if not config.getoption("--cpu-report") or not _totals.own:
        return
    if hasattr(config, "workerinput"):  # an xdist worker: the controller prints
        return
    paths = sorted(_totals.own, key=lambda p: _totals.own[p] + _totals.children[p], reverse=True)
    write = terminalreporter.write_line
    terminalreporter.section("CPU per test file (own + subprocesses, s)")
    write(f"{'total':>8} {'own':>8} {'subproc':>8} {'tests':>6}  file  [costliest phase]")
    for path in paths[:30]:
        own, children = _totals.own[path], _totals.children[path]
        worst, name = _totals.slowest.get(path, (0.0, ""))
        write(f"{own + children:8.1f} {own:8.1f} {children:8.1f} {_totals.tests[path]:6d}  {path}  "
              f"[{worst:.1f} {name}]")
    own_sum, children_sum = sum(_totals.own.values()), sum(_totals.children.values())
    write(f"{own_sum + children_sum:8.1f} {own_sum:8.1f} {children_sum:8.1f} "
          f"{sum(_totals.tests.values()):6d}  all {len(paths)} files")
