"""The web container's own health check (`GET http://127.0.0.1:8000/healthz/live` from inside it) passes whatever
ALLOWED_HOSTS is, and nothing else skips the host check (oma.ops.liveness)."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from oma.ops.liveness import LIVE_PATH, is_loopback
from tests.fixtures_celery import ROOT, GunicornServer

PRODUCTION_HOST = "oma.example.com"


@pytest.fixture
def production_hosts(settings) -> None:
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = [PRODUCTION_HOST]


def _get(path: str, *, peer: str, host: str = "127.0.0.1:8000", method: str = "get") -> int:
    client = Client(REMOTE_ADDR=peer)
    return getattr(client, method)(path, HTTP_HOST=host).status_code


def test_the_probe_path_is_the_views_path():
    assert reverse("ops:live") == LIVE_PATH


@pytest.mark.parametrize("peer", ["127.0.0.1", "127.0.0.53", "::1", "::ffff:127.0.0.1"])
def test_the_container_itself_gets_its_answer_whatever_the_host_header(production_hosts, peer):
    response = Client(REMOTE_ADDR=peer).get(LIVE_PATH, HTTP_HOST="127.0.0.1:8000")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert "no-store" in response["Cache-Control"]
    assert _get(LIVE_PATH, peer=peer, host="anything.invalid", method="head") == 200


def test_nothing_else_skips_the_host_check(production_hosts):
    assert _get(LIVE_PATH, peer="10.0.0.7") == 400  # another machine naming a host we do not serve
    assert _get(LIVE_PATH, peer="203.0.113.9", host="localhost") == 400
    assert _get(LIVE_PATH, peer="127.0.0.1", method="post") == 400  # only GET and HEAD are answered early
    for path in ("/healthz", "/metrics", "/admin/login/", "/healthz/live/", "/track/"):
        assert _get(path, peer="127.0.0.1") == 400, path
    # Through the allowed host, from anywhere, the view answers as before.
    assert _get(LIVE_PATH, peer="10.0.0.7", host=PRODUCTION_HOST) == 200


def test_loopback_means_loopback():
    assert [a for a in ("127.0.0.1", "127.255.0.1", "::1", "::ffff:127.0.0.1") if not is_loopback(a)] == []
    assert [a for a in ("10.0.0.1", "::ffff:10.0.0.1", "0.0.0.0", "", "localhost", "fe80::1") if is_loopback(a)] == []


def test_compose_healthcheck_passes_under_gunicorn_with_production_settings(
    tmp_path: Path, gunicorn_factory: Callable[..., GunicornServer]
):
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "oma.settings", "DEBUG": "0",
        "SECRET_KEY": "liveness-test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        "ALLOWED_HOSTS": PRODUCTION_HOST, "DATABASE_URL": f"sqlite:///{tmp_path / 'unused.sqlite3'}",
        "CELERY_BROKER_URL": "memory://", "OMA_ENCRYPTION_KEYS": "u6HqWmtyJ5bOVyI1Q4JkQqoWW9cXfC5nCUEO1GJwbQ0=",
    }
    web = gunicorn_factory(env=env, workers=1, threads=2)
    # docker-compose.yml's web healthcheck, as written (urllib sends Host: 127.0.0.1:<port>).
    probe = f"import urllib.request; urllib.request.urlopen('{web.base_url}/healthz/live')"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    with pytest.raises(urllib.error.HTTPError) as refused:  # the host check still holds for everything else
        urllib.request.urlopen(f"{web.base_url}/admin/login/", timeout=10)
    assert refused.value.code == 400
