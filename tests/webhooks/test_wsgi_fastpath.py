"""The webhook fast path (webhooks/wsgi_fastpath.py): webhook POSTs past the middleware they do not need, with every
answer, check, log line, metric, error report and database connection rule of the full stack.

The gunicorn tests serve oma.wsgi's real application (tests/webhooks/wsgi_probe.py adds only a header naming the
handler that answered, and a topic that crashes the intake); the in-process tests check the routing rules and that
the fast path answers exactly what Django's full stack answers.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

from oma.stores.models import Store
from tests.fixtures_celery import GunicornServer, RedisServer, subprocess_env, wait_until
from tests.webhooks.fastpath_client import FastPathClient, FastPathClientHandler
from tests.webhooks.payloads import SECRET, SHOP, encode, order_json, sign
from tests.webhooks.wsgi_probe import CRASH_MESSAGE, CRASH_TOPIC
from webhooks.models import WebhookDelivery
from webhooks.views import genstore_webhook
from webhooks.wsgi_fastpath import FAST_VIEWS, SKIPPED_MIDDLEWARE, FastPathHandler, FastRoutes

URL = "/webhooks/genstore/"
MAX_BODY = 64 * 1024
METRICS_TOKEN = "metrics-token-for-the-fast-path-test"


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def handler(self) -> str:
        return self.headers.get("X-Test-Handler", "")

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Web:
    server: GunicornServer
    mailbox: Path

    def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Answer:
        connection_ = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        try:
            connection_.request(method, path, body=body, headers={"Host": "127.0.0.1", **(headers or {})})
            response = connection_.getresponse()
            return Answer(response.status, response.headers, response.read())
        finally:
            connection_.close()

    def deliver(self, body: bytes, *, topic: str = "orders/update", secret: str = SECRET, **headers: str) -> Answer:
        return self.request("POST", URL, body, {
            "Content-Type": "application/json", "X-Genstore-Shop-Domain": SHOP, "X-Genstore-Topic": topic,
            "X-Genstore-Hmac-Sha256": sign(body, secret), **headers,
        })

    def log_lines(self) -> list[str]:
        return self.server.log_path.read_text(errors="replace").splitlines()

    def json_log(self) -> list[dict[str, Any]]:
        entries = []
        for line in self.log_lines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):  # a line of gunicorn's own
                    entries.append(json.loads(line))
        return entries


@pytest.fixture
def start_web(
    transactional_db: None, private_redis: RedisServer, gunicorn_factory: Any, tmp_path: Path
) -> Callable[..., Web]:
    """oma.wsgi's application in gunicorn, on the test settings (CONN_MAX_AGE=0: each request's connection is
    closed when Django's request_finished signal runs), mailing server errors to ADMINS into a directory."""
    Store.objects.create(domain=SHOP, access_token="token", client_secret=SECRET, api_base_url="http://127.0.0.1:9")
    mailbox = tmp_path / "mail"
    mailbox.mkdir()

    def start(**extra_env: str) -> Web:
        env = subprocess_env(broker_url=private_redis.url(), extra={
            "REDIS_URL": private_redis.url(1),
            "LOG_LEVEL": "INFO",
            "LOG_FORMAT": "json",
            "OMA_WEBHOOK_MAX_BODY_BYTES": str(MAX_BODY),
            "OMA_METRICS_TOKEN": METRICS_TOKEN,
            "ADMINS": "ops@example.com",
            "EMAIL_URL": f"filemail:///{mailbox}",  # django-environ: four slashes for an absolute path
            **extra_env,
        })
        server = gunicorn_factory(env=env, workers=1, threads=4, app="tests.webhooks.wsgi_probe:application")
        return Web(server, mailbox)

    return start


@pytest.fixture
def web(start_web: Callable[..., Web]) -> Web:
    return start_web()


class _SentryStandIn(BaseHTTPRequestHandler):
    received: list[bytes]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if (self.headers.get("Content-Encoding") or "").lower() == "gzip":
            body = gzip.decompress(body)
        self.received.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def sentry_server() -> Iterator[tuple[str, list[bytes]]]:
    """A local HTTP server standing in for Sentry: its DSN, and the envelopes it received."""
    received: list[bytes] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (_SentryStandIn,), {"received": received}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://public0123456789abcdef@127.0.0.1:{server.server_address[1]}/1", received
    server.shutdown()
    server.server_close()


def _sentry_exceptions(received: list[bytes]) -> list[dict[str, Any]]:
    """The exceptions of the error events received (an envelope: a header line, then item header and payload)."""
    found = []
    for body in list(received):
        lines = body.split(b"\n")
        for header, payload in zip(lines[1::2], lines[2::2], strict=False):
            if json.loads(header).get("type") == "event":
                found.extend((json.loads(payload).get("exception") or {}).get("values") or [])
    return found


