"""Webhook header names and signature checks (webhook deliveries and install/launch requests); the topics are in
oma.genstore.topics.

Webhook signature (contract Part B): `X-Genstore-Hmac-Sha256` is base64 of HMAC-SHA256 over the raw body, keyed
with the app's client secret; the hex form is accepted too, and during a secret rotation the previous secret.
Install/launch requests (Part A): drop `hmac`, sort the other query parameters by key, join `k=v` with `&` (values
as sent, not URL-decoded), HMAC-SHA256 with the client secret, hex.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence

__all__ = [
    "HEADER_API_VERSION",
    "HEADER_HMAC",
    "HEADER_SHOP_DOMAIN",
    "HEADER_TOPIC",
    "HEADER_WEBHOOK_ID",
    "WebhookVerifier",
    "compute_webhook_hmac",
    "verify_install_hmac",
    "verify_webhook_hmac",
]

HEADER_TOPIC = "X-Genstore-Topic"
HEADER_HMAC = "X-Genstore-Hmac-Sha256"
HEADER_SHOP_DOMAIN = "X-Genstore-Shop-Domain"
# May be absent: then deliveries are deduplicated on topic + SHA-256 of the body.
HEADER_WEBHOOK_ID = "X-Genstore-Webhook-Id"
HEADER_API_VERSION = "X-Genstore-Api-Version"


def _digest(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()


def compute_webhook_hmac(secret: str, body: bytes) -> str:
    """The base64 signature Genstore puts in X-Genstore-Hmac-Sha256 for this raw body."""
    return base64.b64encode(_digest(secret, body)).decode("ascii")


def _claimed_digest(header_value: str) -> bytes | None:
    """The 32 bytes a header claims, read as hex (64 hex digits) or as base64; None when it is neither."""
    text = header_value.strip()
    if len(text) == 64:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    try:
        # The URL-safe alphabet is accepted too; after mapping it, decoding is strict (no characters dropped).
        decoded = base64.b64decode(text.replace("-", "+").replace("_", "/").encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None
    if len(decoded) == 32:
        return decoded
    return None


class WebhookVerifier:
    """Checks X-Genstore-Hmac-Sha256 against a set of secrets, each keyed once.

    It holds HMAC states already keyed with the secrets, not the secrets' text: a process can keep one per store
    between deliveries without repeating the key setup (or a decryption) per delivery, and without a plaintext
    secret lying in its memory. Comparison is constant-time (hmac.compare_digest over the raw digests), whichever
    encoding was sent, and every secret is tried, so the time taken does not tell which one matched.
    """

    __slots__ = ("_keyed",)

    def __init__(self, secrets: Sequence[str]) -> None:
        self._keyed = tuple(hmac.new(s.encode("utf-8"), digestmod=hashlib.sha256) for s in secrets if s)

    def __bool__(self) -> bool:
        return bool(self._keyed)

    def verify(self, body: bytes, header_value: str | None) -> bool:
        if not header_value or not self._keyed:
            return False
        claimed = _claimed_digest(header_value)
        if claimed is None:
            return False
        matched = False
        for keyed in self._keyed:
            mac = keyed.copy()
            mac.update(body)
            if hmac.compare_digest(mac.digest(), claimed):
                matched = True
        return matched


def verify_webhook_hmac(secrets: Sequence[str], body: bytes, header_value: str | None) -> bool:
    """True when the header is the HMAC of the raw body under any of the (non-empty) secrets."""
    return WebhookVerifier(secrets).verify(body, header_value)


def _raw_query_pairs(query: str) -> list[tuple[str, str]]:
    """Split a raw query string without URL-decoding (the signature covers the values as sent)."""
    pairs = []
    for part in query.lstrip("?").split("&"):
        if part:
            key, _, value = part.partition("=")
            pairs.append((key, value))
    return pairs


def verify_install_hmac(
    secret: str,
    query: Mapping[str, str] | str,
    *,
    max_age_seconds: float | None = None,
    now: float | None = None,
) -> bool:
    """Check an install/launch request's `hmac` query parameter (Part A).

    `query` is either the raw query string (preferred: values are signed as sent, not URL-decoded) or a mapping of
    parameter to value. With `max_age_seconds`, the `timestamp` parameter (seconds or milliseconds since the epoch)
    must also be that recent, which stops a captured link from being replayed later.
    """
    if not secret:
        return False
    pairs = _raw_query_pairs(query) if isinstance(query, str) else [(str(k), str(v)) for k, v in query.items()]
    given = [value for key, value in pairs if key == "hmac"]
    if len(given) != 1 or not given[0]:
        return False
    message = "&".join(f"{key}={value}" for key, value in sorted(p for p in pairs if p[0] != "hmac"))
    expected = hmac.new(secret.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode("ascii"), given[0].strip().lower().encode("utf-8", "replace")):
        return False
    if max_age_seconds is None:
        return True
    stamp = dict(pairs).get("timestamp", "")
    try:
        seconds = float(stamp)
    except ValueError:
        return False
    if seconds > 10**11:  # milliseconds
        seconds /= 1000
    current = time.time() if now is None else now
    return abs(current - seconds) <= max_age_seconds
