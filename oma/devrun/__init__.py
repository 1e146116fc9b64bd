"""`make run`: the whole app on one machine, on embedded defaults unless DATABASE_URL / REDIS_URL are set.

Creates `.env` on first run (DEBUG, a random SECRET_KEY and a fresh encryption key), migrates, creates an admin
user (printing its credentials once, or taking OMA_ADMIN_USERNAME / OMA_ADMIN_PASSWORD), and starts the web
server, a Celery worker and beat together. When no real store is configured it also starts the Genstore sandbox
and connects a demo store to it, with the carrier sandbox, carrier accounts and some imported tracking numbers
so polling and pushes have something to show. Ctrl-C stops every process cleanly.

__main__.py is the launcher (no Django import before `django.setup()`); demo.py seeds the demo data.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
PYTHON = sys.executable
WEB_PORT = int(os.environ.get("OMA_WEB_PORT", "8000"))
SANDBOX_PORT = int(os.environ.get("OMA_SANDBOX_PORT", "8100"))
CARRIER_SANDBOX_PORT = int(os.environ.get("OMA_CARRIER_SANDBOX_PORT", "8200"))
DEMO_SHIPMENTS = 60
DEMO_DOMAIN = "demo.genmystore.com"
DEMO_TOKEN = "demo-access-token"  # the sandbox's own credentials, not a secret of any real store
DEMO_SECRET = "demo-client-secret"


def say(message: str) -> None:
    print(f"[oma] {message}", flush=True)
