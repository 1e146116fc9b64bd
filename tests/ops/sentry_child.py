"""Run by tests/ops/test_error_reporting.py as a process of its own (`python -m tests.ops.sentry_child`), with
SENTRY_DSN in its environment, so that settings turn Sentry on as in production. It then fails the three ways OMA
reports: a view raising (Django integration), a Celery task raising (Celery integration) and an error log line,
each carrying a token, a signature and a customer's e-mail, and flushes the events to the test's server."""

from __future__ import annotations

import logging

import django
import sentry_sdk
from django.http import HttpRequest, HttpResponse
from django.test import Client, override_settings
from django.urls import path

from oma.celery import app

CUSTOMER_EMAIL = "jane.doe.customer@example.com"
ACCESS_TOKEN = "shpat_0123456789abcdef0123456789abcdef"
SIGNATURE = "c2lnbmF0dXJlLW9mLXRoZS13ZWJob29rLWJvZHk="
CLIENT_SECRET = "client-secret-9876543210fedcba"


def failing_view(request: HttpRequest) -> HttpResponse:
    client_secret = CLIENT_SECRET  # a local variable: frames' variables are not collected
    raise RuntimeError(f"Genstore refused access_token={ACCESS_TOKEN} for {CUSTOMER_EMAIL} ({len(client_secret)})")


urlpatterns = [path("fail/", failing_view)]


def failing_task(email: str) -> None:
    raise ValueError(f"no order for {email}; Authorization: Bearer {ACCESS_TOKEN}")


def main() -> None:
    django.setup()
    assert sentry_sdk.get_client().is_active(), "SENTRY_DSN did not turn Sentry on"
    with override_settings(ROOT_URLCONF=__name__, ALLOWED_HOSTS=["testserver"]):
        response = Client(raise_request_exception=False).post(
            f"/fail/?email={CUSTOMER_EMAIL}",
            data={"customer": {"email": CUSTOMER_EMAIL}, "token": ACCESS_TOKEN},
            content_type="application/json",
            headers={"X-Genstore-Hmac-Sha256": SIGNATURE, "Authorization": f"Bearer {ACCESS_TOKEN}",
                     "Cookie": f"sessionid={ACCESS_TOKEN}"},
        )
        assert response.status_code == 500
    # Registered here, not on import: the tests import this module's constants into the suite's own process.
    app.task(name="tests.sentry_child.failing_task")(failing_task).apply(args=(CUSTOMER_EMAIL,))
    logging.getLogger("oma.tests").error("push refused for %s with X-Genstore-Access-Token: %s", CUSTOMER_EMAIL,
                                         ACCESS_TOKEN)
    sentry_sdk.flush(timeout=10)


if __name__ == "__main__":
    main()
