"""Email settings read from the environment (EMAIL_URL, EMAIL_BACKEND, DEFAULT_FROM_EMAIL, SERVER_EMAIL, ADMINS) and
Django's password validators. Settings are read once per process, so each environment is read by a Python process
of its own, as a deployment would."""

from __future__ import annotations

import json
import os
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError

from tests.fixtures_celery import ROOT

# Reads oma.settings once per environment given on stdin (a developer's .env is not read: only what the case says).
_READ_SETTINGS = """
import importlib, json, os, sys
import environ
environ.Env.read_env = classmethod(lambda cls, *args, **kwargs: None)
names = ["EMAIL_BACKEND", "EMAIL_HOST", "EMAIL_PORT", "EMAIL_HOST_USER", "EMAIL_HOST_PASSWORD", "EMAIL_USE_TLS",
         "EMAIL_USE_SSL", "EMAIL_TIMEOUT", "DEFAULT_FROM_EMAIL", "SERVER_EMAIL", "ADMINS"]
results, module = [], None
for case in json.load(sys.stdin):
    for name in ("EMAIL_URL", "EMAIL_BACKEND", "DEFAULT_FROM_EMAIL", "SERVER_EMAIL", "ADMINS", "EMAIL_TIMEOUT"):
        os.environ.pop(name, None)
    os.environ.update(case)
    try:
        module = importlib.reload(module) if module else importlib.import_module("oma.settings")
        results.append({name: getattr(module, name) for name in names})
    except Exception as exc:
        results.append({"error": f"{type(exc).__name__}: {exc}"})
print(json.dumps(results))
"""

BASE_ENV = {"DEBUG": "0", "SECRET_KEY": "settings-test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
            "DATABASE_URL": "sqlite:///:memory:", "CELERY_BROKER_URL": "memory://", "SENTRY_DSN": ""}
CONSOLE = "django.core.mail.backends.console.EmailBackend"
SMTP = "django.core.mail.backends.smtp.EmailBackend"


def _read_settings(*cases: dict[str, str]) -> list[dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-c", _READ_SETTINGS], input=json.dumps(list(cases)), cwd=ROOT, capture_output=True,
        text=True, timeout=60, check=False, env={**os.environ, "PYTHONPATH": str(ROOT), **BASE_ENV},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def test_email_url_configures_the_mail_server_and_email_backend_still_wins():
    defaults, empty, tls, ssl, backend_only, both, admins, bad_admins, bad_url = _read_settings(
        {},
        {"EMAIL_URL": ""},  # what compose passes for an unset variable
        {"EMAIL_URL": "smtp+tls://oma%40example.com:p%40ss%3Aword@smtp.example.com:2525",
         "DEFAULT_FROM_EMAIL": "Shop Ops <ops@example.com>", "EMAIL_TIMEOUT": "20"},
        {"EMAIL_URL": "smtp+ssl://mailer@smtp.example.com"},
        {"EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend"},
        {"EMAIL_URL": "smtp://relay.internal:25", "EMAIL_BACKEND": "myproject.mail.QueuedSmtpBackend",
         "SERVER_EMAIL": "errors@example.com"},
        {"ADMINS": "Ops Team <ops@example.com>, dev@example.com"},
        {"ADMINS": "Ops Team"},
        {"EMAIL_URL": "gopher://mail.example.com"},
    )
    assert defaults == {
        "EMAIL_BACKEND": CONSOLE, "EMAIL_HOST": "localhost", "EMAIL_PORT": 25, "EMAIL_HOST_USER": "",
        "EMAIL_HOST_PASSWORD": "", "EMAIL_USE_TLS": False, "EMAIL_USE_SSL": False, "EMAIL_TIMEOUT": 10,
        "DEFAULT_FROM_EMAIL": "OMA <oma@localhost>", "SERVER_EMAIL": "OMA <oma@localhost>", "ADMINS": [],
    }
    assert empty == defaults
    assert tls == {
        **defaults, "EMAIL_BACKEND": SMTP, "EMAIL_HOST": "smtp.example.com", "EMAIL_PORT": 2525,
        "EMAIL_HOST_USER": "oma@example.com", "EMAIL_HOST_PASSWORD": "p@ss:word", "EMAIL_USE_TLS": True,
        "EMAIL_TIMEOUT": 20, "DEFAULT_FROM_EMAIL": "Shop Ops <ops@example.com>",
        "SERVER_EMAIL": "Shop Ops <ops@example.com>",  # the sender of error mails defaults to DEFAULT_FROM_EMAIL
    }
    assert (ssl["EMAIL_BACKEND"], ssl["EMAIL_PORT"], ssl["EMAIL_USE_SSL"], ssl["EMAIL_USE_TLS"]) == (SMTP, 465, True,
                                                                                                    False)
    assert ssl["EMAIL_HOST_USER"] == "mailer" and ssl["EMAIL_HOST_PASSWORD"] == ""
    # EMAIL_BACKEND alone works as it always did; with EMAIL_URL it replaces the backend class only.
    assert backend_only == {**defaults, "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend"}
    assert (both["EMAIL_BACKEND"], both["EMAIL_HOST"], both["EMAIL_PORT"]) == (
        "myproject.mail.QueuedSmtpBackend", "relay.internal", 25)
    assert both["SERVER_EMAIL"] == "errors@example.com"
    assert admins["ADMINS"] == [["Ops Team", "ops@example.com"], ["", "dev@example.com"]]  # tuples, through JSON
    assert bad_admins == {"error": 'ImproperlyConfigured: ADMINS: comma-separated "Name <address>" or addresses '
                                   "(no commas in names)"}
    assert bad_url["error"].startswith("ImproperlyConfigured: Invalid email schema gopher")


class _SmtpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SmtpSession)
        self.messages: list[dict[str, Any]] = []


