"""The container's own liveness probe, answered whatever ALLOWED_HOSTS is.

A health check inside the web container asks `http://127.0.0.1:8000/healthz/live`, so its Host header is
`127.0.0.1:8000`, which a production ALLOWED_HOSTS (`oma.example.com`) does not list: CommonMiddleware would answer
400 DisallowedHost and the container would never turn healthy. This middleware, first in settings.MIDDLEWARE,
answers that one path for loopback clients before anything reads the Host header.

Chosen over adding `localhost` to ALLOWED_HOSTS for every request: that would let any request naming that Host
(through a proxy that passes Host on) reach every view, and build absolute URLs (password reset links, redirects)
on it. Here nothing else changes: the answer is a constant that reads neither the Host, the database nor the
session, and every other path, and `/healthz/live` from any other address, goes through the usual host checks.
REMOTE_ADDR is the TCP peer (neither gunicorn nor OMA rewrites it from X-Forwarded-For), so a remote client cannot
pose as loopback.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.cache import add_never_cache_headers

LIVE_PATH = "/healthz/live"  # oma.ops.urls serves the same path to everyone else (the `ops:live` view)


def is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1, as a dual-stack socket reports an IPv4 peer
    return ip.is_loopback


def live_response() -> JsonResponse:
    """Liveness for a container orchestrator: the web process answers (restarting it would not fix a database)."""
    response = JsonResponse({"status": "ok"})
    add_never_cache_headers(response)
    return response


class LoopbackLivenessMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if (
            request.path_info == LIVE_PATH
            and request.method in ("GET", "HEAD")
            and is_loopback(request.META.get("REMOTE_ADDR", ""))
        ):
            return live_response()
        return self.get_response(request)
