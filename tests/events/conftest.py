"""A real webhook receiver on 127.0.0.1 that checks Standard Webhooks signatures with its own code (not OMA's),
and a store with a subscription pointing at it (the operator allows 127.0.0.1, as for the sandboxes)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from oma.events.models import EventSubscription
from oma.events.services import subscription_create
from oma.stores.models import Store
from tests.admin.factories import StoreFactory


def signature_valid(*, secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The receiver's side of standardwebhooks.com v1, written from the spec."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    if abs(time.time() - int(headers["webhook-timestamp"])) > 300:
        return False
    return any(
        version == "v1" and hmac.compare_digest(value, expected)
        for version, _, value in (part.partition(",") for part in headers["webhook-signature"].split())
    )


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """Answers each POST with the next scripted status (then 200), after `delay` seconds; records every request."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.script: list[tuple[int, dict[str, str]]] = []
        self.delay = 0.0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with receiver._lock:
                    status, extra = receiver.script.pop(0) if receiver.script else (200, {})
                    receiver.received.append(Received({k.lower(): v for k, v in self.headers.items()}, body, status))
                if receiver.delay:
                    time.sleep(receiver.delay)
                answer = b'{"ok": true}' if status < 300 else b"receiver says no"
                try:
                    self.send_response(status)
                    for name, value in extra.items():
                        self.send_header(name, value)
                    self.send_header("content-length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:  # the client gave up (a timeout test)
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/oma"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def answer(self, *statuses: int | tuple[int, dict[str, str]]) -> None:
        self.script.extend(s if isinstance(s, tuple) else (s, {}) for s in statuses)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def trusted_localhost(settings) -> None:
    """The operator lets merchants use 127.0.0.1 (OMA_MERCHANT_API_HOSTS), as the sandbox tests do."""
    settings.OMA_MERCHANT_API_HOSTS = ["127.0.0.1"]


@pytest.fixture
def store(db) -> Store:
    return StoreFactory(name="Teapots")


def subscribe(store: Store, receiver: Receiver, *event_types: str) -> EventSubscription:
    return subscription_create(store=store, url=receiver.url, event_types=list(event_types) or ["alert.*"])
