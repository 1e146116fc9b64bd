"""Which secrets may sign a store's webhooks. The signature scheme itself lives in the Genstore client module
(contract Part B: base64 or hex HMAC-SHA256 of the raw body, compared in constant time)."""

from __future__ import annotations

from webhooks.selectors import WebhookStore


def delivery_signature_valid(
    *, store: WebhookStore, body: bytes, header_value: str, current_only: bool = False
) -> bool:
    """True when `header_value` signs `body` with the store's current client secret, or (unless `current_only`)
    with the previous one while a rotation completes."""
    verifier = store.current_secret if current_only else store.any_secret
    return verifier.verify(body, header_value)
