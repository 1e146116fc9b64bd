"""`make run`: the whole app on one machine, on embedded defaults unless DATABASE_URL / REDIS_URL are set.

Creates `.env` on first run (DEBUG, a random SECRET_KEY and a fresh encryption key), migrates, creates an admin
user (printing its credentials once, or taking OMA_ADMIN_USERNAME / OMA_ADMIN_PASSWORD), and starts the web
server, a Celery worker and beat together. When no real store is configured it also starts the Genstore sandbox
and connects a demo store to it, with the carrier sandbox, carrier accounts and some imported tracking numbers
so polling and pushes have something to show. Ctrl-C stops every process cleanly.
"""

from __future__ import annotations

import base64
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
WEB_PORT = int(os.environ.get("OMA_WEB_PORT", "8000"))
SANDBOX_PORT = int(os.environ.get("OMA_SANDBOX_PORT", "8100"))
CARRIER_SANDBOX_PORT = int(os.environ.get("OMA_CARRIER_SANDBOX_PORT", "8200"))
DEMO_SHIPMENTS = 60
DEMO_DOMAIN = "demo.genmystore.com"
DEMO_TOKEN = "demo-access-token"  # the sandbox's own credentials, not a secret of any real store
DEMO_SECRET = "demo-client-secret"


def say(message: str) -> None:
    print(f"[oma] {message}", flush=True)


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
    import django

    django.setup()


def ensure_admin_user() -> None:
    from django.contrib.auth import get_user_model

    username = os.environ.get("OMA_ADMIN_USERNAME", "admin")
    password = os.environ.get("OMA_ADMIN_PASSWORD")
    user_model = get_user_model()
    user = user_model.objects.filter(username=username).first()
    if user and not password:
        say(f"admin user {username!r} exists (password as printed on the first run)")
        return
    generated = password is None
    password = password or secrets.token_urlsafe(12)
    if user is None:
        user_model.objects.create_superuser(username=username, email="", password=password)
    else:
        user.set_password(password)
        user.save(update_fields=["password"])
    if generated:
        say(f"admin user created: username={username} password={password}  (printed once; keep it)")
    else:
        say(f"admin user {username!r} ready (password from OMA_ADMIN_PASSWORD)")


def needs_sandbox() -> bool:
    from oma.stores.models import Store

    real_stores = Store.objects.exclude(domain=DEMO_DOMAIN)
    return not real_stores.exists()


def ensure_demo_carrier_accounts() -> None:
    """One shared account per carrier, pointed at the carrier sandbox (its credentials are the sandbox's own)."""
    from tracking.models import CarrierAccount
    from tracking.services import OAUTH_CARRIERS, carrier_account_add

    base_url = f"http://127.0.0.1:{CARRIER_SANDBOX_PORT}"
    for carrier in ("ups", "fedex", "usps", "dhl", "17track"):
        if CarrierAccount.objects.filter(carrier=carrier, store__isnull=True, is_active=True).exists():
            continue
        if carrier in OAUTH_CARRIERS:
            carrier_account_add(carrier=carrier, client_id="demo", client_secret="demo", base_url=base_url)
        else:
            carrier_account_add(carrier=carrier, api_key="demo", base_url=base_url)


def ensure_demo_tracking() -> None:
    """Import tracking numbers (CSV, as a merchant would) for some paid demo orders, once, so polling and
    pushes have something to show."""
    from oma.channels.csv_import import tracking_csv_import
    from oma.stores.models import Store
    from tracking.models import Shipment
    from tracking.sandbox.numbers import numbers_for

    store = Store.objects.get(domain=DEMO_DOMAIN)
    if Shipment.objects.filter(store=store).exists():
        return
    orders = list(
        store.orders.filter(financial_status="paid", cancelled_at__isnull=True, fulfillment_status="unfulfilled")
        .order_by("order_id")
        .values_list("order_id", flat=True)[:DEMO_SHIPMENTS]
    )
    carriers = ["ups", "fedex", "usps", "dhl", "17track"]
    numbers = {carrier: numbers_for(carrier, DEMO_SHIPMENTS) for carrier in carriers}
    rows = ["order,tracking_number,carrier"]
    for position, order_id in enumerate(orders):
        carrier = carriers[position % len(carriers)]
        rows.append(f"{order_id},{next(numbers[carrier])},{'' if carrier == '17track' else carrier}")
    report = tracking_csv_import(store=store, data="\n".join(rows).encode(), file_name="demo-tracking.csv")
    say(f"demo tracking imported from CSV: {report.as_text().splitlines()[0]}")


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
    ensure_admin_user()

    children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(name: str, *cmd: str) -> None:
        # Each child gets its own process group so Ctrl-C reaches them through us, once, in order.
        children.append((name, subprocess.Popen(list(cmd), cwd=ROOT, start_new_session=True)))

    try:
        if needs_sandbox():
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
            ensure_demo_carrier_accounts()
            ensure_demo_tracking()
        start("web", PYTHON, "manage.py", "runserver", f"127.0.0.1:{WEB_PORT}", "--noreload")
        start("worker", PYTHON, "-m", "celery", "-A", "oma", "worker", "-l", "info", "--concurrency", "2")
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
