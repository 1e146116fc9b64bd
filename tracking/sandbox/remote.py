"""The carrier sandbox in a child process, driven like the in-process one.

In-process, the sandbox's request handling competes with the poller for one interpreter lock; a child process
runs on its own core, which is what large tests and benchmarks want. `SandboxProcess` starts
`python -m tracking.sandbox`, and forwards the controls (clock, limits, faults, scripts, stats) to its
`/_sandbox/` endpoints. Journeys are a pure function of the number and the epoch, so expected statuses are
computed here without asking the child.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tracking.sandbox.journeys import FINAL_STATUS, Scenario, Step, journey, scenario_for

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent


class SandboxProcess:
    def __init__(
        self,
        *,
        epoch: datetime | None = None,
        clock: datetime | None = None,
        rate_limits: dict[str, tuple[int, float]] | None = None,
        token_ttl: float = 3600.0,
        host: str = "127.0.0.1",
    ) -> None:
        self.epoch = epoch or (datetime.now(UTC) - timedelta(days=2)).replace(second=0, microsecond=0)
        self.clock = clock
        self.rate_limits = dict(rate_limits or {})
        self.token_ttl = token_ttl
        self.host = host
        self.base_url = ""
        self._scripted: dict[str, Scenario] = {}
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> SandboxProcess:
        command = [
            sys.executable, "-m", "tracking.sandbox", "--port", "0", "--host", self.host,
            "--epoch", self.epoch.isoformat(), "--token-ttl", str(self.token_ttl),
        ]
        if self.clock is not None:
            command += ["--clock", self.clock.isoformat()]
        for carrier, (requests, seconds) in self.rate_limits.items():
            command += ["--rate-limit", f"{carrier}={requests}/{seconds}"]
        self._process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline().strip()
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"the carrier sandbox process did not start (said {line!r})")
        self.base_url = line.split(" ", 1)[1]
        return self

    def stop(self) -> None:
        if self._process is None:
            return
        try:
            if self._process.stdin is not None:
                self._process.stdin.close()  # the child stops when its stdin closes
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)
        finally:
            if self._process.stdout is not None:
                self._process.stdout.close()
            self._process = None

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- controls ---------------------------------------------------------------------------------------

    def _call(self, action: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - our own child process on 127.0.0.1
            f"{self.base_url}/_sandbox/{action}", data=data, method="GET" if body is None else "POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return json.loads(response.read())

    def set_clock(self, moment: datetime) -> None:
        self._call("clock", {"now": moment.isoformat()})

    def now(self) -> datetime:
        return datetime.fromisoformat(self._call("clock")["now"])

    def set_rate_limit(self, carrier: str, requests: int, per_seconds: float) -> None:
        self._call("rate_limit", {"carrier": carrier, "requests": requests, "per_seconds": per_seconds})

    def set_down(self, carrier: str, down: bool = True, *, seconds: float | None = None) -> None:
        self._call("down", {"carrier": carrier, "down": down, "seconds": seconds})

    def fail_next(self, carrier: str, count: int = 1, *, status: int = 503) -> None:
        self._call("fail_next", {"carrier": carrier, "count": count, "status": status})

    def set_credentials(
        self, carrier: str, *, client_id: str = "", client_secret: str = "", api_key: str = ""
    ) -> None:
        self._call(
            "credentials",
            {"carrier": carrier, "client_id": client_id, "client_secret": client_secret, "api_key": api_key},
        )

    def script(self, number: str, scenario: Scenario | str) -> None:
        self._scripted[number.upper()] = Scenario(scenario)
        self._call("script", {"number": number, "scenario": str(Scenario(scenario))})

    def stats(self) -> dict[str, Any]:
        return self._call("stats")

    def reset_stats(self) -> None:
        self._call("reset_stats", {})

    # --- journeys (computed locally: the same pure functions the child uses) -------------------------------

    def scenario(self, number: str) -> Scenario:
        return self._scripted.get(number.upper()) or scenario_for(number)

    def journey(self, number: str) -> list[Step]:
        return journey(number, self.epoch, self.scenario(number))

    def expected_final_status(self, number: str) -> str:
        return FINAL_STATUS[self.scenario(number)]
