"""The benchmarks' load generator: wrk replaying pre-generated requests (bench/common.py, bench/wrk/replay.lua),
and the webhook benchmark's requests (bench/webhooks.py): seed-sized, unique and signed."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench.common import complete_requests, wrk_request_files, wrk_run
from bench.webhooks import SECRET, SHOP, SignedDeliveries, seed_sized_templates
from oma.genstore.topics import ORDERS_UPDATE, payload_shape_error
from oma.genstore.webhooks import HEADER_HMAC, HEADER_SHOP_DOMAIN, HEADER_TOPIC, HEADER_WEBHOOK_ID, WebhookVerifier

needs_wrk = pytest.mark.skipif(shutil.which("wrk") is None, reason="needs wrk (apt-get install wrk)")


class _Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    received: list[tuple[str, str, bytes]]
    lock: threading.Lock

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.lock:
            self.received.append((self.path, self.headers[HEADER_WEBHOOK_ID], body))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    received: list[tuple[str, str, bytes]] = []
    handler = type("Recorder", (_Recorder,), {"received": received, "lock": threading.Lock()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


def _deliveries(count: int) -> list[tuple[dict[str, str], bytes]]:
    return list(SignedDeliveries(seed_sized_templates(20)).take(count))


@needs_wrk
def test_each_request_is_sent_at_most_once_and_counted(tmp_path: Path, recorder: tuple[str, list]) -> None:
    url, received = recorder
    prefix = tmp_path / "requests"
    wrk_request_files(prefix, _deliveries(20_000), threads=2)

    result = wrk_run(url=url, path="/hooks/", requests_prefix=prefix, seconds=1, connections=4, threads=2, reuse=False)

    ids = [webhook_id for _, webhook_id, _ in received]
    assert result.wrapped == 0
    assert result.failed == 0
    assert 0 < result.requests <= len(ids) <= result.sent  # the last few may still be in flight when wrk stops
    assert len(set(ids)) == len(ids)  # none twice
    assert {path for path, _, _ in received} == {"/hooks/"}
    assert result.latency_ms["p50"] <= result.latency_ms["p99"] <= result.latency_ms["max"]
    assert result.generator_cpu > 0


@needs_wrk
def test_running_out_of_requests_is_counted(tmp_path: Path, recorder: tuple[str, list]) -> None:
    url, received = recorder
    prefix = tmp_path / "requests"
    wrk_request_files(prefix, _deliveries(5), threads=1)

    result = wrk_run(url=url, path="/", requests_prefix=prefix, seconds=1, connections=2, threads=1, reuse=True)

    assert result.wrapped > 0
    assert len({webhook_id for _, webhook_id, _ in received}) == 5


def test_deliveries_are_seed_sized_unique_and_signed() -> None:
    deliveries = _deliveries(200)
    verifier = WebhookVerifier([SECRET])
    bodies = [body for _, body in deliveries]
    assert len(set(bodies)) == len(bodies)
    assert len({headers[HEADER_WEBHOOK_ID] for headers, _ in deliveries}) == len(deliveries)
    assert 3300 <= sum(map(len, bodies)) / len(bodies) <= 3700
    for headers, body in deliveries:
        assert verifier.verify(body, headers[HEADER_HMAC])
        assert headers[HEADER_TOPIC] == ORDERS_UPDATE and headers[HEADER_SHOP_DOMAIN] == SHOP
        assert payload_shape_error(ORDERS_UPDATE, json.loads(body)) is None


def test_canned_server_counts_whole_requests_only() -> None:
    request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
    assert complete_requests(request * 2 + request[:-1]) == (2, request[:-1])
    assert complete_requests(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == (1, b"")
