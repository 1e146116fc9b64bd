from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from oma.sandbox import GenstoreSandbox

# A fixed anchor: the generated data is then the same on every day the suite runs.
ANCHOR = datetime(2025, 3, 1, tzinfo=UTC)


@pytest.fixture
def sandbox() -> Iterator[GenstoreSandbox]:
    with GenstoreSandbox(orders=300, seed=1, shops=("shop1", "shop2"), rate_limit=None, anchor=ANCHOR) as running:
        yield running


@pytest.fixture
def api(sandbox: GenstoreSandbox) -> requests.Session:
    session = requests.Session()
    session.headers["X-Genstore-Access-Token"] = sandbox.access_token
    return session


def orders_url(sandbox: GenstoreSandbox, handle: str = "shop1", path: str = "orders") -> str:
    return sandbox.api_url_for(handle, path)


_LINK = re.compile(r'<\s*([^>]+?)\s*>;\s*rel="?(\w+)"?')


def parse_link(header: str | None) -> dict[str, str]:
    """The tolerant parser the contract asks clients for: strip quotes, then <url>; rel=name pairs."""
    if not header:
        return {}
    return {rel: url for url, rel in _LINK.findall(header.strip().strip('"'))}


def walk(session: requests.Session, url: str, params: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Follow rel=next to the end: (orderIds in order served, raw Link headers seen)."""
    seen: list[str] = []
    headers: list[str] = []
    response = session.get(url, params=params, timeout=30)
    while True:
        assert response.status_code == 200, response.text
        seen.extend(str(order["orderId"]) for order in response.json()["orders"])
        link = response.headers.get("Link")
        if link:
            headers.append(link)
        next_url = parse_link(link).get("next")
        if not next_url:
            return seen, headers
        response = session.get(next_url, timeout=30)


class Receiver:
    """A local webhook endpoint that records every POST and answers `status`."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.received = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.received:
                    receiver.requests.append((dict(self.headers.items()), body))
                    receiver.received.notify_all()
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/genstore/"

    def bodies(self, topic: str | None = None) -> list[dict[str, Any]]:
        return [json.loads(body) for headers, body in self.requests if topic in (None, headers["X-Genstore-Topic"])]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()
