"""Helpers for the Genstore client tests: a real scripted HTTP server on 127.0.0.1 (the fake clock and the bucket's
Redis come from tests.core.fakes)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.core.fakes import fake_clock, limiter_redis  # noqa: F401 (fixtures; the clock and Redis of oma.core)


@dataclass
class Reply:
    """One scripted answer. `delay` makes the server sleep before answering (to provoke read timeouts)."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    raw: bytes | None = None  # sent as-is instead of JSON


@dataclass
class SeenRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


Handler = Callable[[SeenRequest], Reply]


class ScriptedServer:
    """A real ThreadingHTTPServer whose answers each test scripts, per "METHOD /path" (path without query).

    `script("GET /api/202412/orders", Reply(...), Reply(...))` queues answers used in order (the last one repeats);
    `handle("GET /x", func)` answers with func(request) every time. Every request is recorded in `requests`.
    """

    def __init__(self, port: int = 0) -> None:
        self.requests: list[SeenRequest] = []
        self._queues: dict[str, list[Reply]] = {}
        self._handlers: dict[str, Handler] = {}
        self._lock = threading.Lock()
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw_body = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw_body) if raw_body else None
                except ValueError:
                    body = raw_body
                parts = urlsplit(self.path)
                seen = SeenRequest(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query, keep_blank_values=True),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                reply = server._reply_for(seen)
                if reply.delay:
                    time.sleep(reply.delay)
                payload = reply.raw if reply.raw is not None else json.dumps(reply.body).encode()
                if reply.status == 204:
                    payload = b""
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    if reply.raw is None:
                        self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (read timeout): expected in those tests

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ScriptedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def script(self, route: str, *replies: Reply) -> None:
        with self._lock:
            self._queues[route] = list(replies)

    def handle(self, route: str, handler: Handler) -> None:
        with self._lock:
            self._handlers[route] = handler

    def _reply_for(self, seen: SeenRequest) -> Reply:
        route = f"{seen.method} {seen.path}"
        with self._lock:
            self.requests.append(seen)
            handler = self._handlers.get(route)
            queue = self._queues.get(route)
            if handler is None and queue:
                return queue.pop(0) if len(queue) > 1 else queue[0]
        if handler is not None:
            return handler(seen)
        return Reply(404, {"error": f"no route {route}"})

    def seen(self, route: str) -> list[SeenRequest]:
        method, path = route.split(" ", 1)
        return [r for r in self.requests if r.method == method and r.path == path]


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    scripted = ScriptedServer().start()
    yield scripted
    scripted.stop()
