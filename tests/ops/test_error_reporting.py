"""Error reporting: with SENTRY_DSN set, a view's, a task's and a log line's errors reach Sentry (here a local HTTP
server standing in for it) with tokens, signatures and customers' e-mails redacted; without it, sentry-sdk is not
even imported. Server errors mailed to ADMINS are redacted the same way."""

from __future__ import annotations

import gzip
import json
import logging
import os
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.core import mail

from oma.ops.logging import AdminEmailHandler, ContextFilter, PlainFormatter, logging_config
from oma.ops.redaction import EMAIL_REDACTED, REDACTED
from tests.fixtures_celery import ROOT

sentry_sdk = pytest.importorskip("sentry_sdk")  # in requirements; a checkout without it skips these tests

from oma.ops.errors import scrub  # noqa: E402  (both import sentry-sdk)
from tests.ops import sentry_child  # noqa: E402

SECRETS = (sentry_child.ACCESS_TOKEN, sentry_child.SIGNATURE, sentry_child.CLIENT_SECRET,
           sentry_child.CUSTOMER_EMAIL, "jane.doe.customer%40example.com")


class _SentryStandIn(BaseHTTPRequestHandler):
    received: list[tuple[str, bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        encoding = (self.headers.get("Content-Encoding") or "").lower()
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        elif encoding == "br":
            body = pytest.importorskip("brotli").decompress(body)
        self.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def sentry_server() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    received: list[tuple[str, bytes]] = []
    handler = type("Handler", (_SentryStandIn,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://public0123456789abcdef@127.0.0.1:{server.server_address[1]}/1", received
    server.shutdown()
    server.server_close()


def _events(received: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    """The error events in the envelopes received (an envelope: a header line, then item header and payload lines)."""
    events = []
    for _, body in received:
        lines = body.split(b"\n")
        for header, payload in zip(lines[1::2], lines[2::2], strict=False):
            if json.loads(header).get("type") == "event":
                events.append(json.loads(payload))
    return events


def _run(*command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A Python process of its own: settings read SENTRY_DSN once, at start, as in production."""
    return subprocess.run(
        [sys.executable, *command], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "tests.settings", **env},
    )


def test_errors_reach_sentry_with_secrets_and_emails_redacted(sentry_server):
    dsn, received = sentry_server
    child = _run("-m", "tests.ops.sentry_child", env={"SENTRY_DSN": dsn, "SENTRY_ENVIRONMENT": "ci",
                                                       "LOG_LEVEL": "ERROR"})
    assert child.returncode == 0, child.stderr[-3000:]

    assert {path for path, _ in received} == {"/api/1/envelope/"}
    everything = b"".join(body for _, body in received).decode()
    assert [secret for secret in SECRETS if secret in everything] == []
    events = _events(received)
    by_kind = {}
    for event in events:
        assert event["environment"] == "ci"
        values = (event.get("exception") or {}).get("values") or []
        by_kind[values[-1]["type"] if values else "log"] = event
    assert set(by_kind) == {"RuntimeError", "ValueError", "log"}

    view = by_kind["RuntimeError"]
    assert view["exception"]["values"][-1]["value"].startswith(
        f"Genstore refused access_token={REDACTED} for {EMAIL_REDACTED}"
    )
    assert view["exception"]["values"][-1]["mechanism"]["type"] == "django"
    request = view.get("request") or {}
    assert "data" not in request and "cookies" not in request  # no bodies (the SDK sends them otherwise), no cookies
    assert request.get("headers", {}).get("X-Genstore-Hmac-Sha256", REDACTED) == REDACTED
    assert "user" not in view or "ip_address" not in view["user"]
    frames = view["exception"]["values"][-1]["stacktrace"]["frames"]
    assert frames[-1]["function"] == "failing_view" and all("vars" not in frame for frame in frames)

    task = by_kind["ValueError"]
    error = task["exception"]["values"][-1]["value"]
    assert error == f"no order for {EMAIL_REDACTED}; Authorization: Bearer {REDACTED}"
    assert task["exception"]["values"][-1]["mechanism"]["type"] == "celery"

    log = json.dumps(by_kind["log"]["logentry"])
    assert "push refused for" in log and EMAIL_REDACTED in log


def test_without_a_dsn_sentry_sdk_is_not_even_imported():
    result = _run("-c", "import django, sys; django.setup(); print('sentry_sdk' in sys.modules)",
                  env={"SENTRY_DSN": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "False"


def test_scrub_redacts_every_string_and_whole_values_under_secret_names():
    event = {
        "message": f"refund for {sentry_child.CUSTOMER_EMAIL} failed",
        "request": {"headers": {"X-Genstore-Hmac-Sha256": "abc123", "Accept": "application/json"},
                    "query_string": "token=abcdefgh12345678&page=2"},
        "extra": {"client_secret": "short", "EMAIL_HOST_PASSWORD": "pw", "attempts": 3, "empty_token": ""},
        "breadcrumbs": {"values": [{"message": "Authorization: Bearer abcdefghijklmnop"}]},
    }
    assert scrub(event) == {
        "message": f"refund for {EMAIL_REDACTED} failed",
        "request": {"headers": {"X-Genstore-Hmac-Sha256": REDACTED, "Accept": "application/json"},
                    "query_string": f"token={REDACTED}&page=2"},
        "extra": {"client_secret": REDACTED, "EMAIL_HOST_PASSWORD": REDACTED, "attempts": 3, "empty_token": ""},
        "breadcrumbs": {"values": [{"message": f"Authorization: Bearer {REDACTED}"}]},
    }


def test_server_errors_are_mailed_to_admins_redacted(settings):
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    config = logging_config(mail_admins=True)
    assert config["loggers"]["django.request"]["handlers"] == ["mail_admins"]
    assert logging_config()["loggers"]["django.request"]["handlers"] == []

    handler = AdminEmailHandler(level=logging.ERROR)
    handler.addFilter(ContextFilter())
    handler.setFormatter(PlainFormatter())
    logger = logging.getLogger("django.request")
    logger.addHandler(handler)
    try:
        try:
            raise RuntimeError(f"token={sentry_child.ACCESS_TOKEN} for {sentry_child.CUSTOMER_EMAIL}")
        except RuntimeError:
            logger.exception("Internal Server Error: /webhooks/genstore/")
        logger.warning("Not Found: /nothing")  # 4xx: not mailed
    finally:
        logger.removeHandler(handler)
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["ops@example.com"] and message.from_email == settings.SERVER_EMAIL
    assert message.subject == f"{settings.EMAIL_SUBJECT_PREFIX}ERROR: Internal Server Error: /webhooks/genstore/"
    assert "RuntimeError" in message.body and f"token={REDACTED}" in message.body and EMAIL_REDACTED in message.body
    assert sentry_child.ACCESS_TOKEN not in message.body and sentry_child.CUSTOMER_EMAIL not in message.body
