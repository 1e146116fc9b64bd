"""A concurrent sender of signed deliveries over real HTTP (one keep-alive connection per sender thread)."""

from __future__ import annotations

import http.client
import itertools
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from tests.webhooks.payloads import sign


@dataclass(frozen=True)
class Delivery:
    body: bytes
    headers: dict[str, str]


def signed_delivery(
    body: bytes, *, topic: str, shop: str, secret: str, webhook_id: str | None = None, hex_form: bool = False
) -> Delivery:
    headers = {
        "Content-Type": "application/json",
        "X-Genstore-Topic": topic,
        "X-Genstore-Shop-Domain": shop,
        "X-Genstore-Hmac-Sha256": sign(body, secret, hex_form=hex_form),
    }
    if webhook_id is not None:
        headers["X-Genstore-Webhook-Id"] = webhook_id
    return Delivery(body=body, headers=headers)


@dataclass
class SendReport:
    statuses: list[int]
    bodies: list[bytes]
    seconds: float
    errors: list[str] = field(default_factory=list)


class Progress:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.done = 0

    def add(self) -> None:
        with self._lock:
            self.done += 1


def post_all(
    url: str, deliveries: list[Delivery], *, concurrency: int = 16, progress: Progress | None = None,
    timeout: float = 30,
) -> SendReport:
    """POST every delivery once; status -1 marks a request that got no HTTP answer (error text kept)."""
    parts = urlsplit(url)
    statuses = [0] * len(deliveries)
    bodies = [b""] * len(deliveries)
    errors: list[str] = []
    counter = itertools.count()
    lock = threading.Lock()

    def sender() -> None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        while True:
            with lock:
                index = next(counter)
            if index >= len(deliveries):
                break
            delivery = deliveries[index]
            try:
                connection.request("POST", parts.path, body=delivery.body, headers=delivery.headers)
                response = connection.getresponse()
                bodies[index] = response.read()
                statuses[index] = response.status
            except (OSError, http.client.HTTPException) as exc:
                statuses[index] = -1
                with lock:
                    errors.append(f"{index}: {type(exc).__name__}: {exc}")
                connection.close()
            if progress is not None:
                progress.add()
        connection.close()

    started = time.monotonic()
    threads = [threading.Thread(target=sender, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return SendReport(statuses=statuses, bodies=bodies, seconds=time.monotonic() - started, errors=errors)
