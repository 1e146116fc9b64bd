"""The Docker deploy, end to end, as README's production steps run it: build the image, bring docker-compose.yml up
until every service is healthy (migrate having exited 0), check the image (no .env, no test tools, not root), post
a signed Genstore webhook through the published port and wait until a worker has processed it into an order, then
take the stack down with its volumes.

.ci/run calls it when a Docker engine answers. Standard library only; run from the repository root:
`python3 .ci/deploy_smoke.py [--keep]`. The stack runs as its own compose project (`oma-ci`) with its settings in
an override file, so a developer's .env and running stack are left alone; it needs port 8000 on 127.0.0.1 free.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

PROJECT = "oma-ci"
HOST = "oma.example.com"  # what the TLS proxy would pass on; the only entry of ALLOWED_HOSTS here
SHOP = "ci-smoke.genmystore.com"
ONE_SHOT_SERVICES = {"migrate"}
HEALTHY_TIMEOUT = 600.0
PROCESSED_TIMEOUT = 120.0

# Run inside the web container: the image carries what it runs and nothing else.
IMAGE_CHECK = """
import importlib.util, os, sys
absent = [name for name in ("pytest", "ruff", "mypy", "playwright", "importlinter", "factory", "pytest_django", "uv")
          if importlib.util.find_spec(name) is not None]
baked = [path for path in ("/app/.env", "/app/.venv", "/app/.git", "/app/tests", "/app/bench", "/app/var/oma.sqlite3")
         if os.path.exists(path)]
