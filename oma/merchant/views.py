"""The customer tracking page: /track/ (look up by order number and email) and /track/<signed-token>/.

It reads OMA's database only. A wrong email and an unknown order get the very same answer, lookups are rate
limited per client, and the page is self-contained (inline CSS and a few lines of inline script under a
per-response CSP nonce; no external asset, font or CDN).
"""

from __future__ import annotations

import secrets
from typing import Any

from django import forms
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from oma.merchant.models import StoreBranding
from oma.merchant.ratelimit import RateLimitResult, client_key, rate_limit_hit, shared_address_watch
from oma.merchant.tokens import order_id_from_token, tracking_path_for
from oma.merchant.tracking_page import branding_for, order_for_page, tracking_order_lookup, tracking_page_for
from oma.stores.models import Store

NOT_FOUND_MESSAGE = (
    "We couldn't find an order with that number and email address. Check both (the number is in your order "
    "confirmation email) and try again."
)


class TrackLookupForm(forms.Form):
    order = forms.CharField(max_length=64, label="Order number", strip=True)
    email = forms.EmailField(max_length=254, label="Email address")


def _secure(response: HttpResponse, nonce: str) -> HttpResponse:
    response["Content-Security-Policy"] = (
        f"default-src 'none'; img-src 'self'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
    # The token in the URL is the key to the page: never sent to carrier sites (no Referer leaves the site),
    # never cached or indexed. Not "no-referrer": browsers would then send `Origin: null` with the lookup form,
    # which Django's CSRF check rightly refuses.
    response["Referrer-Policy"] = "same-origin"
    response["X-Robots-Tag"] = "noindex, nofollow"
    response["Cache-Control"] = "no-store"
    return response


def _render(request: HttpRequest, template: str, context: dict[str, Any], status: int = 200) -> HttpResponse:
    nonce = secrets.token_urlsafe(16)
    response = render(request, template, {**context, "csp_nonce": nonce}, status=status)
    return _secure(response, nonce)


def _store_from_query(request: HttpRequest) -> Store | None:
    domain = (request.GET.get("store") or request.POST.get("store") or "").strip().lower()
    # isprintable: a NUL (?store=%00) would make the database refuse the query, a 500.
    return Store.objects.filter(domain=domain).first() if domain and domain.isprintable() else None


def _lookup_limit_hit(request: HttpRequest) -> RateLimitResult:
    """Count one lookup (or one bad page token) of this client against the shared per-client window."""
    return rate_limit_hit(
        scope="track-lookup",
        key=client_key(request),
        limit=settings.OMA_TRACK_LOOKUPS_PER_WINDOW,
        window_seconds=settings.OMA_TRACK_WINDOW_SECONDS,
    )


def _too_many(request: HttpRequest, store: Store | None, retry_after: int) -> HttpResponse:
    response = _render(
        request,
        "track/too_many.html",
        {"branding": branding_for(store), "retry_minutes": max(1, round(retry_after / 60))},
        status=429,
    )
    response["Retry-After"] = str(retry_after)
    return response


@never_cache
@require_http_methods(["GET", "POST"])
def track_lookup(request: HttpRequest) -> HttpResponse:
    store = _store_from_query(request)
    error = ""
    if request.method == "POST":
        shared_address_watch.observe(request)
        limit = _lookup_limit_hit(request)
        if not limit.allowed:
            return _too_many(request, store, limit.retry_after)
        form = TrackLookupForm(request.POST)
        if form.is_valid():
            order = tracking_order_lookup(
                order_number=form.cleaned_data["order"], email=form.cleaned_data["email"], store=store
            )
            if order is not None:
                return HttpResponseRedirect(tracking_path_for(order), status=303)
        # One answer for a wrong email, an unknown order and a malformed entry: nothing to learn from it.
        error = NOT_FOUND_MESSAGE
    else:
        form = TrackLookupForm()
    return _render(
        request,
        "track/lookup.html",
        {"form": form, "error": error, "branding": branding_for(store), "store_domain": store.domain if store else ""},
    )


@never_cache
@require_GET
def track_order(request: HttpRequest, token: str) -> HttpResponse:
    ids = order_id_from_token(token)
    order = order_for_page(store_id=ids[0], order_pk=ids[1]) if ids else None
    if order is None:
        # Bad tokens count against the client like failed lookups do.
        limit = _lookup_limit_hit(request)
        if not limit.allowed:
            return _too_many(request, None, limit.retry_after)
        return _render(request, "track/invalid.html", {"branding": branding_for(None)}, status=404)
    page = tracking_page_for(order)
    return _render(
        request,
        "track/order.html",
        {"page": page, "branding": page.branding, "now": timezone.now(), "store_domain": order.store.domain},
    )


@require_GET
def track_logo(request: HttpRequest, store_id: int, digest: str) -> HttpResponse:
    # A digest is lowercase hex; anything else names no logo (and a NUL would make the query fail, a 500).
    if not (16 <= len(digest) <= 64 and all(c in "0123456789abcdef" for c in digest)):
        raise Http404("no such logo")
    branding = StoreBranding.objects.filter(store_id=store_id, logo_sha256__startswith=digest).exclude(
        logo_sha256=""
    ).first()
    if branding is None or len(digest) < 16:
        raise Http404("no such logo")
    response = HttpResponse(bytes(branding.logo), content_type=branding.logo_content_type)
    # The digest is in the URL: a new logo gets a new URL, so this one may be cached for good.
    response["Cache-Control"] = "public, max-age=31536000, immutable"
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'"
    return response
