"""oma.wsgi's application as gunicorn serves it, for tests/webhooks/test_wsgi_fastpath.py, with two test-only
additions: every answer says which handler served it (`X-Test-Handler: fast` or `django`), and a signed Genstore
delivery with the topic `test/crash` makes the intake raise (an unexpected exception inside the view).

gunicorn imports it as `tests.webhooks.wsgi_probe:application`.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

from django.core.signals import got_request_exception

from oma.wsgi import application

# why: imported once oma.wsgi has set Django up (its models need the app registry)
views = importlib.import_module("webhooks.views")

CRASH_TOPIC = "test/crash"
CRASH_MESSAGE = "intake crash (test)"

logger = logging.getLogger("tests.webhooks.wsgi_probe")


class _Tagged:
    def __init__(self, app: Callable[..., Any], name: str) -> None:
        self.app = app
        self.name = name

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        def tagged_start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, [*headers, ("X-Test-Handler", self.name)], exc_info)

        return self.app(environ, tagged_start_response)


application.handler = _Tagged(application.handler, "fast")  # type: ignore[assignment]
application.application = _Tagged(application.application, "django")

_payload_shape_error = views.payload_shape_error


def _crashing_payload_shape_error(topic: str, payload: Any) -> str | None:
    if topic == CRASH_TOPIC:
        raise RuntimeError(CRASH_MESSAGE)
    return _payload_shape_error(topic, payload)


views.payload_shape_error = _crashing_payload_shape_error


def _report(sender: Any, request: Any = None, **kwargs: Any) -> None:
    # What error reporters (Sentry's Django integration) listen to: a line in the log proves it was sent.
    logger.warning("got_request_exception for %s", getattr(request, "path", "?"))


got_request_exception.connect(_report)