def _metrics(web: Web) -> dict[str, float]:
    """The samples of GET /metrics, `name{labels}` -> value."""
    answer = web.request("GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert answer.status == 200, answer.body[:200]
    samples = {}
    for line in answer.body.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def _other_backends() -> int:
    """Client connections to the test database besides this test's own (not autovacuum's workers)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend'"
        )
        return int(cursor.fetchone()[0])


@pytest.mark.postgres
def test_deliveries_through_gunicorn_take_the_fast_path_and_get_every_answer_of_the_view(web: Web) -> None:
    # Connections this xdist worker's earlier tests left in their own threads count before the first request too.
    before_requests = _other_backends()
    body = encode(order_json("5001"))
    accepted = web.deliver(body, **{"X-Request-ID": "req-accepted-1"})
    assert (accepted.status, accepted.json(), accepted.handler) == (200, {"status": "accepted"}, "fast")
    # The headers Django's middleware give any answer (SecurityMiddleware, XFrameOptionsMiddleware,
    # CommonMiddleware), and no session or CSRF cookie.
    assert accepted.headers["Content-Type"] == "application/json"
    assert accepted.headers["Content-Length"] == str(len(accepted.body))
    assert accepted.headers["X-Content-Type-Options"] == "nosniff"
    assert accepted.headers["X-Frame-Options"] == "DENY"
    assert accepted.headers["Referrer-Policy"] == "same-origin"
    assert accepted.headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "Set-Cookie" not in accepted.headers and "Vary" not in accepted.headers
    duplicate = web.deliver(body)
    assert (duplicate.status, duplicate.json(), duplicate.handler) == (200, {"status": "duplicate"}, "fast")
    # Behind the TLS proxy (X-Forwarded-Proto), HSTS as on every HTTPS answer.
    secure = web.deliver(encode(order_json("5002")), **{"X-Forwarded-Proto": "https"})
    assert secure.status == 200 and secure.headers["Strict-Transport-Security"].startswith("max-age=")

    forged = web.deliver(body, secret="not-the-secret", **{"X-Request-ID": "req-forged-1"})
    assert (forged.status, forged.json(), forged.handler) == (401, {"error": "unauthorized"}, "fast")
    unsigned = web.request("POST", URL, body, {"X-Genstore-Shop-Domain": SHOP, "X-Genstore-Topic": "orders/update"})
    assert (unsigned.status, unsigned.json(), unsigned.handler) == (401, {"error": "unauthorized"}, "fast")
    stranger = web.deliver(body, **{"X-Genstore-Shop-Domain": "nobody.genmystore.com"})
    assert (stranger.status, stranger.json()) == (401, {"error": "unauthorized"})
    no_topic = web.deliver(body, topic="")
    assert (no_topic.status, no_topic.json(), no_topic.handler) == (400, {"error": "missing X-Genstore-Topic"}, "fast")
    not_json = web.deliver(b"{not json")
    assert (not_json.status, not_json.json()) == (400, {"error": "body is not valid JSON"})
    oversized = web.deliver(b"x" * (MAX_BODY + 1))
    assert (oversized.status, oversized.json(), oversized.handler) == (413, {"error": "body too large"}, "fast")
    # Host validation (ALLOWED_HOSTS) runs before the view: a signed delivery for another host is refused.
    wrong_host = web.deliver(encode(order_json("5003")), Host="evil.example.com")
    assert (wrong_host.status, wrong_host.handler) == (400, "fast")
    # CONN_MAX_AGE=0: Django's request_finished closed each request's database connection (checked before any
    # request takes the full stack, whose signals would close them too).
    wait_until(lambda: _other_backends() <= before_requests, timeout=10, what="the web server's connections closed")
    # Any other method gets the full stack, and the view's 405.
    for method in ("GET", "PUT"):
        refused = web.request(method, URL, body)
        assert (refused.status, refused.handler) == (405, "django"), method
        assert refused.headers["Allow"] == "POST"

    assert sorted(WebhookDelivery.objects.values_list("resource_id", flat=True)) == ["5001", "5002"]
    log = web.json_log()
    # The log lines of the full stack, with the request id and store from the ops middleware's log context.
    rejected = [entry for entry in log if "webhook rejected 401 (invalid signature)" in entry["message"]]
    store_id = Store.objects.get(domain=SHOP).pk
    assert [(entry["request_id"], entry["store_id"]) for entry in rejected] == [("req-forged-1", store_id)]
    assert any(entry["logger"] == "django.security.DisallowedHost" and "evil.example.com" in entry["message"]
               for entry in log)
    assert any(entry["logger"] == "django.request" and entry["message"] == f"Unauthorized: {URL}" for entry in log)
    # The webhook counters of the ops middleware (they reach Redis within a second).
    expected = {
        'oma_webhook_requests_total{outcome="accepted"}': 2,
        'oma_webhook_requests_total{outcome="duplicate"}': 1,
        'oma_webhooks_rejected_total{reason="invalid signature",status="401"}': 1,
        'oma_webhooks_rejected_total{reason="missing signature",status="401"}': 1,
        'oma_webhooks_rejected_total{reason="unknown shop",status="401"}': 1,
        'oma_webhooks_rejected_total{reason="missing X-Genstore-Topic",status="400"}': 1,
        'oma_webhooks_rejected_total{reason="body too large",status="413"}': 1,
    }
    wait_until(lambda: _metrics(web).items() >= expected.items(), timeout=15, interval=0.5,
               what="the webhook counters in /metrics")


@pytest.mark.postgres
def test_a_crash_in_the_intake_answers_500_is_logged_reported_and_mailed_to_the_admins(
    start_web: Callable[..., Web], sentry_server: tuple[str, list[bytes]]
) -> None:
    pytest.importorskip("sentry_sdk")  # in requirements; a checkout without it skips this test
    dsn, received = sentry_server
    web = start_web(SENTRY_DSN=dsn)
    crash = web.deliver(encode(order_json("6001")), topic=CRASH_TOPIC)
    assert (crash.status, crash.handler) == (500, "fast")
    assert b"Server Error (500)" in crash.body  # Django's handler500, not a traceback
    assert CRASH_MESSAGE.encode() not in crash.body
    log = web.json_log()
    errors = [entry for entry in log if entry["logger"] == "django.request" and entry["level"] == "ERROR"]
    assert [entry["message"] for entry in errors] == [f"Internal Server Error: {URL}"]
    assert f"RuntimeError: {CRASH_MESSAGE}" in errors[0]["exception"]
    assert any(entry["message"] == f"got_request_exception for {URL}" for entry in log)
    # Sentry gets it as Django's integration reports a view's exception.
    wait_until(lambda: any(value.get("value") == CRASH_MESSAGE for value in _sentry_exceptions(received)),
               timeout=15, what="the crash reported to Sentry")
    reported = next(value for value in _sentry_exceptions(received) if value.get("value") == CRASH_MESSAGE)
    assert (reported["type"], reported["mechanism"]["type"]) == ("RuntimeError", "django")
    wait_until(lambda: any(web.mailbox.iterdir()), timeout=10, what="the error mail to ADMINS")
    mail = "".join(path.read_text() for path in web.mailbox.iterdir())
    assert "ops@example.com" in mail and f"Internal Server Error: {URL}" in mail
    # The thread and its database connection are fine afterwards.
    after = web.deliver(encode(order_json("6002")))
    assert (after.status, after.json()) == (200, {"status": "accepted"})
    assert list(WebhookDelivery.objects.values_list("resource_id", flat=True)) == ["6002"]


@pytest.mark.postgres
def test_every_other_request_goes_through_the_full_middleware(web: Web) -> None:
    login = web.request("GET", "/admin/login/")
    assert (login.status, login.handler) == (200, "django")
    assert "csrftoken=" in login.headers["Set-Cookie"]  # CSRF middleware
    # A POST to any other view still meets the CSRF check.
    refused = web.request("POST", "/admin/login/", b"username=a&password=b",
                          {"Content-Type": "application/x-www-form-urlencoded"})
    assert (refused.status, refused.handler) == (403, "django")
    # Without the trailing slash the path resolves to nothing: the full stack answers (CommonMiddleware's redirect).
    moved = web.request("POST", URL.rstrip("/"), b"{}")
    assert (moved.status, moved.handler) == (301, "django")
    assert web.request("GET", "/healthz/live").status == 200  # the loopback liveness middleware
    # The channels' endpoint shares the intake and takes the fast path too.
    channel = web.request("POST", "/webhooks/channels/no-such-channel/", b"{}")
    assert (channel.status, channel.json(), channel.handler) == (401, {"error": "unauthorized"}, "fast")


# --- in process ---------------------------------------------------------------------------------------------------


def test_only_posts_to_the_webhook_views_are_routed_past_the_middleware(db: None) -> None:
    routes = FastRoutes(FAST_VIEWS)

    def routed(method: str, path: str) -> str | None:
        match = routes.match_environ({"REQUEST_METHOD": method, "PATH_INFO": path})
        return match.view_name if match is not None else None

    assert routed("POST", URL) == "webhooks:genstore"
    assert routes.match(URL).func is genstore_webhook  # the URLconf's own view, not a copy
    assert routed("POST", "/webhooks/channels/shipbob-main/") == "channels:webhook"
    assert routes.match("/webhooks/channels/shipbob-main/").kwargs == {"slug": "shipbob-main"}
    for method in ("GET", "PUT", "HEAD", "OPTIONS"):
        assert routed(method, URL) is None
    for path in ("/webhooks/genstore", "/webhooks/genstore/x/", "/admin/login/", "/healthz", "/metrics", "/",
                 "/webhooks/channels/bad slug/", "/webhooks/genstöre/"):
        assert routed("POST", path) is None, path


def test_a_view_that_is_not_csrf_exempt_never_skips_the_csrf_check(settings: Any) -> None:
    settings.ROOT_URLCONF = "tests.webhooks.urls_not_exempt"
    routes = FastRoutes(("not_exempt", "exempt"))
    assert routes.match("/not-exempt/") is None
    assert routes.match("/exempt/") is not None


def test_the_fast_handler_runs_every_middleware_but_the_skipped_ones_in_order() -> None:
    assert set(SKIPPED_MIDDLEWARE) <= set(settings.MIDDLEWARE)  # each skip names a middleware that exists
    handler = FastPathHandler(routes=FastRoutes(FAST_VIEWS), skipped_middleware=SKIPPED_MIDDLEWARE)
    assert handler.middleware == [path for path in settings.MIDDLEWARE if path not in SKIPPED_MIDDLEWARE]
    assert {"django.middleware.security.SecurityMiddleware", "oma.ops.middleware.OpsMiddleware",
            "django.middleware.common.CommonMiddleware"} <= set(handler.middleware)


@pytest.mark.parametrize("case", ["accepted", "duplicate", "forged", "oversized", "no topic", "wrong host"])
def test_the_fast_path_answers_exactly_what_the_full_stack_answers(case: str, db: None, settings: Any) -> None:
    settings.OMA_WEBHOOK_MAX_BODY_BYTES = MAX_BODY
    Store.objects.create(domain=SHOP, access_token="token", client_secret=SECRET, api_base_url="http://127.0.0.1:9")
    body = encode(order_json("8001"))
    headers = {"X-Genstore-Shop-Domain": SHOP, "X-Genstore-Topic": "orders/update",
               "X-Genstore-Hmac-Sha256": sign(body, SECRET)}
    extra: dict[str, Any] = {}
    if case == "forged":
        headers["X-Genstore-Hmac-Sha256"] = sign(body, "forged")
    elif case == "oversized":
        body = b"x" * (MAX_BODY + 1)
    elif case == "no topic":
        del headers["X-Genstore-Topic"]
    elif case == "wrong host":
        extra["HTTP_HOST"] = "evil.example.com"

    def post(client: Client) -> Any:
        if case == "duplicate":
            client.post(URL, data=body, content_type="application/json", headers=headers)
        response = client.post(URL, data=body, content_type="application/json", headers=headers, **extra)
        WebhookDelivery.objects.all().delete()  # each client starts from the same table
        return response

    full, fast_client = Client(), FastPathClient()
    expected, got = post(full), post(fast_client)
    assert fast_client.fast_requests >= 1
    assert (got.status_code, got.content) == (expected.status_code, expected.content)
    assert sorted(got.items()) == sorted(expected.items())
    assert getattr(got, "oma_outcome", None) == getattr(expected, "oma_outcome", None)


def test_the_webhook_suite_runs_through_the_fast_path(store: Store, client: FastPathClient) -> None:
    body = encode(order_json("9001"))
    response = client.post(URL, data=body, content_type="application/json", headers={
        "X-Genstore-Shop-Domain": SHOP, "X-Genstore-Topic": "orders/update",
        "X-Genstore-Hmac-Sha256": sign(body, SECRET),
    })
    assert response.status_code == 200
    assert client.fast_requests == 1  # conftest's `client`, which the other tests here use


def test_the_fast_handler_serves_no_other_view(db: None) -> None:
    """Called with a request its routes do not match (not through the dispatch), it answers 404: never another
    view without the middleware it skips."""
    handler = FastPathClientHandler(False, routes=FastRoutes(FAST_VIEWS), skipped_middleware=SKIPPED_MIDDLEWARE)
    client = Client()
    client.handler = handler
    assert client.post("/admin/login/", {"username": "a", "password": "b"}).status_code == 404
    assert client.get("/admin/login/").status_code == 404
