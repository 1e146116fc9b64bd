"""A fixed-window rate limit per client in Django's cache (Redis when REDIS_URL is set, so that every web
process shares it; process memory otherwise)."""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import threading
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


def _parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address as proxies write it (`203.0.113.5`, `203.0.113.5:41234`, `2001:db8::1`, `[2001:db8::1]:443`),
    or None for anything else."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]  # an IPv4 address with a port
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def client_address(request: HttpRequest) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The client's address. Behind OMA_TRUSTED_PROXY_COUNT proxies, each appending the peer it saw to
    X-Forwarded-For, that is the Nth entry from the right; what the client wrote further left is never read. When
    the header is shorter than that (the proxies were bypassed) or the entry is no address, the peer counts."""
    peer = _parse_address(request.META.get("REMOTE_ADDR", ""))
    hops = settings.OMA_TRUSTED_PROXY_COUNT
    if hops <= 0:
        return peer
    header = request.META.get("HTTP_X_FORWARDED_FOR", "")
    # Empty entries keep their place: the count from the right is what makes the entry trustworthy.
    entries = header.split(",") if header.strip() else []
    if len(entries) < hops:
        return peer
    return _parse_address(entries[-hops]) or peer


def client_key(request: HttpRequest) -> str:
    """The rate-limit bucket of the client (client_address). An IPv6 client counts by its /64, since one subscriber
    is handed a whole /64 and could otherwise rotate addresses."""
    address = client_address(request)
    if address is None:
        return "unknown"  # no usable peer address (a Unix socket): one shared bucket, never one the client picks
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class SharedAddressWatch:
    """Notices the tell-tale of a reverse proxy OMA was not told about: with OMA_TRUSTED_PROXY_COUNT at 0, every
    lookup of a window comes from one private or loopback address (the proxy's), so every customer shares one
    rate-limit bucket. Logs one warning per process and window (OMA_TRACK_WINDOW_SECONDS), never one per request.
    """

    # A handful of lookups, all from the one address, before it is called a pattern rather than a staff member's try.
    MIN_LOOKUPS = 5

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._window_started = -math.inf
            self._address: str | None = None
            self._lookups = 0
            self._mixed = False
            self._warned = False

    def observe(self, request: HttpRequest) -> None:
        if settings.OMA_TRUSTED_PROXY_COUNT > 0:
            return
        address = client_address(request)
        text = str(address) if address is not None else ""
        now = time.monotonic()
        with self._lock:
            if now - self._window_started >= settings.OMA_TRACK_WINDOW_SECONDS:
                self._window_started, self._address, self._lookups = now, text, 0
                self._mixed = self._warned = False
            self._lookups += 1
            lookups = self._lookups
            self._mixed = self._mixed or text != self._address
            due = not (self._mixed or self._warned) and lookups >= self.MIN_LOOKUPS
            if due:
                self._warned = True
        if due and address is not None and (address.is_private or address.is_loopback):
            logger.warning(
                "tracking lookups: the last %d all came from %s, a private or loopback address, and "
                "OMA_TRUSTED_PROXY_COUNT is 0: behind a reverse proxy every customer shares one rate limit and one "
                "client can block lookups for all. Set OMA_TRUSTED_PROXY_COUNT to the number of proxies that append "
                "to X-Forwarded-For%s.",
                lookups, text,
                " (these requests carry that header)" if request.META.get("HTTP_X_FORWARDED_FOR") else "",
            )


shared_address_watch = SharedAddressWatch()


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
