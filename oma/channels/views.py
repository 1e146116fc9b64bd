"""POST /webhooks/channels/<channel-slug>/: a platform pushing shipments and orders, signed the Standard Webhooks way.

Checks, in order: body over the cap -> 413; unknown channel, or one that takes no webhooks -> 401; missing
headers, a timestamp that is not 1 to 12 ASCII digits or is more than 5 minutes away, or no matching signature
-> 401 (every 401 is the same answer, the reason is only logged: a caller cannot probe which channels exist);
an authentic delivery for a
disabled channel -> 403 (the platform retries; nothing is lost while the merchant has it paused); a payload
that does not have the documented shape (its shipments, its order object) -> 400 listing every problem; an order
for a channel without source names -> 400 (its Genstore order would have no sourceName); a webhook-id this
channel already sent (a replay) -> 401, nothing stored or processed again; otherwise the delivery is stored and
200 answered, and its order and shipments are processed after the commit by the shared webhook worker (the same
order again under a new webhook-id is stored, answered 200, and changes nothing).

Unlike Genstore's, a message id here is signed together with the timestamp and the body, so a captured delivery
cannot be resent under a new id; the same id again is refused by the delivery log's unique key.
"""

from __future__ import annotations

import json
import logging

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from oma.channels.connectors import REGISTRY
from oma.channels.connectors.base import PayloadError
from oma.channels.connectors.webhook import (
    SignatureError,
    parse_order_payload,
    parse_payload,
    signing_secrets,
    verify,
)
from oma.channels.inbound import CHANNEL_TOPIC, delivery_webhook_id
from oma.channels.selectors import channel_for_webhook
from webhooks.receive import delivery_receive
from webhooks.views import read_raw_body, unauthorized_response

logger = logging.getLogger(__name__)


def _reject(status: int, reason: str, request: HttpRequest, slug: str, **extra: object) -> HttpResponse:
    """Log why; a 401 answers unauthorized_response() whatever the reason, other statuses carry it."""
    logger.warning(
        "channel webhook rejected %d (%s): channel=%r from %s", status, reason, slug[:120],
        request.META.get("REMOTE_ADDR", "?"),
    )
    if status == 401:
        return unauthorized_response()
    return JsonResponse({"error": reason, **extra}, status=status)


@csrf_exempt
@require_POST
def channel_webhook(request: HttpRequest, slug: str) -> HttpResponse:
    body = read_raw_body(request, limit=settings.OMA_WEBHOOK_MAX_BODY_BYTES)
    if body is None:
        return _reject(413, "body too large", request, slug)
    try:
        channel = channel_for_webhook(slug)
    except DatabaseError:
        logger.exception("channel webhook: database unavailable while looking up the channel")
        return JsonResponse({"error": "temporarily unavailable"}, status=503)
    connector = REGISTRY.get(channel.kind) if channel is not None else None
    if channel is None or connector is None or not connector.accepts_webhooks:
        return _reject(401, "unknown channel", request, slug)
    try:
        message = verify(secrets_=signing_secrets(channel), headers=request.headers, body=body)
    except SignatureError as exc:
        return _reject(401, str(exc), request, slug)
    if not channel.is_enabled:
        return _reject(403, "channel is disabled", request, slug)
    try:
        payload = json.loads(body.decode("utf-8"))
        parse_payload(payload)  # the shipments and the order object: every problem listed
        has_order = parse_order_payload(payload) is not None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        problems = exc.problems if isinstance(exc, PayloadError) else ["body is not UTF-8 JSON"]
        return _reject(400, "invalid payload", request, slug, problems=problems)
    if has_order and not channel.source_names:
        # Its orders would have no sourceName in Genstore: refused now, so that the platform keeps the delivery.
        return _reject(400, "set the channel's source names", request, slug,
                       problems=["the channel has no source names: an order needs the sourceName it gets in Genstore"])
    try:
        result = delivery_receive(
            store=channel.store,
            topic=CHANNEL_TOPIC,
            body=body,
            headers=request.headers,
            webhook_id=delivery_webhook_id(slug=channel.slug, msg_id=message.msg_id),
            resource_id=str(payload.get("externalOrderId") or "")[:64] if isinstance(payload, dict) else "",
            # The id is signed with the body: the same body under a new id is a new message, not a replay.
            dedupe_by_content=False,
        )
    except DatabaseError:
        # Not stored, so not acknowledged: a 5xx makes the platform send it again.
        logger.exception("channel webhook: database unavailable; delivery for %s not stored", channel.slug)
        return JsonResponse({"error": "temporarily unavailable"}, status=503)
    if result.duplicate:
        # The id was seen: a replay (a genuine retry of a delivery we stored has nothing left to do either).
        return _reject(401, "replayed webhook-id", request, slug)
    return JsonResponse({"status": "accepted"}, status=200)
