"""Where a merchant may aim OMA's outbound API calls: a guard against server-side request forgery.

A worker calls a store's, a carrier account's or a channel's base URL with that integration's credentials, and
keeps what comes back (error texts included, shown in admin). If any merchant could choose any URL, one could aim
OMA at internal addresses: the cloud metadata service, Redis, PostgreSQL, the admin itself. So a merchant may
leave a base URL blank (the integration's own host), or use one of the integration's own hosts over https, or a
host the operator allows in OMA_MERCHANT_API_HOSTS (sandboxes, staging; http allowed there). Superusers are the
operator: they may use any URL.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatch
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings


def hosts_of(urls: Iterable[str]) -> tuple[str, ...]:
    return tuple(host for url in urls if (host := (urlsplit(url).hostname or "").lower()))


def merchant_base_url_error(url: str, *, user: Any, own_hosts: Iterable[str]) -> str | None:
    """Why `user` may not point an integration at `url`, or None when it may. `own_hosts`: fnmatch patterns of
    the integration's own API hosts (production and test)."""
    if not url or user is None or getattr(user, "is_superuser", False):
        return None
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("https", "http") or not host:
        return "Give an http(s) URL."
    if any(fnmatch(host, pattern) for pattern in settings.OMA_MERCHANT_API_HOSTS):
        return None
    own = tuple(own_hosts)
    if any(fnmatch(host, pattern) for pattern in own):
        return None if parts.scheme == "https" else "Use https for this host."
    allowed = ", ".join(own) or "none"
    return f"Only this integration's own API hosts ({allowed}) may be used here; ask your operator for others."


class FormKnowsUserAdmin:
    """ModelAdmin mixin: the form class built for a request carries the requesting user as `user`, so a form can
    check a base URL against who asks (`merchant_base_url_error`)."""

    def get_form(self, request: Any, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)  # type: ignore[misc]
        form.user = request.user  # a class made for this request, not shared with other requests
        return form