class _SmtpSession(socketserver.StreamRequestHandler):
    """Just enough SMTP for Django's backend without login or TLS: every command accepted, each message kept."""

    server: _SmtpServer

    def handle(self) -> None:
        self.wfile.write(b"220 test SMTP\r\n")
        message: dict[str, Any] = {"rcpt": [], "data": []}
        in_data = False
        for raw in self.rfile:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if in_data:
                if line == ".":
                    in_data = False
                    self.server.messages.append({**message, "data": "\n".join(message["data"])})
                    message = {"rcpt": [], "data": []}
                    self.wfile.write(b"250 queued\r\n")
                else:
                    message["data"].append(line)
                continue
            verb = line[:4].upper()
            if verb == "MAIL":
                message["from"] = line.split(":", 1)[1].split()[0].strip("<>")
            elif verb == "RCPT":
                message["rcpt"].append(line.split(":", 1)[1].split()[0].strip("<>"))
            if verb == "DATA":
                in_data = True
                self.wfile.write(b"354 end with .\r\n")
            elif verb == "QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 OK\r\n")


@pytest.fixture
def smtp_server() -> Iterator[_SmtpServer]:
    server = _SmtpServer()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_mail_goes_to_the_server_email_url_names(smtp_server: _SmtpServer):
    port = smtp_server.server_address[1]
    code = (
        "import django; django.setup()\n"
        "from django.core.mail import mail_admins, send_mail\n"
        "send_mail('Daily digest', 'body', None, ['merchant@example.com'])\n"
        "mail_admins('Server error', 'traceback')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "oma.settings", **BASE_ENV,
             "EMAIL_URL": f"smtp://127.0.0.1:{port}", "DEFAULT_FROM_EMAIL": "OMA <oma@shop.example.com>",
             "SERVER_EMAIL": "errors@shop.example.com", "ADMINS": "Ops <ops@shop.example.com>,dev@shop.example.com"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    digest, error = smtp_server.messages
    assert (digest["from"], digest["rcpt"]) == ("oma@shop.example.com", ["merchant@example.com"])
    assert "Subject: Daily digest" in digest["data"] and "From: OMA <oma@shop.example.com>" in digest["data"]
    assert error["from"] == "errors@shop.example.com"
    assert error["rcpt"] == ["ops@shop.example.com", "dev@shop.example.com"]
    assert "Subject: [Django] Server error" in error["data"]


def test_weak_passwords_are_refused():
    with pytest.raises(ValidationError) as refused:
        validate_password("1")
    assert {error.code for error in refused.value.error_list} == {
        "password_too_short", "password_too_common", "password_entirely_numeric"
    }
    with pytest.raises(ValidationError):
        validate_password("password123")
    validate_password("correct horse battery staple 17")  # a long passphrase passes