problems = []
if absent: problems.append(f"test tools installed: {absent}")
if baked: problems.append(f"files that must stay out of the image: {baked}")
if os.getuid() != 10001: problems.append(f"runs as uid {os.getuid()}, not 10001")
print("; ".join(problems) or "image ok")
sys.exit(1 if problems else 0)
"""

SEED_STORE = """
from oma.stores.services import store_connect
store_connect(domain={shop!r}, access_token="ci-smoke-token", client_secret={secret!r}, verify=False)
print("store ready")
"""

DELIVERY_STATE = """
import json
from oma.orders.models import Order
from webhooks.models import WebhookDelivery
delivery = WebhookDelivery.objects.filter(webhook_id={webhook_id!r}).first()
print(json.dumps({{
    "state": delivery.state if delivery else None,
    "order": Order.objects.filter(store__domain={shop!r}, order_id={order_id!r}).exists(),
}}))
"""


class SmokeFailed(Exception):
    pass


class Stack:
    def __init__(self, compose_files: Sequence[str]) -> None:
        self.base = ["docker", "compose", "-p", PROJECT, *(arg for path in compose_files for arg in ("-f", path))]

    def run(self, *args: str, capture: bool = False, check: bool = True) -> str:
        result = subprocess.run([*self.base, *args], text=True, capture_output=capture, check=False)
        if check and result.returncode != 0:
            detail = (result.stderr or "").strip()[-2000:] if capture else ""
            raise SmokeFailed(f"docker compose {' '.join(args[:3])} exited {result.returncode} {detail}".strip())
        return result.stdout if capture else ""

    def manage(self, code: str) -> str:
        """Python run by `manage.py shell` in the web container (the settings and database the app uses)."""
        shell = ("exec", "-T", "web", "python", "manage.py", "shell", "--verbosity", "0", "-c", code)
        return self.run(*shell, capture=True).strip()

    def containers(self) -> list[dict]:
        text = self.run("ps", "--all", "--format", "json", capture=True).strip()
        if not text:
            return []
        if text.startswith("["):  # compose before 2.21 printed one array
            return list(json.loads(text))
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def override_file(services: Sequence[str], directory: str) -> str:
    """The settings .env would hold, for every OMA service: strong keys made for this run only."""
    environment = {
        "SECRET_KEY": secrets.token_urlsafe(50),
        "OMA_ENCRYPTION_KEYS": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "ALLOWED_HOSTS": f"{HOST},web",
        "CSRF_TRUSTED_ORIGINS": f"https://{HOST}",
    }
    path = Path(directory) / "ci.override.json"  # JSON is YAML: compose reads it as an override file
    oma_services = [name for name in services if name not in ("postgres", "redis")]
    path.write_text(json.dumps({"services": {name: {"environment": environment} for name in oma_services}}))
    return str(path)


def not_ready(containers: list[dict], services: Sequence[str]) -> list[str]:
    """What still keeps the stack from being up; raises for a container that can no longer get there."""
    by_service = {container.get("Service"): container for container in containers}
    waiting = []
    for service in services:
        container = by_service.get(service)
        if container is None:
            waiting.append(f"{service}: no container yet")
            continue
        state, health = container.get("State", ""), container.get("Health", "")
        if service in ONE_SHOT_SERVICES:
            if state == "exited" and container.get("ExitCode") not in (0, None):
                raise SmokeFailed(f"{service} exited {container.get('ExitCode')}")
            if state != "exited":
                waiting.append(f"{service}: {state}")
        elif state in ("exited", "dead"):
            raise SmokeFailed(f"{service} stopped ({container.get('Status', state)})")
        elif health == "unhealthy":
            raise SmokeFailed(f"{service} is unhealthy")
        elif state != "running" or health != "healthy":
            waiting.append(f"{service}: {state} {health}".strip())
    return waiting


def wait_healthy(stack: Stack, services: Sequence[str]) -> None:
    deadline = time.monotonic() + HEALTHY_TIMEOUT
    waiting = ["nothing checked yet"]
    while time.monotonic() < deadline:
        waiting = not_ready(stack.containers(), services)
        if not waiting:
            return
        time.sleep(5)
    raise SmokeFailed(f"not healthy after {HEALTHY_TIMEOUT:.0f} s: {', '.join(waiting)}")


def order_body(order_id: str) -> bytes:
    now = datetime.now(UTC).isoformat()
    order = {
        "orderId": order_id, "id": f"9{order_id}", "name": f"#{order_id}", "financialStatus": "paid",
        "fulfillmentStatus": None, "createdAt": now, "updatedAt": now, "totalPrice": "12.00", "currency": "USD",
        "sourceName": "web",
        "lineItems": [{"id": f"{order_id}-1", "sku": "SKU-A", "title": "Mug", "quantity": 1, "price": "12.00",
                       "requiresShipping": True, "fulfillableQuantity": 1}],
    }
    return json.dumps({"order": order}, separators=(",", ":")).encode()


def post_webhook(port: int, *, body: bytes, secret: str, webhook_id: str) -> tuple[int, str]:
    """A signed orders/create as Genstore sends it, arriving as it would through the TLS proxy."""
    signature = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    headers = {
        "Host": HOST,
        "X-Forwarded-Proto": "https",
        "X-Forwarded-For": "203.0.113.7",
        "Content-Type": "application/json",
        "X-Genstore-Topic": "orders/create",
        "X-Genstore-Shop-Domain": SHOP,
        "X-Genstore-Webhook-Id": webhook_id,
        "X-Genstore-Hmac-Sha256": signature,
    }
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", "/webhooks/genstore/", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


def wait_processed(stack: Stack, *, webhook_id: str, order_id: str) -> None:
    deadline = time.monotonic() + PROCESSED_TIMEOUT
    seen: dict = {}
    while time.monotonic() < deadline:
        output = stack.manage(DELIVERY_STATE.format(webhook_id=webhook_id, shop=SHOP, order_id=order_id))
        seen = json.loads(output.splitlines()[-1])
        if seen["state"] == "processed" and seen["order"]:
            return
        if seen["state"] == "failed":
            break
        time.sleep(2)
    raise SmokeFailed(f"the webhook was not processed into an order: {seen}")


def smoke(stack: Stack, services: Sequence[str]) -> None:
    print("deploy smoke: building the image and starting the stack", flush=True)
    stack.run("up", "-d", "--build", "--quiet-pull")
    wait_healthy(stack, services)
    print("deploy smoke: every service is healthy", flush=True)
    print("deploy smoke:", stack.run("exec", "-T", "web", "python", "-c", IMAGE_CHECK, capture=True).strip())
    secret = secrets.token_urlsafe(32)
    print("deploy smoke:", stack.manage(SEED_STORE.format(shop=SHOP, secret=secret)).splitlines()[-1])
    order_id = str(int(time.time()))
    webhook_id = f"ci-smoke-{order_id}"
    status, answer = post_webhook(8000, body=order_body(order_id), secret=secret, webhook_id=webhook_id)
    if status != 200 or "accepted" not in answer:
        raise SmokeFailed(f"the webhook got {status} {answer[:200]}")
    wait_processed(stack, webhook_id=webhook_id, order_id=order_id)
    print(f"deploy smoke: webhook {webhook_id} accepted and processed into order {order_id}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave the stack running afterwards (for a look)")
    args = parser.parse_args(argv)
    services = Stack(["docker-compose.yml"]).run("config", "--services", capture=True).split()
    with tempfile.TemporaryDirectory(prefix="oma-deploy-smoke-") as directory:
        stack = Stack(["docker-compose.yml", override_file(services, directory)])
        try:
            smoke(stack, services)
        except (SmokeFailed, OSError, ValueError) as exc:
            print(f"deploy smoke FAILED: {exc}", file=sys.stderr, flush=True)
            stack.run("ps", "--all", check=False)
            stack.run("logs", "--no-color", "--tail", "60", check=False)
            return 1
        finally:
            if not args.keep:
                stack.run("down", "--volumes", "--remove-orphans", "--timeout", "30", check=False)
    print("deploy smoke: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
