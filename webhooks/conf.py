"""Webhook settings: a Django setting of the same name wins, else the environment variable, else the default.

Kept here rather than in oma/settings.py so the webhook app carries its own knobs; tests override them with
pytest-django's `settings` fixture, subprocesses with environment variables.
"""

from __future__ import annotations

import os

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

_DEFAULTS: dict[str, int] = {
    # Largest body accepted; bigger deliveries get 413 before anything else is looked at.
    "OMA_WEBHOOK_MAX_BODY_BYTES": 1024 * 1024,
    # Deliveries (and customer data exports) older than this are pruned by the outbox task.
    "OMA_WEBHOOK_RETENTION_DAYS": 30,
    # Processing attempts before a delivery is marked failed (backoff doubles from the base, capped).
    "OMA_WEBHOOK_MAX_ATTEMPTS": 8,
    "OMA_WEBHOOK_RETRY_BASE_SECONDS": 30,
    # Below half the broker's visibility timeout (3600 s): a longer countdown would be redelivered early.
    "OMA_WEBHOOK_RETRY_MAX_SECONDS": 1800,
    # An unfinished delivery is handed to the broker again this long after its last dispatch.
    "OMA_WEBHOOK_REDISPATCH_SECONDS": 300,
    # A processing attempt that has not finished after this long is presumed dead (above the task's hard limit).
    "OMA_WEBHOOK_LEASE_SECONDS": 300,
    # How long a web process reuses a store's row (id, secrets) between deliveries; 0 reads it every time.
    "OMA_WEBHOOK_STORE_CACHE_SECONDS": 10,
    # 1: the web process publishes from a background thread (requests never wait for the broker); 0: inline.
    "OMA_WEBHOOK_BACKGROUND_PUBLISH": 1,
    # Outbox: rows claimed per batch, and rows pruned per run.
    "OMA_WEBHOOK_DISPATCH_BATCH": 500,
    "OMA_WEBHOOK_PRUNE_BATCH": 2000,
}


# Read on every delivery: looked up once, and again after a settings change (tests' `settings` fixture).
_values: dict[str, int] = {}


def webhook_setting(name: str) -> int:
    try:
        return _values[name]
    except KeyError:
        pass
    value = getattr(settings, name, None)
    if value is None:
        value = os.environ.get(name) or _DEFAULTS[name]
    _values[name] = int(value)
    return _values[name]


@receiver(setting_changed)
def _forget_values(**kwargs: object) -> None:
    _values.clear()
