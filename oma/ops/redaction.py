"""Redaction of secrets and customer personal data from any text bound for a log.

Two nets, because neither alone is enough:

* **Known values.** Every secret this process has held in plaintext is registered (`register_secret`): the
  encrypted model fields as instances load (see oma.ops.signals), and the process's own settings secrets. Any
  occurrence of such a value is replaced, whatever surrounds it (an exception message, a URL, a repr of a dict).
* **Shapes.** Values after a secret-looking name (`Authorization: ...`, `"access_token": "..."`, `hmac=...`,
  `X-Genstore-Access-Token`, `X-Genstore-Hmac-Sha256`, `17token`, `Bearer ...`), whole signature headers
  (`webhook-signature: v1,<hmac> v1a,<sig>`), Standard Webhooks secrets (`whsec_...`), e-mail addresses (also
  non-ASCII or written `%40`) and phone numbers are replaced even when the value was never registered (a
  customer's e-mail in a payload, a header a proxy added, a channel secret this process never decrypted).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Iterable

REDACTED = "[redacted]"
EMAIL_REDACTED = "[email]"
PHONE_REDACTED = "[phone]"

# Shorter values would also match ordinary words and ids; no real secret is this short.
MIN_SECRET_LENGTH = 8
MAX_KNOWN_SECRETS = 10_000

_SECRET_NAMES = (
    r"authorization|proxy-authorization|cookie|set-cookie"
    r"|x-genstore-access-token|x-genstore-hmac-sha256|x-[a-z0-9-]*(?:hmac|signature|api-key|token)[a-z0-9-]*"
    r"|17token"
    r"|webhook-signature|[a-z0-9_]*(?:access|refresh|api|auth|oauth|bearer|id)[_-]?token"
    r"|[a-z0-9_]*(?:client|api|signing|webhook|app)?[_-]?secret[a-z0-9_]*"
    r"|api[_-]?key|apikey|password|passwd|hmac(?:[_-]?sha256)?|signature|token"
)
# Every name in _SECRET_NAMES contains one of these.
_NAME_WORDS = ("auth", "cookie", "token", "secret", "key", "hmac", "signature", "password", "passwd")
# name, separator (quotes, colon or equals), optional scheme word, then the value up to a delimiter.
_NAMED_VALUE = re.compile(
    rf"(?i)\b({_SECRET_NAMES})(['\"]?\s*[:=]\s*['\"]?|['\"]?\s*,\s*['\"])((?:bearer|basic|token)\s+)?([^\s'\",;&)}}\]]+)"
)
# A signature header carries one or more space-separated `scheme,value` items (Standard Webhooks: `v1,<hmac>`,
# `v1a,<ed25519>`; others `t=...,v1=...`): its whole value goes, not just the text before the first comma.
_SIGNATURE_VALUE = re.compile(
    r"(?i)\b([a-z0-9_-]*signature[a-z0-9_-]*)(['\"]?\s*[:=]\s*['\"]?|['\"]?\s*,\s*['\"])"
    r"([^\s'\";&)}\]]+(?:\s+[a-z0-9]{1,8}[,=][^\s'\";&)}\]]+)*)"
)
_SECRET_NAME = re.compile(rf"(?i)(?:{_SECRET_NAMES})")
# A name containing one of these holds a secret too (`EMAIL_HOST_PASSWORD`, `csrftoken`, `OMA_ENCRYPTION_KEYS`).
_SECRET_NAME_PARTS = ("password", "passwd", "secret", "token", "hmac", "signature", "authorization", "cookie",
                      "api_key", "apikey", "api-key", "encryption_key", "private_key")
# Secrets recognisable by their prefix wherever they appear: Standard Webhooks signing secrets.
_PREFIXED_SECRET = re.compile(r"\bwhsec_[A-Za-z0-9+/=_-]{8,}")
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/@\s]*:)([^@\s/]+)@")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
# Unicode local parts and domains (jöhn@exämple.de), and the `%40` of a URL-encoded address in a query string.
_EMAIL = re.compile(
    r"(?i)(?<![\w.%+-])[\w.%+-]+(?:@|%40)[\w-]+(?:\.[\w-]+)*\.(?:[^\W\d_]{2,}|xn--[a-z0-9-]+)"
)
_PHONE_SEPARATOR = r"[ \u00a0.-]"
# International numbers (+1 415 555 0100, +44 20 7946 0958, +1 (415) 555-0100): `+`, then digit groups. How many
# groups belong to the number is decided by counting digits (_international_phone), so that an order id or a year
# written after it is kept. A country code never starts with 0 (a time-zone offset, +0000, is no number).
_INTERNATIONAL_PHONE = re.compile(rf"(?<![\w+])\+[1-9][\d()]*(?:{_PHONE_SEPARATOR}[\d()]+)*")
_PHONE_GROUP = re.compile(rf"{_PHONE_SEPARATOR}?[\d()]+")
# North American numbers without a country code: (415) 555-0100, 415-555-0100, 415.555.0100, and with spaces only
# (415 555 0100) when area code and exchange are valid (they start with 2-9), so that a run of counts is left alone.
# Bare digit runs are left alone too: order ids and tracking numbers.
_NATIONAL_PHONE = re.compile(
    r"(?<![\w+.-])(?:\(\d{3}\)[ \u00a0]?\d{3}[ \u00a0.-]\d{4}|\d{3}([.-])\d{3}\1\d{4}"
    r"|(?<!\d )[2-9]\d{2} [2-9]\d{2} \d{4})(?![\w.-]?\d)"
)
# E.164: at most 15 digits with the country code; fewer than 8 is a price or a count (+12.50), not a number.
_PHONE_MIN_DIGITS, _PHONE_MAX_DIGITS = 8, 15
_NANP_DIGITS = 11  # +1 and ten digits


def _international_phone(match: re.Match[str]) -> str:
    """`[phone]` for the digit groups that make up the number; the groups after it (an id, a year) are kept."""
    text = match.group(0)
    north_american = text.startswith("+1")  # the only country code starting with 1: always ten more digits
    limit = _NANP_DIGITS if north_american else _PHONE_MAX_DIGITS
    digits, end = 0, 0
    for group in _PHONE_GROUP.finditer(text):
        count = sum(char.isdigit() for char in group.group(0))
        if digits + count > limit:
            break
        digits, end = digits + count, group.end()
    if digits < (_NANP_DIGITS if north_american else _PHONE_MIN_DIGITS):
        return text
    return PHONE_REDACTED + text[end:]


class _KnownSecrets:
    """Plaintext secrets seen by this process, matched longest first by one compiled alternation."""

    def __init__(self) -> None:
        self._values: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None

    def add(self, value: str) -> None:
        with self._lock:
            if value in self._values:
                self._values.move_to_end(value)
                return
            self._values[value] = None
            while len(self._values) > MAX_KNOWN_SECRETS:
                self._values.popitem(last=False)
            self._pattern = None

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._pattern = None

    def pattern(self) -> re.Pattern[str] | None:
        pattern = self._pattern
        if pattern is None:
            with self._lock:
                if not self._values:
                    return None
                ordered = sorted(self._values, key=len, reverse=True)
                pattern = self._pattern = re.compile("|".join(re.escape(value) for value in ordered))
        return pattern


_known = _KnownSecrets()


def register_secret(value: object) -> None:
    """Remember a plaintext secret: from now on it is redacted wherever it appears in this process's logs."""
    if isinstance(value, str):
        value = value.strip()
        if len(value) >= MIN_SECRET_LENGTH:
            _known.add(value)


