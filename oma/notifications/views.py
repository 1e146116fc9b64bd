"""The unsubscribe link of every customer email: /notifications/unsubscribe/<signed token>/.

GET shows the store-branded question with a button; POST unsubscribes. A link-scanning mail filter that opens the
link therefore unsubscribes nobody, while a mail program's one-click unsubscribe (RFC 8058: a POST of
`List-Unsubscribe=One-Click` to the List-Unsubscribe address) works without a page. POST is exempt from CSRF: the
signed token in the address is the credential, and no cookie or session is involved.
"""

from __future__ import annotations

import secrets
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from oma.merchant.tracking_page import branding_for
from oma.notifications.models import OrderUnsubscribe
from oma.notifications.services import order_unsubscribe
from oma.notifications.tokens import order_ids_from_unsubscribe_token
from oma.orders.models import Order


def _render(request: HttpRequest, template: str, context: dict[str, Any], status: int = 200) -> HttpResponse:
    nonce = secrets.token_urlsafe(16)
    response = render(request, template, {**context, "csp_nonce": nonce}, status=status)
    response["Content-Security-Policy"] = (
        f"default-src 'none'; img-src 'self'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
    response["Referrer-Policy"] = "same-origin"
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


@never_cache
@csrf_exempt
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    ids = order_ids_from_unsubscribe_token(token)
    order = (
        Order.objects.select_related("store").filter(store_id=ids[0], pk=ids[1]).first() if ids is not None else None
    )
    if order is None:
        return _render(request, "notifications/unsubscribe_invalid.html", {"branding": branding_for(None)}, 404)
    context = {"branding": branding_for(order.store), "order_label": order.name or f"#{order.order_id}"}
    if request.method == "POST":
        order_unsubscribe(order=order)
        return _render(request, "notifications/unsubscribed.html", context)
    done = OrderUnsubscribe.objects.filter(order=order).exists()
    return _render(request, "notifications/unsubscribed.html" if done else "notifications/unsubscribe.html", context)
