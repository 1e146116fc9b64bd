"""The webhook endpoints past the middleware they do not need, dispatched at the WSGI level.

Why: a signed delivery cost the web process about 1.3 ms of CPU against 0.5 ms for a trivial view, and about a
fifth of it was Django's middleware stack and URL resolving, most of which (sessions, CSRF, authentication,
messages, static files) does nothing for a csrf-exempt endpoint that reads no session, no user and no cookie.

How: `WebhookFastPath` wraps Django's WSGI handler (oma/wsgi.py). A POST whose path Django's own URL resolver maps
to one of FAST_VIEWS goes to `FastPathHandler` instead; every other request goes to Django's handler
untouched. `FastPathHandler` is Django's WSGIHandler with two differences only:
- its middleware are settings.MIDDLEWARE minus SKIPPED_MIDDLEWARE (useless for these views), so the rest
  (Host validation, HTTPS redirect and security headers, the request id, log context and webhook metrics, and any
  middleware added later) still run, in the same order;
- the URL is resolved once per path and process (cached), by the same resolver, to the same view.
Everything else is Django's own code: request_started and request_finished (close_old_connections, so
CONN_MAX_AGE holds), exceptions turned into the 400 or 500 answer Django gives, logged to `django.request` and sent
through got_request_exception (ADMINS mails, Sentry), view middleware, ATOMIC_REQUESTS. The views are the ones the
URLconf names, called the same way: there is one intake, reached by two routes.

A view that is not csrf-exempt is never taken past the middleware (the CSRF check must run for it).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, MiddlewareNotUsed
from django.core.handlers.base import BaseHandler
from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIHandler
from django.http import HttpRequest
from django.urls import Resolver404, ResolverMatch, get_resolver
from django.utils.module_loading import import_string

# The views whose POSTs take the fast path: Genstore's and the channels' signed webhooks, which share the intake
# (webhooks.receive), are csrf-exempt and read no session, user or cookie.
FAST_VIEWS = ("webhooks:genstore", "channels:webhook")

# settings.MIDDLEWARE entries left out for them, each for a reason that holds for those views. Every other
# middleware (Host validation, HTTPS redirect and security headers, the request id, log context and webhook
# metrics, anything added later) runs for them as for any request.
SKIPPED_MIDDLEWARE = (
    "oma.ops.liveness.LoopbackLivenessMiddleware",  # answers GET /healthz/live only
    "whitenoise.middleware.WhiteNoiseMiddleware",  # serves STATIC_URL only
    "django.contrib.sessions.middleware.SessionMiddleware",  # no session is read, no cookie set
    "django.middleware.csrf.CsrfViewMiddleware",  # the views are csrf-exempt (FastRoutes checks)
    "django.contrib.auth.middleware.AuthenticationMiddleware",  # no user: senders authenticate by signature
    "django.contrib.messages.middleware.MessageMiddleware",  # no messages
)

# Distinct paths whose resolution is remembered (channel webhooks have a path per channel; anything else is
# remembered as "not fast" so a stream of odd paths cannot grow the cache without bound).
_CACHE_SIZE = 1024

WSGIEnviron = dict[str, Any]
StartResponse = Callable[..., Any]


class FastRoutes:
    """Which request paths go past the middleware: those the URLconf resolves to one of `views` (view names such
    as `webhooks:genstore`), and only while the resolved view is csrf-exempt."""

    def __init__(self, views: Iterable[str]) -> None:
        self.views = frozenset(views)
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, str], ResolverMatch | None] = OrderedDict()

    def match(self, path_info: str) -> ResolverMatch | None:
        """The resolved view of `path_info` when it is a fast one, else None. The ResolverMatch is shared by every
        request to the path (nothing writes to one)."""
        key = (settings.ROOT_URLCONF, path_info)
        with self._lock:
            try:
                return self._cache[key]
            except KeyError:
                pass
        match = self._resolve(path_info)
        with self._lock:
            self._cache[key] = match
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return match

    def _resolve(self, path_info: str) -> ResolverMatch | None:
        try:
            match = get_resolver(settings.ROOT_URLCONF).resolve(path_info)
        except Resolver404:
            return None
        if match.view_name not in self.views or not getattr(match.func, "csrf_exempt", False):
            return None
        return match

    def match_environ(self, environ: WSGIEnviron) -> ResolverMatch | None:
        """The fast view for a WSGI request, or None: POSTs only (anything else gets the full stack, and the view's
        405), to an ASCII path (whose PATH_INFO is exactly the path_info Django resolves)."""
        if environ.get("REQUEST_METHOD") != "POST":
            return None
        path_info = environ.get("PATH_INFO") or "/"
        if not path_info.isascii():
            return None
        return self.match(path_info)


class FastPathMixin(BaseHandler):
    """A Django handler whose middleware chain leaves out `skipped_middleware` and whose URL resolution is
    `routes.match` (it only ever serves requests `routes` matched)."""

    # BaseHandler's own attributes (private, so absent from django-stubs), filled by load_middleware.
    _view_middleware: list[Callable[..., Any]]
    _template_response_middleware: list[Callable[..., Any]]
    _exception_middleware: list[Callable[..., Any]]
    _middleware_chain: Callable[[HttpRequest], Any]

    def __init__(self, *args: Any, routes: FastRoutes, skipped_middleware: Collection[str], **kwargs: Any) -> None:
        self.routes = routes
        self.middleware = [path for path in settings.MIDDLEWARE if path not in skipped_middleware]
        super().__init__(*args, **kwargs)

    def load_middleware(self, is_async: bool = False) -> None:
        """BaseHandler.load_middleware over `self.middleware` instead of settings.MIDDLEWARE (synchronous only:
        every middleware OMA uses can run synchronously, and WSGI is synchronous)."""
        if is_async:
            raise ImproperlyConfigured("the webhook fast path is for WSGI (synchronous) only")
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        handler = convert_exception_to_response(self._get_response)  # type: ignore[attr-defined]
        for middleware_path in reversed(self.middleware):
            middleware = import_string(middleware_path)
            if not getattr(middleware, "sync_capable", True):
                raise ImproperlyConfigured(f"{middleware_path} cannot run synchronously: not on the fast path")
            try:
                instance = middleware(handler)
            except MiddlewareNotUsed:
                continue
            if instance is None:
                raise ImproperlyConfigured(f"Middleware factory {middleware_path} returned None.")
            if hasattr(instance, "process_view"):
                self._view_middleware.insert(0, instance.process_view)
            if hasattr(instance, "process_template_response"):
                self._template_response_middleware.append(instance.process_template_response)
            if hasattr(instance, "process_exception"):
                self._exception_middleware.append(instance.process_exception)
            handler = convert_exception_to_response(instance)
        self._middleware_chain = handler

    def resolve_request(self, request: HttpRequest) -> ResolverMatch:
        match = self.routes.match(request.path_info)
        if match is None:
            # Only WebhookFastPath's dispatch brings requests here, and only matched ones. Any other view must not
            # be reached past the middleware (the CSRF check, the session): answered 404, as Django answers.
            raise Resolver404({"path": request.path_info})
        request.resolver_match = match
        return match


class FastPathHandler(FastPathMixin, WSGIHandler):
    """Django's WSGI handler, for the fast views (see the module's docstring)."""


class WebhookFastPath:
    """The WSGI application: the fast views' POSTs to FastPathHandler, everything else to `application`."""

    def __init__(
        self, application: Callable[[WSGIEnviron, StartResponse], Any], *, views: Iterable[str] = FAST_VIEWS,
        skipped_middleware: Collection[str] = SKIPPED_MIDDLEWARE,
    ) -> None:
        self.application = application
        self.routes = FastRoutes(views)
        self.handler = FastPathHandler(routes=self.routes, skipped_middleware=skipped_middleware)

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Any:
        if self.routes.match_environ(environ) is not None:
            return self.handler(environ, start_response)
        return self.application(environ, start_response)