def register_secrets(values: Iterable[object]) -> None:
    for value in values:
        register_secret(value)


def forget_known_secrets() -> None:
    """Tests only: start from an empty registry."""
    _known.clear()


def _signature_value(match: re.Match[str]) -> str:
    name, separator, value = match.groups()
    if value.startswith("["):  # already a placeholder
        return match.group(0)
    return f"{name}{separator}{REDACTED}"


def _named_value(match: re.Match[str]) -> str:
    name, separator, scheme, value = match.groups()
    if value.startswith("["):  # already a placeholder
        return match.group(0)
    return f"{name}{separator}{scheme or ''}{REDACTED}"


def is_secret_name(name: str) -> bool:
    """Whether a value stored under this name is a secret as a whole: a header (`Authorization`,
    `X-Genstore-Hmac-Sha256`), a field or a variable (`access_token`, `client_secret`, `password`)."""
    lowered = name.strip().lower()
    return _SECRET_NAME.fullmatch(lowered) is not None or any(part in lowered for part in _SECRET_NAME_PARTS)


def redact(text: str) -> str:
    """`text` with secrets, e-mail addresses and phone numbers replaced by placeholders."""
    if not text:
        return text
    pattern = _known.pattern()
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    lowered = text.lower()
    # Cheap substring tests first: most lines name no secret, and the named-value pattern is the costly one.
    if "whsec_" in text:
        text = _PREFIXED_SECRET.sub(REDACTED, text)
    if "signature" in lowered:
        text = _SIGNATURE_VALUE.sub(_signature_value, text)
    if any(word in lowered for word in _NAME_WORDS):
        text = _NAMED_VALUE.sub(_named_value, text)
    if "://" in text:
        text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
    if "bearer" in lowered or "basic" in lowered:
        text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    if "@" in text or "%40" in text:
        text = _EMAIL.sub(EMAIL_REDACTED, text)
    if "+" in text:
        text = _INTERNATIONAL_PHONE.sub(_international_phone, text)
    return _NATIONAL_PHONE.sub(PHONE_REDACTED, text)
