"""Wiring done once per process (OpsConfig.ready): secrets registered for redaction, task log context.

* Every model field that is stored encrypted (oma.core.crypto.EncryptedTextField) holds a secret in plaintext once
  loaded: a `post_init` receiver registers those values for redaction (oma.ops.redaction), so a token that ends up
  in an exception message or a URL is masked in this process's logs. The settings' own secrets likewise.
* Celery tasks get `task`, `task_id`, and the store and order ids their arguments point at, in the log context for
  the length of the run (`task_prerun` / `task_postrun`).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Callable
from contextvars import Token
from typing import Any
from urllib.parse import urlsplit

from celery.signals import task_postrun, task_prerun
from django.apps import apps
from django.conf import settings
from django.db.models import Model
from django.db.models.signals import post_init

from oma.core.crypto import EncryptedTextField
from oma.ops.logging import bind_log_context, unbind_log_context
from oma.ops.redaction import register_secret, register_secrets

logger = logging.getLogger(__name__)


def _encrypted_fields(model: type[Model]) -> list[str]:
    return [f.attname for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]


def _register_instance_secrets(sender: type, instance: Any, **kwargs: Any) -> None:
    for name in _SECRET_FIELDS.get(sender, ()):
        value = instance.__dict__.get(name)
        if isinstance(value, str):
            register_secret(value)


_SECRET_FIELDS: dict[type, list[str]] = {}


def register_settings_secrets() -> None:
    values: list[object] = [settings.SECRET_KEY, *settings.OMA_ENCRYPTION_KEYS]
    values.append(settings.OMA_METRICS_TOKEN)
    values.append(settings.EMAIL_HOST_PASSWORD)
    for url in (settings.REDIS_URL, settings.CELERY_BROKER_URL):
        values.append(urlsplit(url).password if url and "://" in url else "")
    for database in settings.DATABASES.values():
        values.append(database.get("PASSWORD", ""))
    register_secrets(values)


# --- Celery task log context ---------------------------------------------------------------------------------


def _lookup(model_label: str, pk: object, store: str, order: str | None) -> dict[str, Any]:
    model = apps.get_model(model_label)
    fields = [store] + ([order] if order else [])
    row = model._default_manager.filter(pk=pk).values_list(*fields).first()
    if row is None:
        return {}
    return {"store_id": row[0], **({"order_id": row[1]} if order else {})}


def _deliveries(ids: object) -> dict[str, Any]:
    """A batch of webhook deliveries: their store when they share one, the order when there is one delivery."""
    if not isinstance(ids, list | tuple) or not ids:
        return {}
    rows = list(apps.get_model("webhooks.WebhookDelivery")._default_manager.filter(pk__in=list(ids)[:1000])
                .values_list("store_id", "resource_id").distinct()[:2])
    context: dict[str, Any] = {}
    if len({store_id for store_id, _ in rows}) == 1:
        context["store_id"] = rows[0][0]
    if len(ids) == 1 and rows:
        context["order_id"] = rows[0][1]
    return context


# Task argument -> how to find the store (and Genstore order id) it concerns: one indexed lookup per task.
ARGUMENT_CONTEXT: dict[str, Callable[[Any], dict[str, Any]]] = {
    "store_id": lambda value: {"store_id": value},
    "delivery_id": lambda value: _lookup("webhooks.WebhookDelivery", value, "store_id", "resource_id"),
    "delivery_ids": _deliveries,
    "shipment_id": lambda value: _lookup("tracking.Shipment", value, "store_id", "order__order_id"),
    "push_id": lambda value: _lookup("fulfillment.FulfillmentPush", value, "store_id", "order__order_id"),
    "channel_id": lambda value: _lookup("channels.Channel", value, "store_id", None),
}

_task_tokens: dict[str, Token] = {}


def task_log_context(task: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
    context: dict[str, Any] = {"task": getattr(task, "name", "")}
    try:
        bound = inspect.signature(task.run).bind_partial(*(args or ()), **(kwargs or {})).arguments
    except (TypeError, ValueError):
        bound = dict(kwargs or {})
    for name, resolve in ARGUMENT_CONTEXT.items():
        value = bound.get(name)
        if value in (None, ""):
            continue
        try:
            context.update(resolve(value))
        except Exception as exc:  # the database may be down: the task will say so itself
            logger.debug("log context: cannot resolve %s=%r: %s", name, value, exc)
        break
    return context


def _task_prerun(sender: Any = None, task_id: str = "", task: Any = None, args: tuple = (), kwargs: dict | None = None,
                 **extra: Any) -> None:
    context = task_log_context(task or sender, args, kwargs or {})
    _task_tokens[task_id] = bind_log_context(task_id=task_id, **context)


def _task_postrun(sender: Any = None, task_id: str = "", **extra: Any) -> None:
    token = _task_tokens.pop(task_id, None)
    if token is not None:
        with contextlib.suppress(ValueError):  # created in another context (not with the prefork pool)
            unbind_log_context(token)


def connect() -> None:
    for model in apps.get_models():
        fields = _encrypted_fields(model)
        if fields:
            _SECRET_FIELDS[model] = fields
            post_init.connect(_register_instance_secrets, sender=model, dispatch_uid=f"oma.ops.secrets.{model._meta}")
    register_settings_secrets()
    task_prerun.connect(_task_prerun, dispatch_uid="oma.ops.task_prerun")
    task_postrun.connect(_task_postrun, dispatch_uid="oma.ops.task_postrun")
