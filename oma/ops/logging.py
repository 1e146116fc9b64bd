"""Structured logs: store and order ids on every line that knows them, and nothing secret on any line.

* `log_context(store_id=..., order_id=...)` (or `bind_log_context`) puts ids in a context variable; Celery tasks
  get theirs from their arguments (oma.ops.signals), webhook requests from the shop header (oma.ops.middleware).
* `ContextFilter`, installed on every handler (settings.LOGGING), copies those ids onto each record and redacts the
  finished message, its exception text and stack (oma.ops.redaction). On a handler rather than a logger, because
  handler filters also see the records that propagate from child loggers.
* `PlainFormatter` prints `store=.. order=..` before the message when known; `JsonFormatter` (LOG_FORMAT=json)
  writes one JSON object per line.

The 429 and 5xx answers of outbound APIs are counted by oma.ops.metrics.observe_upstream_response, which
oma.core.outbound's session calls for every answer (registered in OpsConfig.ready), not by reading urllib3's logs.
"""

from __future__ import annotations

import json
import logging
import logging.config
import traceback
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.mail import mail_admins

from oma.core.logcontext import (  # noqa: F401 (re-exported: callers import them from here)
    bind_log_context,
    current_log_context,
    log_context,
    unbind_log_context,
)
from oma.ops.redaction import redact

CONTEXT_FIELDS = ("store_id", "order_id", "task", "task_id", "request_id")

class ContextFilter(logging.Filter):
    """Adds the context ids to the record and redacts its text. Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_oma_redacted", False):
            return True  # a second handler: already done
        context = current_log_context()
        for name in CONTEXT_FIELDS:
            if getattr(record, name, None) in (None, ""):
                setattr(record, name, context.get(name, ""))
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what we can rather than lose the line
            message = f"{record.msg!r} % {record.args!r}"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        record._oma_redacted = True
        return True


def _context_prefix(record: logging.LogRecord) -> str:
    parts = [f"{name.removesuffix('_id')}={value}" for name in ("store_id", "order_id")
             if (value := getattr(record, name, ""))]
    return f"[{' '.join(parts)}] " if parts else ""


class PlainFormatter(logging.Formatter):
    """`2026-01-01 12:00:00,000 INFO webhooks.tasks [store=3 order=1001] message`."""

    def __init__(self, fmt: str | None = None, datefmt: str | None = None, **kwargs: Any) -> None:
        super().__init__(fmt or "%(asctime)s %(levelname)s %(name)s %(context)s%(message)s", datefmt, **kwargs)

    def format(self, record: logging.LogRecord) -> str:
        record.context = _context_prefix(record)
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the context ids, process and the exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, "")
            if value not in (None, ""):
                entry[name] = value
        entry["process"] = record.process
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, default=str, ensure_ascii=False)


class AdminEmailHandler(logging.Handler):
    """Mails settings.ADMINS each server error (`django.request`, a 500): the redacted log line and traceback only.

    Django's own AdminEmailHandler would send the request's headers, body and the frames' local variables as they
    are (webhook bodies carry customers' e-mails and addresses); the context filter has redacted this record's text.
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            subject = " ".join(f"{record.levelname}: {record.getMessage()}".split())  # mail_admins adds the prefix
            mail_admins(subject[:200], self.format(record), fail_silently=True)
        except Exception:
            self.handleError(record)


def logging_config(
    *, level: str = "INFO", log_format: str = "plain", log_file: str = "", mail_admins: bool = False
) -> dict[str, Any]:
    """The LOGGING dict of settings: console (and an optional file), both through the context/redaction filter;
    with `mail_admins`, server errors also mailed to settings.ADMINS (AdminEmailHandler)."""
    formatter = "json" if log_format.lower() == "json" else "plain"
    handlers: dict[str, Any] = {
        "console": {"class": "logging.StreamHandler", "formatter": formatter, "filters": ["context"]},
    }
    if log_file:
        handlers["file"] = {
            "class": "logging.handlers.WatchedFileHandler",
            "filename": log_file,
            "formatter": formatter,
            "filters": ["context"],
        }
    names = list(handlers)
    request_handlers: list[str] = []
    if mail_admins:
        handlers["mail_admins"] = {
            "class": "oma.ops.logging.AdminEmailHandler", "level": "ERROR", "formatter": "plain",
            "filters": ["context"],
        }
        request_handlers.append("mail_admins")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "context": {"()": "oma.ops.logging.ContextFilter"},
        },
        "formatters": {
            "plain": {"()": "oma.ops.logging.PlainFormatter"},
            "json": {"()": "oma.ops.logging.JsonFormatter"},
        },
        "handlers": handlers,
        "root": {"handlers": names, "level": level},
        "loggers": {
            # Django's defaults attach their own unfiltered console handler to these: route them through ours.
            "django": {"handlers": [], "level": level, "propagate": True},
            "django.server": {"handlers": [], "level": level, "propagate": True},
            "django.request": {"handlers": request_handlers, "propagate": True},
            "django.db.backends": {"level": "WARNING"},
        },
    }


def configure_celery_logging(loglevel: int | str | None = None, logfile: str | None = None, **kwargs: Any) -> None:
    """Celery's `setup_logging` receiver: keep Django's LOGGING (filters, formats) in workers and beat.

    Celery's own loggers keep the level given on its command line (`-l info`), as they had before, so that its
    lifecycle lines ("ready.", "Task ... received") are still written whatever LOG_LEVEL the app code uses.
    """
    logging.config.dictConfig(settings.LOGGING)
    if loglevel:
        logging.getLogger("celery").setLevel(loglevel)
    if logfile:
        handler = logging.FileHandler(logfile)
        handler.addFilter(ContextFilter())
        console = logging.getLogger().handlers[0] if logging.getLogger().handlers else None
        handler.setFormatter(console.formatter if console is not None and console.formatter else PlainFormatter())
        logging.getLogger().addHandler(handler)
