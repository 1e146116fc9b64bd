"""Driving a sandbox that runs in another process: `SandboxProcess` starts one (`python -m oma.sandbox`) and reads
its startup line; `SandboxControl` calls its `/_sandbox/` endpoints, mirroring the `GenstoreSandbox` Python API.

    with SandboxProcess(orders=100_000, rate_limit="off") as sandbox:
        base_url = sandbox.base_url_for("shop1")
        sandbox.control.mutate_orders("shop1", 1000)
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
READY_PREFIX = "Genstore sandbox ready"


class SandboxControlError(Exception):
    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status


def parse_startup_line(line: str) -> dict[str, str]:
    """'Genstore sandbox ready base_urls=... access_token=...' -> {"base_urls": ..., "access_token": ...}."""
    if not line.startswith(READY_PREFIX):
        raise ValueError(f"not a sandbox startup line: {line!r}")
    return dict(part.split("=", 1) for part in line[len(READY_PREFIX) :].split() if "=" in part)


class SandboxControl:
    """The `/_sandbox/` control API of a running sandbox. `url` is the server root (http://127.0.0.1:8100)."""

    def __init__(self, url: str, *, timeout: float = 120.0) -> None:
        self.url = url.rstrip("/").removesuffix("/_sandbox")
        self.timeout = timeout

    def _call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(  # noqa: S310 - http(s) URL of our own sandbox
            f"{self.url}/_sandbox/{path.lstrip('/')}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - same URL
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                message = json.loads(body).get("error", body.decode())
            except ValueError:
                message = body.decode(errors="replace")
            raise SandboxControlError(exc.code, message) from None
        except OSError as exc:
            raise SandboxControlError(None, f"sandbox unreachable at {self.url}: {exc}") from exc

    def info(self) -> dict[str, Any]:
        return self._call("GET", "info")

    def health(self) -> bool:
        return bool(self._call("GET", "health").get("ok"))

    def stats(self, handle: str) -> dict[str, Any]:
        return self._call("GET", f"{quote(handle)}/stats")["stats"]

    def reset_stats(self, handle: str | None = None) -> None:
        self._call("POST", "stats/reset", {"shop": handle} if handle else {})

    def set_faults(self, **settings: Any) -> dict[str, Any]:
        """Same keywords as GenstoreSandbox.set_faults; no keywords turns faults off."""
        return self._call("POST", "faults", settings)["faults"]

    def set_rate_limit(self, capacity: int, refill: float, *, handle: str | None = None) -> None:
        self._call("POST", "rate-limit", {"capacity": capacity, "refill": refill, "shop": handle})

    def set_access_token(self, token: str, *, handle: str | None = None) -> None:
        self._call("POST", "access-token", {"token": token, "shop": handle})

    def mutate_orders(self, handle: str, n: int, *, seed: int | None = None) -> list[str]:
        return self._call("POST", f"{quote(handle)}/mutate", {"n": n, "seed": seed})["orderIds"]

    def add_orders(self, handle: str, n: int) -> list[str]:
        return self._call("POST", f"{quote(handle)}/orders", {"n": n})["orderIds"]

    def order_count(self, handle: str) -> int:
        return self._call("GET", f"{quote(handle)}/orders")["count"]

    def order(self, handle: str, order_id: str) -> dict[str, Any]:
        return self._call("GET", f"{quote(handle)}/orders/{order_id}")["order"]

    def cancel_order(self, handle: str, order_id: str, *, reason: str = "customer") -> dict[str, Any]:
        return self._call("POST", f"{quote(handle)}/orders/{order_id}/cancel", {"reason": reason})["order"]

    def orders_by_source(self, handle: str, *, source_name: str | None = None) -> list[dict[str, Any]]:
        """The orders created through POST /orders: see GenstoreSandbox.orders_by_source."""
        query = f"?sourceName={quote(source_name)}" if source_name is not None else ""
        return self._call("GET", f"{quote(handle)}/orders-by-source{query}")["orders"]

    def canonical(self, handle: str, order_id: str) -> dict[str, Any]:
        """The canonical view as JSON: datetimes as ISO text, Decimals as strings, tuples as lists."""
        return self._call("GET", f"{quote(handle)}/orders/{order_id}/canonical")["canonical"]

    def quirky_order_ids(self, handle: str) -> dict[str, list[str]]:
        return self._call("GET", f"{quote(handle)}/quirks")["quirks"]

    def webhook_subscriptions(self, handle: str) -> list[dict[str, Any]]:
        return self._call("GET", f"{quote(handle)}/webhooks")["webhooks"]

    def webhook_attempts(self, handle: str) -> list[dict[str, Any]]:
        return self._call("GET", f"{quote(handle)}/webhooks/attempts")["attempts"]

    def send_webhook(self, handle: str, topic: str, payload: Any, *, address: str | None = None) -> list[str]:
        body = {"topic": topic, "payload": payload, "address": address}
        return self._call("POST", f"{quote(handle)}/webhooks/send", body)["webhookIds"]

    def wait_for_webhooks(self, timeout: float = 10.0) -> bool:
        return bool(self._call("POST", "webhooks/wait", {"timeout": timeout})["idle"])


class SandboxProcess:
    """A sandbox in a subprocess (`python -m oma.sandbox`, no Django), for benchmarks and manual runs."""

    def __init__(
        self,
        *,
        orders: int = 500,
        seed: int = 1,
        shops: tuple[str, ...] | list[str] = ("shop1",),
        host: str = "127.0.0.1",
        port: int = 0,
        rate_limit: str = "40/2",
        extra_args: tuple[str, ...] | list[str] = (),
        python: str = sys.executable,
        startup_timeout: float = 60.0,
    ) -> None:
        self.command = [
            python, "-m", "oma.sandbox", "--host", host, "--port", str(port), "--orders", str(orders),
            "--seed", str(seed), "--shop", ",".join(shops), "--rate-limit", rate_limit, *extra_args,
        ]  # fmt: skip
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[str] | None = None
        self.details: dict[str, str] = {}

    def start(self) -> SandboxProcess:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
        self.process = subprocess.Popen(
            self.command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], self.startup_timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line.startswith(READY_PREFIX):
            self.stop()
            raise RuntimeError(f"the sandbox did not start: {line!r}")
        self.details = parse_startup_line(line.strip())
        return self

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return self.details["control"].removesuffix("/_sandbox/")

    @property
    def access_token(self) -> str:
        return self.details["access_token"]

    @property
    def client_secret(self) -> str:
        return self.details["client_secret"]

    @property
    def control(self) -> SandboxControl:
        return SandboxControl(self.url)

    def base_url_for(self, handle: str) -> str:
        return f"{self.url}/{handle}"

    @staticmethod
    def domain_for(handle: str) -> str:
        return f"{handle}.genmystore.com"
