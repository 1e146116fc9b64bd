"""Redaction of secrets and customer personal data from any text bound for a log.

Two nets, because neither alone is enough:

* **Known values.** Every secret this process has held in plaintext is registered (`register_secret`): the
  encrypted model fields as instances load (see oma.ops.signals), and the process's own settings secrets. Any
  occurrence of such a value is replaced, whatever surrounds it (an exception message, a URL, a repr of a dict).
* **Shapes.** Values after a secret-looking name (`Authorization: ...`, `"access_token": "..."`, `hmac=...`,
  `X-Genstore-Access-Token`, `X-Genstore-Hmac-Sha256`, `Bearer ...`), e-mail addresses and phone numbers are
  replaced even when the value was never registered (a customer's e-mail in a payload, a header a proxy added).
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
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/@\s]*:)([^@\s/]+)@")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
_EMAIL = re.compile(r"(?i)(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# International numbers (+1 555 010 0199, +44 20 7946 0958) and North American ones written with separators
# ((555) 010-0199, 555-010-0199, 555.010.0199). Bare digit runs are left alone: order ids and tracking numbers.
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[\s.-]?(?:\(\d{1,4}\)[\s.-]?)?\d{1,4}(?:[\s.-]?\d{2,4}){1,4}"
    r"|\(\d{3}\)\s?\d{3}[\s.-]\d{4}|\d{3}[.-]\d{3}[.-]\d{4})(?![\w])"
)


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


def _named_value(match: re.Match[str]) -> str:
    name, separator, scheme, value = match.groups()
    if value.startswith("["):  # already a placeholder
        return match.group(0)
    return f"{name}{separator}{scheme or ''}{REDACTED}"


def redact(text: str) -> str:
    """`text` with secrets, e-mail addresses and phone numbers replaced by placeholders."""
    if not text:
        return text
    pattern = _known.pattern()
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    lowered = text.lower()
    # Cheap substring tests first: most lines name no secret, and the named-value pattern is the costly one.
    if any(word in lowered for word in _NAME_WORDS):
        text = _NAMED_VALUE.sub(_named_value, text)
    if "://" in text:
        text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
    if "bearer" in lowered or "basic" in lowered:
        text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    if "@" in text:
        text = _EMAIL.sub(EMAIL_REDACTED, text)
    return _PHONE.sub(PHONE_REDACTED, text)
