"""POST /webhooks/genstore/: accept fast, verify, store once, enqueue after commit.

The checks run in a fixed order and each has its status: body over the cap -> 413; unknown shop -> 401; missing
or wrong signature -> 401; no topic -> 400; not JSON, or without the topic's root key -> 400; a duplicate (the
same webhook id, or the same topic and body under any id) -> 200; an authentic delivery for a topic OMA does not
handle -> 202 (stored as ignored); otherwise 200.
Every 401 is the same answer (UNAUTHORIZED_BODY), so a caller cannot tell a connected shop from an unknown one.
Rejections are logged with their reason, never with the secret or the body.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.request import HttpHeaders
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from oma.genstore.topics import is_known_topic, payload_shape_error, resource_id_of
from oma.genstore.webhooks import HEADER_HMAC, HEADER_SHOP_DOMAIN, HEADER_TOPIC, HEADER_WEBHOOK_ID
from webhooks.receive import ReceiveResult, delivery_receive
from webhooks.selectors import WebhookStore, store_for_webhook
from webhooks.signatures import delivery_signature_valid

logger = logging.getLogger(__name__)


def _environ_key(header: str) -> str:
    return "HTTP_" + header.upper().replace("-", "_")


# The headers read on every delivery, by their WSGI environ keys.
_SHOP_DOMAIN, _TOPIC, _HMAC, _WEBHOOK_ID = map(
    _environ_key, (HEADER_SHOP_DOMAIN, HEADER_TOPIC, HEADER_HMAC, HEADER_WEBHOOK_ID)
)


@lru_cache(maxsize=512)
def _header_name(environ_key: str) -> str | None:
    return HttpHeaders.parse_header_name(environ_key)


def received_headers(meta: dict[str, Any]) -> dict[str, str]:
    """The request's headers, named as request.headers names them (`X-Genstore-Topic`)."""
    headers = {}
    for key, value in meta.items():
        name = _header_name(key)
        if name is not None:
            headers[name] = value
    return headers

# How much of an oversized body is read and thrown away so the sender gets its 413 instead of a reset connection.
_DRAIN_LIMIT = 8 * 1024 * 1024
_CHUNK = 64 * 1024


def _drain(stream: Any, already: int) -> None:
    read = already
    while read < _DRAIN_LIMIT:
        chunk = stream.read(_CHUNK)
        if not chunk:
            return
        read += len(chunk)


