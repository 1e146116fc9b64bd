"""GET /healthz (200 or 503 with the failing parts), GET /healthz/live (the process answers), GET /metrics."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from oma.ops.health import run_checks
from oma.ops.metrics import metrics_text

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    report = run_checks()
    return JsonResponse(report.as_dict(), status=200 if report.ok else 503)


@never_cache
@require_GET
def live(request: HttpRequest) -> JsonResponse:
    """Liveness for a container orchestrator: the web process answers (restarting it would not fix a database)."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    token = getattr(settings, "OMA_METRICS_TOKEN", "")
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            return HttpResponse("metrics need the bearer token (OMA_METRICS_TOKEN)\n", status=401,
                                content_type="text/plain")
    return HttpResponse(metrics_text(), content_type=PROMETHEUS_CONTENT_TYPE)
