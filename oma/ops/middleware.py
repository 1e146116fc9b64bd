"""Per-request log context (request id, the store a webhook is for) and the webhook answer counters."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse

from oma.genstore.webhooks import HEADER_SHOP_DOMAIN
from oma.ops.logging import bind_log_context, unbind_log_context
from oma.ops.metrics import count
from oma.stores.models import Store

logger = logging.getLogger(__name__)

GENSTORE_WEBHOOK_VIEW = "webhooks:genstore"
CHANNEL_WEBHOOK_VIEW = "channels:webhook"
_SHOP_DOMAIN_META = "HTTP_" + HEADER_SHOP_DOMAIN.upper().replace("-", "_")
_STORE_CACHE_SECONDS = 60.0
_store_ids: dict[str, tuple[float, int | None]] = {}
_store_ids_lock = threading.Lock()


def store_id_for_domain(domain: str) -> int | None:
    """The store a shop domain belongs to, cached a minute per process (log context only: never authorization)."""
    domain = domain.strip().lower()[:255]
    now = time.monotonic()
    with _store_ids_lock:
        cached = _store_ids.get(domain)
    if cached is not None and now - cached[0] < _STORE_CACHE_SECONDS:
        return cached[1]

    try:
        store_id = Store.objects.filter(domain__iexact=domain).values_list("pk", flat=True).first()
    except DatabaseError:
        return None  # the view will answer 503; the log line goes without the id
    with _store_ids_lock:
        if len(_store_ids) > 10_000:
            _store_ids.clear()
        _store_ids[domain] = (now, store_id)
    return store_id


def _answer(response: HttpResponse) -> dict:
    try:
        data = json.loads(response.content[:4096])
    except (ValueError, AttributeError):
        return {}
    return data if isinstance(data, dict) else {}


def count_webhook_answer(view_name: str, response: HttpResponse) -> None:
    status = response.status_code
    if view_name == GENSTORE_WEBHOOK_VIEW:
        # The view labels its answers (oma_outcome, oma_reason); anything else (a 405, say) is read from the body.
        outcome = getattr(response, "oma_outcome", None)
        reason = getattr(response, "oma_reason", None)
        if outcome is None:
            answer = _answer(response)
            outcome = "unavailable" if status == 503 else "rejected" if status >= 400 else "accepted"
            outcome = str(answer.get("status") or outcome)[:20] if status < 400 else outcome
            reason = str(answer.get("error") or "")
        if outcome == "rejected":
            count("oma_webhooks_rejected_total", reason=(reason or f"HTTP {status}")[:80], status=str(status))
        count("oma_webhook_requests_total", outcome=outcome)
    elif view_name == CHANNEL_WEBHOOK_VIEW:
        count("oma_channel_webhook_requests_total", status=str(status))


class OpsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # request.META, not request.headers: the first read of request.headers parses every header of the request,
        # which on the webhook path (nothing else reads them) was about a tenth of a delivery's CPU.
        meta = request.META
        request_id = (meta.get("HTTP_X_REQUEST_ID") or "")[:64] or uuid.uuid4().hex[:12]
        domain = meta.get(_SHOP_DOMAIN_META, "")
        store_id = store_id_for_domain(domain) if domain and request.method == "POST" else None
        token = bind_log_context(request_id=request_id, store_id=store_id)
        try:
            response = self.get_response(request)
        finally:
            unbind_log_context(token)
        match = getattr(request, "resolver_match", None)
        if match is not None and match.view_name in (GENSTORE_WEBHOOK_VIEW, CHANNEL_WEBHOOK_VIEW):
            count_webhook_answer(match.view_name, response)
        return response
