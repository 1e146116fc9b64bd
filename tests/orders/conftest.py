from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from oma.stores.models import Store
from tests.genstore_sandbox import genstore_sandbox  # noqa: F401  (fixture)


class CraftedGenstore:
    """A minimal Genstore on 127.0.0.1 answering GET /orders with exactly the payloads a test crafts (one page),
    for shapes the sandbox does not make. Real HTTP, so the real client and parser run."""

    def __init__(self) -> None:
        self.orders: list[Any] = []
        crafted = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path.endswith("/orders/count"):
                    body = {"count": len(crafted.orders)}
                elif path.endswith("/orders"):
                    body = {"orders": crafted.orders}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def store(self, domain: str = "crafted.genmystore.com") -> Store:
        return Store.objects.create(
            domain=domain,
            api_base_url=f"http://127.0.0.1:{self.server.server_port}/crafted",
            access_token="t",
            client_secret="s",
            rate_limit_capacity=1000,
            rate_limit_refill_per_second=1000,
        )

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def crafted_genstore() -> Iterator[CraftedGenstore]:
    server = CraftedGenstore()
    yield server
    server.stop()