def read_raw_body(request: HttpRequest, *, limit: int) -> bytes | None:
    """The exact request bytes, or None when they exceed `limit` (read no further than the limit allows)."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or -1)
    except ValueError:
        declared = -1
    # Without a Content-Length Django's stream reads nothing; a chunked body is ended by the server instead.
    stream: Any = request
    if declared < 0 and request.META.get("wsgi.input_terminated"):
        stream = request.META["wsgi.input"]
    if declared > limit:
        _drain(stream, 0)
        return None
    parts: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = stream.read(min(_CHUNK, limit + 1 - size))
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    if size > limit:
        _drain(stream, size)
        return None
    return b"".join(parts)


def _answer(outcome: str, status: int = 200) -> HttpResponse:
    """`{"status": outcome}`, written once per outcome; the metrics middleware counts it by `oma_outcome`."""
    response = HttpResponse(_ANSWER_BODIES[outcome], status=status, content_type="application/json")
    response.oma_outcome = outcome  # type: ignore[attr-defined]
    return response


_ANSWER_BODIES = {outcome: json.dumps({"status": outcome}).encode() for outcome in ("accepted", "duplicate", "ignored")}


# The one answer every unauthenticated caller gets, whatever the reason (unknown shop or channel, missing or wrong
# signature, bad timestamp): different answers would tell which shops and channels exist. The reason is logged.
UNAUTHORIZED_BODY = json.dumps({"error": "unauthorized"}).encode()


def unauthorized_response() -> HttpResponse:
    return HttpResponse(UNAUTHORIZED_BODY, status=401, content_type="application/json")


def _reject(status: int, reason: str, request: HttpRequest, *, domain: str = "", topic: str = "") -> HttpResponse:
    """Log why and answer `status`: a 401 is always unauthorized_response(), other statuses carry the reason (the
    caller is authentic by then, or the reason says nothing about it). The metrics middleware counts rejections
    by this reason."""
    logger.warning(
        "webhook rejected %d (%s): shop=%r topic=%r from %s",
        status, reason, domain[:100], topic[:64], request.META.get("REMOTE_ADDR", "?"),
    )
    response = unauthorized_response() if status == 401 else JsonResponse({"error": reason}, status=status)
    response.oma_outcome = "unavailable" if status == 503 else "rejected"  # type: ignore[attr-defined]
    response.oma_reason = reason  # type: ignore[attr-defined]
    return response


def _parse_json(body: bytes) -> tuple[Any, str | None]:
    try:
        return json.loads(body.decode("utf-8")), None
    except UnicodeDecodeError:
        return None, "body is not UTF-8"
    except RecursionError:  # nesting deeper than the parser's stack: refused like any other bad JSON
        return None, "body nests too deeply"
    except ValueError:
        return None, "body is not valid JSON"


def _receive(
    request: HttpRequest, store: WebhookStore, topic: str, body: bytes, payload: Any, handled: bool
) -> ReceiveResult:
    return delivery_receive(
        store=store,
        topic=topic,
        body=body,
        headers=received_headers(request.META),
        webhook_id=request.META.get(_WEBHOOK_ID, ""),
        resource_id=resource_id_of(topic, payload) if handled else "",
        handled=handled,
    )


@csrf_exempt
@require_POST
def genstore_webhook(request: HttpRequest) -> HttpResponse:
    try:
        return _genstore_webhook(request)
    except DatabaseError:
        # Nothing was stored, so nothing is acknowledged: a 5xx makes Genstore send it again.
        logger.exception("webhook: database unavailable; delivery not stored")
        response = JsonResponse({"error": "temporarily unavailable"}, status=503)
        response.oma_outcome = "unavailable"  # type: ignore[attr-defined]
        return response


def _genstore_webhook(request: HttpRequest) -> HttpResponse:
    body = read_raw_body(request, limit=settings.OMA_WEBHOOK_MAX_BODY_BYTES)
    domain = request.META.get(_SHOP_DOMAIN, "")
    topic = request.META.get(_TOPIC, "").strip()
    if body is None:
        return _reject(413, "body too large", request, domain=domain, topic=topic)
    store = store_for_webhook(domain)
    if store is None:
        return _reject(401, "unknown shop", request, domain=domain, topic=topic)
    signature = request.META.get(_HMAC, "").strip()
    if not signature:
        return _reject(401, "missing signature", request, domain=domain, topic=topic)
    if not delivery_signature_valid(store=store, body=body, header_value=signature, current_only=True):
        # The store's row may be a few seconds old: anything but the current secret is checked against the secrets
        # as stored now (a rotation elsewhere is seen at once, and so is the end of one).
        store = store_for_webhook(domain, fresh=True)
        if store is None or not delivery_signature_valid(store=store, body=body, header_value=signature):
            return _reject(401, "invalid signature", request, domain=domain, topic=topic)
    if not topic:
        return _reject(400, "missing X-Genstore-Topic", request, domain=domain)
    payload, error = _parse_json(body)
    if error is None:
        error = payload_shape_error(topic, payload)
    if error is not None:
        return _reject(400, error, request, domain=domain, topic=topic)

    handled = is_known_topic(topic)
    try:
        result = _receive(request, store, topic, body, payload, handled)
    except IntegrityError:
        # Only a store erased since its row was read can break the insert: look again.
        store = store_for_webhook(domain, fresh=True)
        if store is None:
            return _reject(401, "unknown shop", request, domain=domain, topic=topic)
        result = _receive(request, store, topic, body, payload, handled)
    if result.duplicate:
        return _answer("duplicate")
    if result.ignored:
        logger.info("webhook ignored: topic %r from %s is not handled", topic[:64], store.domain)
        return _answer("ignored", status=202)
    return _answer("accepted")
