"""GET /healthz (200 or 503 with the failing parts), GET /healthz/live (the process answers), GET /metrics.

Who sees what (DEBUG off): the details of /healthz (beat host and pid, error texts) and /metrics (which names every
tenant's store) go to the operator only: a caller sending `Authorization: Bearer <OMA_METRICS_TOKEN>`, or a signed-in
superuser. Merchant staff are not operators. Everyone else gets the overall status and the failing parts' names from
/healthz, enough for a load balancer or an uptime probe, and one plain 401 from /metrics, unless the operator made
/metrics public with OMA_METRICS_PUBLIC=1 (no token configured) or runs with DEBUG on (local development).
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from oma.ops.health import run_checks
from oma.ops.liveness import live_response
from oma.ops.metrics import metrics_text

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNAUTHENTICATED_TEXT = "authentication required\n"


def _bearer_token(request: HttpRequest) -> str:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def is_operator(request: HttpRequest) -> bool:
    """The caller holds the metrics token, or is a signed-in superuser."""
    token = settings.OMA_METRICS_TOKEN
    given = _bearer_token(request)
    if token and given and hmac.compare_digest(given.encode(), token.encode()):
        return True
    user = getattr(request, "user", None)
    try:
        return bool(user is not None and user.is_active and user.is_superuser)
    except DatabaseError:  # the session cannot be read while the database is down: /healthz must still answer
        return False


def _metrics_are_open() -> bool:
    """Without a token configured: open in development, or when the operator said so explicitly."""
    if settings.OMA_METRICS_TOKEN:
        return False
    return bool(settings.DEBUG or settings.OMA_METRICS_PUBLIC)


def _unauthenticated() -> HttpResponse:
    # The same answer whether a token is configured, missing or wrong: nothing to learn from it.
    response = HttpResponse(UNAUTHENTICATED_TEXT, status=401, content_type="text/plain; charset=utf-8")
    response["WWW-Authenticate"] = "Bearer"
    return response


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    report = run_checks()
    details = settings.DEBUG or is_operator(request)
    body = report.as_dict() if details else report.summary()
    return JsonResponse(body, status=200 if report.ok else 503)


@never_cache
@require_GET
def live(request: HttpRequest) -> JsonResponse:
    """The liveness answer for callers other than the container itself (oma.ops.liveness answers loopback)."""
    return live_response()


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not (_metrics_are_open() or is_operator(request)):
        return _unauthenticated()
    return HttpResponse(metrics_text(), content_type=PROMETHEUS_CONTENT_TYPE)
