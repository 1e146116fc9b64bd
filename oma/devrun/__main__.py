"""`python -m oma.devrun` (`make run`): see the package docstring."""

from __future__ import annotations

import base64
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request

import django
from django.conf import settings

from oma.devrun import (
    CARRIER_SANDBOX_PORT,
    DEMO_DOMAIN,
    DEMO_SECRET,
    DEMO_TOKEN,
    PYTHON,
    ROOT,
    SANDBOX_PORT,
    WEB_PORT,
    say,
)


def ensure_env_file() -> None:
    env_file = ROOT / ".env"
    if env_file.exists():
        return
    fernet_key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    env_file.write_text(
        "# Written by `make run` for local use. See .env.example for every setting.\n"
        "DEBUG=1\n"
        f"SECRET_KEY={secrets.token_urlsafe(48)}\n"
        f"OMA_ENCRYPTION_KEYS={fernet_key}\n"
    )
    env_file.chmod(0o600)
    say(f"created {env_file} with a random SECRET_KEY and encryption key (keep it: it decrypts your tokens)")


def manage(*args: str, check: bool = True, capture: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "manage.py", *args], cwd=ROOT, check=check, text=True, capture_output=capture
    )


def django_setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oma.settings")

    django.setup()


def wait_for(url: str, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - our own local sandbox
                return True
        except OSError as exc:
            if getattr(exc, "code", None):  # an HTTP error still means the server is up
                return True
            time.sleep(0.2)
    return False


def _stop_on_signal(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM (a process manager, `timeout`) or SIGHUP (terminal closed): stop like Ctrl-C


def main() -> int:
    signal.signal(signal.SIGTERM, _stop_on_signal)
    signal.signal(signal.SIGHUP, _stop_on_signal)
    os.chdir(ROOT)
    ensure_env_file()
    say("migrating the database")
    manage("migrate", "--noinput", "-v", "0")
    django_setup()
    from oma.devrun import demo  # why: demo imports models, which load only after django.setup()

    demo.ensure_admin_user()

    children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(name: str, *cmd: str) -> None:
        # Each child gets its own process group so Ctrl-C reaches them through us, once, in order.
        children.append((name, subprocess.Popen(list(cmd), cwd=ROOT, start_new_session=True)))

    try:
        if demo.needs_sandbox():
            say(f"no store configured: starting the Genstore sandbox on 127.0.0.1:{SANDBOX_PORT} with a demo store")
            start(
                "genstore sandbox",
                PYTHON, "manage.py", "genstore_sandbox", "--port", str(SANDBOX_PORT), "--orders", "500",
                "--seed", "1", "--shop", "demo", "--access-token", DEMO_TOKEN, "--client-secret", DEMO_SECRET,
            )
            sandbox_base = f"http://127.0.0.1:{SANDBOX_PORT}/demo"
            start("carrier sandbox", PYTHON, "manage.py", "carrier_sandbox", "--port", str(CARRIER_SANDBOX_PORT))
            if not wait_for(f"{sandbox_base}/api/202412/shops/info"):
                raise RuntimeError("the Genstore sandbox did not start")
            manage(
                "connect_store", "--domain", DEMO_DOMAIN, "--access-token", DEMO_TOKEN, "--client-secret",
                DEMO_SECRET, "--api-base-url", sandbox_base, "--name", "Demo store (sandbox)",
                "--register-webhooks", f"http://127.0.0.1:{WEB_PORT}/webhooks/genstore/",
            )
            manage("sync_orders", "--store", DEMO_DOMAIN, "--full")
            demo.ensure_demo_carrier_accounts()
            demo.ensure_demo_tracking()
            demo.ensure_demo_external_orders()
        start("web", PYTHON, "manage.py", "runserver", f"127.0.0.1:{WEB_PORT}", "--noreload")
        # One worker for every queue (production runs one per workload: settings.OMA_CELERY_QUEUES).
        start("worker", PYTHON, "-m", "celery", "-A", "oma", "worker", "-l", "info", "--concurrency", "2",
              "-Q", ",".join(settings.OMA_CELERY_QUEUES))
        start("beat", PYTHON, "-m", "celery", "-A", "oma", "beat", "-l", "info")
        wait_for(f"http://127.0.0.1:{WEB_PORT}/admin/login/")
        say(f"OMA is up: http://127.0.0.1:{WEB_PORT}/admin/  (Ctrl-C stops everything)")
        while True:
            for name, process in children:
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with status {process.returncode}")
            time.sleep(0.5)
    except KeyboardInterrupt:
        say("stopping")
        return 0
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        say(f"error: {exc}")
        return 1
    finally:
        stop_all(children)


def stop_all(children: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    for _, process in reversed(children):
        if process.poll() is None:
            # The main process only: Celery then shuts its pool down warmly (finishing what it holds).
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for name, process in reversed(children):
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"{name} did not stop in time; killing it")
            os.killpg(process.pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
