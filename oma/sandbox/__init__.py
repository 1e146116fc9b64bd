"""The Genstore sandbox: a fake Genstore API server (no Django needed) for `make run`, tests and benchmarks.

    from oma.sandbox import GenstoreSandbox

    with GenstoreSandbox(orders=500, seed=1) as sandbox:
        base_url = sandbox.base_url_for("shop1")  # http://127.0.0.1:PORT/shop1, then /api/202412/orders ...

Names are imported lazily so that Django loading this app costs nothing.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "GenstoreSandbox": "oma.sandbox.server",
    "FaultSettings": "oma.sandbox.server",
    "DEFAULT_ACCESS_TOKEN": "oma.sandbox.server",
    "DEFAULT_CLIENT_SECRET": "oma.sandbox.server",
    "LINK_HEADER_VARIANTS": "oma.sandbox.server",
    "QUIRKS": "oma.sandbox.quirks",
    "WEBHOOK_TOPICS": "oma.sandbox.shop",
    "SandboxControl": "oma.sandbox.control",
    "SandboxProcess": "oma.sandbox.control",
    "sign_body": "oma.sandbox.webhooks",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'oma.sandbox' has no attribute {name!r}")
