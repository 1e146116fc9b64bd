"""`make run` (python -m oma.devrun) on embedded defaults, in a copy of the project: the admin comes up with the
demo store's orders, and a SIGTERM stops every process it started (as Ctrl-C does)."""

from __future__ import annotations

import http.cookiejar
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_make_run_serves_the_demo_orders_and_stops_everything_on_sigterm(tmp_path: Path) -> None:
    project = tmp_path / "oma"
    shutil.copytree(ROOT, project, ignore=shutil.ignore_patterns(
        ".git", ".venv", "var", "__pycache__", ".env", "*.sqlite3", ".pytest_cache", ".ruff_cache",
    ))
    web, sandbox, carriers = free_port(), free_port(), free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "LANG": "C.UTF-8",
        "OMA_WEB_PORT": str(web), "OMA_SANDBOX_PORT": str(sandbox), "OMA_CARRIER_SANDBOX_PORT": str(carriers),
        "OMA_ADMIN_USERNAME": "admin", "OMA_ADMIN_PASSWORD": "make-run-test-password",
    }  # nothing else: no DATABASE_URL, REDIS_URL or broker, the embedded defaults
    log = (tmp_path / "run.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "oma.devrun"], cwd=project, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 150
        while not (process.poll() is None and b"OMA is up" in (tmp_path / "run.log").read_bytes()):
            assert process.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "run.log").read_text()[-3000:]
            time.sleep(0.5)

        jar = http.cookiejar.CookieJar()
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        login = f"http://127.0.0.1:{web}/admin/login/"
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', browser.open(login, timeout=10).read())
        assert token is not None
        form = {"username": "admin", "password": "make-run-test-password", "next": "/admin/",
                "csrfmiddlewaretoken": token.group(1).decode()}
        browser.open(urllib.request.Request(login, data=urllib.parse.urlencode(form).encode(),
                                            headers={"Referer": login}), timeout=10)
        orders = browser.open(f"http://127.0.0.1:{web}/admin/orders/order/", timeout=30).read().decode()
        # The demo store's 500 orders, plus the demo's external orders once they are created in Genstore and mirrored.
        shown = re.search(r"\b(\d+) orders\b", orders)
        assert shown is not None and int(shown.group(1)) >= 500, orders[-2000:]
        assert (project / ".env").exists() and (project / "var" / "oma.sqlite3").exists()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=40)
        finally:
            if process.poll() is None:
                process.kill()
            log.close()
    output = (tmp_path / "run.log").read_text()
    assert "[oma] stopping" in output
    deadline = time.monotonic() + 20
    while any(port_open(port) for port in (web, sandbox, carriers)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not [port for port in (web, sandbox, carriers) if port_open(port)], "a process outlived make run"
