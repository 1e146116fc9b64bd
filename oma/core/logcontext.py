"""The ids that tag log lines (store, order, task...): one context variable, set by whoever knows them.

Here, in the bottom layer, so that code in any app can say which order it is working on (a drain pushing many
orders' shipments in threads of its own); oma.ops.logging reads it into every record.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar, Token
from typing import Any

_context: ContextVar[dict[str, Any]] = ContextVar("oma_log_context", default={})  # noqa: B039 (never mutated)


def current_log_context() -> dict[str, Any]:
    return dict(_context.get())


def bind_log_context(**fields: Any) -> Token[dict[str, Any]]:
    """Add fields to the log context until `unbind_log_context(token)`; None values are dropped."""
    merged = {**_context.get(), **{name: value for name, value in fields.items() if value not in (None, "")}}
    return _context.set(merged)


def unbind_log_context(token: Token[dict[str, Any]]) -> None:
    _context.reset(token)


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """`with log_context(store_id=store.pk, order_id=order.order_id): ...` tags every log line inside."""
    token = bind_log_context(**fields)
    try:
        yield
    finally:
        _context.reset(token)
