"""Redaction and context on log records: known secrets, secret-shaped values, e-mails, phones; JSON lines."""

from __future__ import annotations

import io
import json
import logging

import pytest

from oma.ops.logging import ContextFilter, JsonFormatter, PlainFormatter, log_context
from oma.ops.redaction import forget_known_secrets, redact, register_secret


@pytest.fixture(autouse=True)
def _known_secrets():
    forget_known_secrets()
    yield
    forget_known_secrets()


@pytest.mark.parametrize(
    ("text", "hidden", "kept"),
    [
        ("GET https://shop/api/orders?access_token=tok-9f8e7d6c&limit=250", "tok-9f8e7d6c", "limit=250"),
        ("{'X-Genstore-Access-Token': 'gst_0123456789', 'Accept': 'application/json'}", "gst_0123456789",
         "'Accept': 'application/json'"),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig", "eyJhbGciOiJIUzI1NiJ9", "Authorization: Bearer"),
        ("X-Genstore-Hmac-Sha256: q1w2e3r4t5y6u7i8o9p0+/=", "q1w2e3r4t5y6u7i8o9p0", "X-Genstore-Hmac-Sha256"),
        ('{"client_secret": "cs-abcdef123", "api_key": "k-5555aaaa"}', "cs-abcdef123", '"client_secret"'),
        ('{"api_key": "k-5555aaaa"}', "k-5555aaaa", '"api_key"'),
        ("postgres://oma:hunter2hunter2@db:5432/oma", "hunter2hunter2", "db:5432/oma"),
        ("customer jane.doe+shop@example.co.uk wrote", "jane.doe+shop@example.co.uk", "customer [email] wrote"),
        ("call +1 555 010 0199 or (555) 010-0199 or 555.010.0199", "010", "call [phone] or [phone] or [phone]"),
        ("ring +44 20 7946 0958 today", "7946", "ring [phone] today"),
    ],
)
def test_secret_shapes_emails_and_phones_are_redacted(text: str, hidden: str, kept: str) -> None:
    result = redact(text)
    assert hidden not in result
    assert kept in result


def test_ids_numbers_and_times_are_left_alone() -> None:
    text = ("order 1001 (#1001) tracking 1Z999AA10123456784 and 9400111899223197428490 at "
            "2026-01-02T10:00:00+00:00, next token in 2.00s, 40/2 bucket, page 3 of 12")
    assert redact(text) == text


def test_a_registered_secret_is_redacted_wherever_it_appears() -> None:
    register_secret("plain-token-without-any-name-4711")
    register_secret("short")  # too short to be a secret: ignored rather than blanking common words
    text = "requests failed: https://host/x/plain-token-without-any-name-4711/y short"
    assert redact(text) == "requests failed: https://host/x/[redacted]/y short"


def _record(message: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc else None
    return logging.LogRecord("oma.test", logging.ERROR, __file__, 1, message, args, exc_info)


def test_the_filter_redacts_the_formatted_message_and_the_exception_and_adds_the_context() -> None:
    register_secret("tok-registered-0001")
    try:
        raise RuntimeError("call to https://x/?token=tok-registered-0001 for buyer@example.com failed")
    except RuntimeError as exc:
        record = _record("headers %s for %s", {"X-Genstore-Access-Token": "tok-registered-0001"}, "buyer@example.com",
                         exc=exc)
    with log_context(store_id=7, order_id="1001"):
        assert ContextFilter().filter(record)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(PlainFormatter())
    handler.emit(record)
    output = stream.getvalue()
    assert "tok-registered-0001" not in output
    assert "buyer@example.com" not in output
    assert "[store=7 order=1001] headers {'X-Genstore-Access-Token': '[redacted]'} for [email]" in output
    assert "RuntimeError: call to https://x/?token=[redacted] for [email] failed" in output


def test_json_lines_carry_level_logger_message_and_ids() -> None:
    record = _record("push of %s failed for %s", "1Z999AA10123456784", "someone@example.org")
    with log_context(store_id=3, order_id="2002", task="fulfillment.push_shipment"):
        ContextFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "ERROR" and line["logger"] == "oma.test"
    assert line["message"] == "push of 1Z999AA10123456784 failed for [email]"
    assert (line["store_id"], line["order_id"], line["task"]) == (3, "2002", "fulfillment.push_shipment")


def test_settings_logging_puts_the_filter_on_every_handler_and_routes_django_through_it() -> None:
    from oma.ops.logging import logging_config

    config = logging_config(level="INFO", log_format="json", log_file="/tmp/oma-test.log")
    assert set(config["handlers"]) == {"console", "file"}
    assert all(handler["filters"] == ["context"] for handler in config["handlers"].values())
    assert all(handler["formatter"] == "json" for handler in config["handlers"].values())
    assert config["loggers"]["django"] == {"handlers": [], "level": "INFO", "propagate": True}


def test_the_configured_root_handlers_redact(caplog) -> None:
    """Through the real settings.LOGGING of this process: a secret logged anywhere leaves only redacted."""
    root = logging.getLogger()
    ours = [h for h in root.handlers if any(isinstance(f, ContextFilter) for f in h.filters)]
    assert ours, "settings.LOGGING must install the context filter on the root handlers"
    stream = io.StringIO()
    original = ours[0].stream if isinstance(ours[0], logging.StreamHandler) else None
    if original is None:
        pytest.skip("the first root handler is not a stream handler")
    ours[0].setStream(stream)
    try:
        logging.getLogger("webhooks.somewhere").warning("Authorization: Bearer abcdefgh12345678 from x@y.com")
    finally:
        ours[0].setStream(original)
    assert "abcdefgh12345678" not in stream.getvalue() and "x@y.com" not in stream.getvalue()
    assert "Authorization: Bearer [redacted] from [email]" in stream.getvalue()
