"""Error reporting to Sentry (optional: settings.SENTRY_DSN), and that nothing secret or personal goes with it.

settings.py imports this module, and with it sentry-sdk, only when SENTRY_DSN is set: a missing package fails
loudly then, and costs nothing otherwise. The Django and Celery integrations report the web processes' and the
tasks' errors; the logging integration turns `logger.error` / `logger.exception` lines into events.

Every event, span and log record passes through `scrub` before it leaves the process: each string through the log
redaction (oma.ops.redaction: secrets this process holds, secret-named values, e-mail addresses, phone numbers),
and each value filed under a secret-looking name (an `X-Genstore-Hmac-Sha256` header, `client_secret`) replaced
whole. Collection is narrowed first (sentry-sdk 3's `data_collection`, its successor of `send_default_pii=False`):
no user identity or client address, no cookies, no request bodies and no stack frame variables (webhook payloads
and order records carry customers' names and addresses, which the redaction does not recognise), no database
query parameters.
"""

from __future__ import annotations

import logging
from typing import Any

import sentry_sdk
from sentry_sdk.integrations.celery import CeleryIntegration
from sentry_sdk.integrations.django import DjangoIntegration
from sentry_sdk.integrations.logging import LoggingIntegration

from oma.ops.redaction import REDACTED, is_secret_name, redact


def scrub(value: Any) -> Any:
    """`value` (an event, or any part of one) with secrets, e-mail addresses and phone numbers redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {
            key: REDACTED if isinstance(key, str) and is_secret_name(key) and value_ else scrub(value_)
            for key, value_ in value.items()
        }
    if isinstance(value, list | tuple):
        return [scrub(item) for item in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    # Anything else (a log record's `request` attribute is the request object) as the SDK would write it: its repr.
    return redact(repr(value))


def _scrub_hook(item: Any, hint: Any) -> Any:
    return scrub(item)


def sentry_init(*, dsn: str, environment: str, traces_sample_rate: float) -> None:
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        traces_sample_rate=traces_sample_rate,
        # ERROR log lines become events too: OMA catches and logs many failures rather than raising them.
        integrations=[DjangoIntegration(), CeleryIntegration(), LoggingIntegration(event_level=logging.ERROR)],
        # What the integrations may collect (see the module docstring). Headers and URL query parameters keep
        # Sentry's own deny list (authorization, cookies, tokens...), and `scrub` goes over them again.
        data_collection={
            "user_info": False,
            "cookies": {"mode": "off"},
            "http_bodies": [],
            "stack_frame_variables": False,
            "database_query_data": False,
        },
        max_request_body_size="never",
        before_send=_scrub_hook,
        before_send_span=_scrub_hook,
        before_send_log=_scrub_hook,
    )
