from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import Client

from oma.stores.models import Store
from tests.fixtures_celery import celery_worker_factory, gunicorn_factory, private_redis  # noqa: F401 (fixtures)
from tests.webhooks.fastpath_client import FastPathClient
from tests.webhooks.payloads import OTHER_SECRET, OTHER_SHOP, SECRET, SHOP, encode, sign

URL = "/webhooks/genstore/"


@pytest.fixture(autouse=True)
def _in_process_webhook_settings(settings: Any) -> None:
    """In-process tests publish from the request's own thread (the background publisher would use another
    database connection, outside the test's transaction) and read the store on every delivery (rolled-back
    stores leave no trace for the per-process cache to notice); the acceptance tests run the real thing."""
    settings.OMA_WEBHOOK_BACKGROUND_PUBLISH = 0
    settings.OMA_WEBHOOK_STORE_CACHE_SECONDS = 0


@pytest.fixture
def client() -> FastPathClient:
    """Django's test client dispatching as oma.wsgi does: webhook POSTs take the fast path (webhooks/wsgi_fastpath.py),
    so every in-process webhook test here runs against it."""
    return FastPathClient()


@pytest.fixture
def store(db: None) -> Store:
    # The API base points at a closed port: a test that reaches for the API without a sandbox fails loudly.
    return Store.objects.create(
        domain=SHOP, name="Shop one", access_token="token-shop1", client_secret=SECRET, api_base_url="http://127.0.0.1:9"
    )


@pytest.fixture
def other_store(db: None) -> Store:
    return Store.objects.create(
        domain=OTHER_SHOP, access_token="token-shop2", client_secret=OTHER_SECRET, api_base_url="http://127.0.0.1:9"
    )


PostWebhook = Callable[..., Any]


@pytest.fixture
def post_webhook(client: Client) -> PostWebhook:
    """POST a delivery through Django's test client, signed like Genstore unless told otherwise."""

    def post(
        payload: Any = None,
        *,
        body: bytes | None = None,
        topic: str | None = "orders/update",
        shop: str | None = SHOP,
        secret: str = SECRET,
        signature: str | None = None,
        webhook_id: str | None = None,
        hex_form: bool = False,
    ) -> Any:
        raw = body if body is not None else encode(payload)
        headers: dict[str, str] = {}
        if shop is not None:
            headers["X-Genstore-Shop-Domain"] = shop
        if topic is not None:
            headers["X-Genstore-Topic"] = topic
        if webhook_id is not None:
            headers["X-Genstore-Webhook-Id"] = webhook_id
        headers["X-Genstore-Hmac-Sha256"] = signature if signature is not None else sign(raw, secret, hex_form=hex_form)
        if headers["X-Genstore-Hmac-Sha256"] == "":
            del headers["X-Genstore-Hmac-Sha256"]
        return client.post(URL, data=raw, content_type="application/json", headers=headers)

    return post


@pytest.fixture
def deliver(
    post_webhook: PostWebhook, eager_celery: None, django_capture_on_commit_callbacks: Any
) -> Callable[..., Any]:
    """POST a delivery and let its processing run (inline, after the commit); returns the stored delivery."""
    from webhooks.models import WebhookDelivery

    def send(payload: Any = None, **kwargs: Any) -> WebhookDelivery:
        with django_capture_on_commit_callbacks(execute=True):
            response = post_webhook(payload, **kwargs)
        assert response.status_code == 200, response.content
        return WebhookDelivery.objects.order_by("-pk").first()

    return send


@pytest.fixture
def sandbox() -> Iterator[Any]:
    """A Genstore sandbox on 127.0.0.1 with 30 orders (the real API the processors re-read from)."""
    from tests.genstore_sandbox import start_sandbox

    server = start_sandbox(orders=30, rate_limit=None)
    yield server
    server.stop()


@pytest.fixture
def sandbox_store(db: None, sandbox: Any) -> Store:
    from tests.genstore_sandbox import connect

    return connect(sandbox)
