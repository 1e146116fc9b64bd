"""Signed webhook deliveries from the sandbox, sent from one background thread so no API request ever waits.

Every attempt is recorded (`WebhookAttempt`) so tests can see what was sent and what the receiver answered.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import logging
import queue
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)


def sign_body(body: bytes, secret: str) -> str:
    """X-Genstore-Hmac-Sha256: base64 of HMAC-SHA256 over the raw body, keyed with the app's client secret."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


@dataclass(frozen=True, slots=True)
class WebhookJob:
    handle: str
    subscription_id: int | None
    address: str
    topic: str
    body: bytes
    headers: dict[str, str]

    @property
    def webhook_id(self) -> str:
        return self.headers["X-Genstore-Webhook-Id"]


@dataclass(frozen=True, slots=True)
class WebhookAttempt:
    webhook_id: str
    handle: str
    subscription_id: int | None
    topic: str
    address: str
    status: int | None  # the receiver's HTTP status; None when it could not be reached
    error: str | None
    delivered: bool  # 2xx only: Genstore counts 3xx as a failure too
    body: bytes
    headers: dict[str, str]
    at: datetime

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["body"] = self.body.decode()
        data["at"] = self.at.isoformat()
        return data


def build_headers(*, topic: str, body: bytes, secret: str, shop_domain: str, api_version: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Genstore-Topic": topic,
        "X-Genstore-Hmac-Sha256": sign_body(body, secret),
        "X-Genstore-Shop-Domain": shop_domain,
        "X-Genstore-Webhook-Id": str(uuid.uuid4()),
        "X-Genstore-Api-Version": api_version,
    }


class WebhookDispatcher:
    """A queue and one daemon thread that POSTs each job once, with a short timeout, and records the outcome."""

    def __init__(
        self,
        *,
        timeout: float,
        on_attempt: Callable[[WebhookJob, WebhookAttempt], None],
        should_send: Callable[[WebhookJob], bool] = lambda job: True,
    ) -> None:
        self.timeout = timeout
        self._on_attempt = on_attempt
        self._should_send = should_send
        self._queue: queue.Queue[WebhookJob | None] = queue.Queue()
        self._pending = 0
        self._idle = threading.Condition()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="genstore-sandbox-webhooks", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=self.timeout + 2)
            self._thread = None

    def submit(self, job: WebhookJob) -> None:
        with self._idle:
            self._pending += 1
        self._queue.put(job)

    def wait_idle(self, timeout: float) -> bool:
        """Block until every submitted job was attempted; False if `timeout` passed first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout=timeout)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                if self._should_send(job):  # asked at send time: earlier failures may have stopped the subscription
                    self._on_attempt(job, self._deliver(job))
            except Exception:  # a bug here must not kill the delivery thread
                logger.exception("webhook delivery to %s failed unexpectedly", job.address)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _deliver(self, job: WebhookJob) -> WebhookAttempt:
        status: int | None = None
        error: str | None = None
        parts = urlsplit(job.address)
        connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        connection = connection_class(parts.hostname or "", parts.port, timeout=self.timeout)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        try:
            connection.request("POST", path, body=job.body, headers=job.headers)
            response = connection.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException) as exc:
            error = f"{type(exc).__name__}: {exc}"
        finally:
            connection.close()
        return WebhookAttempt(
            webhook_id=job.webhook_id,
            handle=job.handle,
            subscription_id=job.subscription_id,
            topic=job.topic,
            address=job.address,
            status=status,
            error=error,
            delivered=status is not None and 200 <= status < 300,
            body=job.body,
            headers=dict(job.headers),
            at=datetime.now(UTC),
        )
