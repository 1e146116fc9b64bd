"""A fixed-window rate limit per client in Django's cache (Redis when REDIS_URL is set, so that every web
process shares it; process memory otherwise)."""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RateLimitResult:
    allowed: bool
    count: int
    retry_after: int


def client_key(request: HttpRequest) -> str:
    """The client's address (behind OMA_TRUSTED_PROXY_COUNT proxies, the hop they saw). An IPv6 client counts by
    its /64, since one subscriber is handed a whole /64 and could otherwise rotate addresses."""
    address = request.META.get("REMOTE_ADDR", "")
    hops = settings.OMA_TRUSTED_PROXY_COUNT
    if hops:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= hops:
            address = forwarded[-hops]
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address or "unknown"
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def rate_limit_hit(*, scope: str, key: str, limit: int, window_seconds: int) -> RateLimitResult:
    """Count one request of `key` in the current window; allowed while the count stays within `limit`."""
    now = time.time()
    window = int(now // window_seconds)
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    cache_key = f"ratelimit:{scope}:{digest}:{window}"
    retry_after = max(1, int((window + 1) * window_seconds - now))
    try:
        cache.add(cache_key, 0, timeout=window_seconds + 5)
        count = cache.incr(cache_key)
    except ValueError:  # expired between add and incr
        cache.set(cache_key, 1, timeout=window_seconds + 5)
        count = 1
    except Exception:  # the cache is down: serve customers rather than lock everyone out
        logger.warning("rate limit cache unavailable; allowing %s", scope, exc_info=True)
        return RateLimitResult(allowed=True, count=0, retry_after=0)
    return RateLimitResult(allowed=count <= limit, count=count, retry_after=retry_after)
