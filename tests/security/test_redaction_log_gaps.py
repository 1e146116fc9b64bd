"""Issue 13, item 11: what the log redaction let through, checked through the handlers settings.LOGGING installs.

Every case is logged with a real logger and read back from the root handler's stream (plain, then JSON lines), so
the filter, the formatter and the patterns are tested together, as they run in production.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from oma.ops.logging import ContextFilter, JsonFormatter
from oma.ops.redaction import forget_known_secrets

HMAC_A = "K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4="
HMAC_B = "3pq/Yw0tHRZ5aJ8h1l2xqf+eUSfkwhvA4CGAcM5U+dw="
CHANNEL_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SEVENTEEN_TOKEN = "7F3C2A0B9E8D4C1A6B5E"


@pytest.fixture(autouse=True)
def _nothing_registered() -> Iterator[None]:
    """The shape patterns alone must do it: none of these values was ever registered in this process."""
    forget_known_secrets()
    yield
    forget_known_secrets()


@pytest.fixture
def logged() -> Iterator[callable]:
    """`logged(fmt, *args)`: what the project's root handler writes for that record, plain and as a JSON line."""
    root = logging.getLogger()
    ours = [h for h in root.handlers if isinstance(h, logging.StreamHandler)
            and any(isinstance(f, ContextFilter) for f in h.filters)]
    assert ours, "settings.LOGGING installs the redacting filter on a root stream handler"
    handler = ours[0]
    original_stream, original_formatter = handler.stream, handler.formatter

    def log(message: str, *args: object) -> tuple[str, str]:
        outputs = []
        for formatter in (original_formatter, JsonFormatter()):
            stream = io.StringIO()
            handler.setStream(stream)
            handler.setFormatter(formatter)
            logging.getLogger("oma.security.redaction").warning(message, *args)
            outputs.append(stream.getvalue())
        plain, line = outputs
        return plain, json.loads(line)["message"]

    try:
        yield log
    finally:
        handler.setStream(original_stream)
        handler.setFormatter(original_formatter)


def _assert_hidden(logged, message: str, *args: object, hidden: list[str], kept: list[str]) -> None:
    for output in logged(message, *args):
        for value in hidden:
            assert value not in output, f"{value!r} leaked: {output!r}"
        for value in kept:
            assert value in output, f"{value!r} was lost: {output!r}"


@pytest.mark.parametrize(
    "header",
    [
        f"webhook-signature: v1,{HMAC_A}",
        f"webhook-signature: v1,{HMAC_A} v1,{HMAC_B}",
        f"webhook-signature: v1a,{HMAC_A} v1,{HMAC_B}",
        f"{{'webhook-signature': 'v1,{HMAC_A} v1a,{HMAC_B}', 'webhook-id': 'msg_1'}}",
        f'{{"Webhook-Signature": "v1,{HMAC_A}", "webhook-id": "msg_1"}}',
        f"('webhook-signature', 'v1,{HMAC_B}')",
    ],
)
def test_a_standard_webhooks_signature_header_is_redacted_whole_for_every_scheme(logged, header: str) -> None:
    _assert_hidden(logged, "channel webhook refused, headers %s", header,
                   hidden=[HMAC_A, HMAC_B, HMAC_A[:12], HMAC_B[:12]], kept=["channel webhook refused"])


def test_a_whsec_signing_secret_never_registered_in_this_process_is_redacted(logged) -> None:
    _assert_hidden(logged, "cannot decode %s for channel %s", CHANNEL_SECRET, "shopify-eu",
                   hidden=[CHANNEL_SECRET, CHANNEL_SECRET.removeprefix("whsec_")], kept=["for channel shopify-eu"])


@pytest.mark.parametrize(
    "text",
    [
        f"{{'17token': '{SEVENTEEN_TOKEN}', 'Content-Type': 'application/json'}}",
        f"17token: {SEVENTEEN_TOKEN}",
        f'{{"17token":"{SEVENTEEN_TOKEN}"}}',
    ],
)
def test_a_17track_17token_header_value_is_redacted(logged, text: str) -> None:
    _assert_hidden(logged, "17TRACK register failed; sent %s", text, hidden=[SEVENTEEN_TOKEN],
                   kept=["17TRACK register failed", "17token"])


@pytest.mark.parametrize(
    ("address", "local_part"),
    [
        ("jöhn@exämple.de", "jöhn"),
        ("zoë.müller@straße.example.com", "müller"),
        ("jane%40example.com", "jane"),
        ("jane.doe%2Bshop%40example.co.uk", "jane.doe"),
        ("JANE%40EXAMPLE.COM", "JANE"),
    ],
)
def test_non_ascii_and_percent_encoded_email_addresses_are_redacted(logged, address: str, local_part: str) -> None:
    _assert_hidden(logged, "GET /track/?email=%s&order=1001 answered 404", address,
                   hidden=[address, local_part], kept=["order=1001 answered 404"])


@pytest.mark.parametrize(
    ("phone", "digits"),
    [
        ("+1 415 555 0100", "555 0100"),
        ("(415) 555-0100", "555-0100"),
        ("+44 20 7946 0958", "7946 0958"),
        ("415 555 0100", "555 0100"),
        ("+1 (415) 555-0100", "555-0100"),
        ("+49 30 12345678", "30 12345678"),
    ],
)
def test_phone_numbers_written_with_spaces_are_redacted_and_the_ids_times_and_money_beside_them_kept(
    logged, phone: str, digits: str
) -> None:
    kept = ["order 1001", "2026-01-02T10:00:00+00:00", "1Z999AA10123456784", "USD 1,234.56", "+12.50",
            "10:00:00 +0000"]
    _assert_hidden(
        logged,
        "order 1001 phone %s 1001 at 2026-01-02T10:00:00+00:00 (10:00:00 +0000): label 1Z999AA10123456784 for "
        "USD 1,234.56, adjustment +12.50",
        phone,
        hidden=[digits],
        kept=[*kept, "phone [phone] 1001 at"],
    )


def test_a_phone_number_followed_by_a_year_keeps_the_year(logged) -> None:
    for output in logged("customer +1 415 555 0100 2026 order #1001"):
        assert "customer [phone] 2026 order #1001" in output


def test_digit_groups_that_are_not_phone_numbers_are_left_alone(logged) -> None:
    text = ("usps 9400 1118 9922 3197 4284 90, order 1001 2002 3003, delta +1 2345 6789 rows, "
            "100 200 3000 units, 2026-01-02 10:00:00")
    for output in logged(text):
        assert text in output
