"""Django's test client, with requests dispatched the way oma.wsgi dispatches them: the webhook views' POSTs
through the fast path's handler (webhooks/wsgi_fastpath.py), everything else through Django's full stack.

Django's test client has its own handler (it keeps the test's transaction and hands back the response object),
so oma.wsgi.application itself cannot serve it; this is the same dispatch and the same reduced middleware chain
on that handler. tests/webhooks/test_wsgi_fastpath.py covers the real WSGI application through gunicorn.
"""

from __future__ import annotations

from typing import Any

from django.test import Client
from django.test.client import ClientHandler

from webhooks.wsgi_fastpath import FAST_VIEWS, SKIPPED_MIDDLEWARE, FastPathMixin, FastRoutes


class FastPathClientHandler(FastPathMixin, ClientHandler):
    """The test client's handler with the fast path's middleware chain and URL resolution."""


class _DispatchingHandler:
    def __init__(self, enforce_csrf_checks: bool) -> None:
        self.routes = FastRoutes(FAST_VIEWS)
        self.full = ClientHandler(enforce_csrf_checks)
        self.fast = FastPathClientHandler(
            enforce_csrf_checks, routes=self.routes, skipped_middleware=SKIPPED_MIDDLEWARE
        )
        self.fast_requests = 0

    def __call__(self, environ: dict[str, Any]) -> Any:
        if self.routes.match_environ(environ) is not None:
            self.fast_requests += 1
            return self.fast(environ)
        return self.full(environ)


class FastPathClient(Client):
    def __init__(self, enforce_csrf_checks: bool = False, **defaults: Any) -> None:
        super().__init__(enforce_csrf_checks, **defaults)
        self.handler = _DispatchingHandler(enforce_csrf_checks)

    @property
    def fast_requests(self) -> int:
        """Requests served by the fast path so far."""
        return self.handler.fast_requests
