"""Which secrets may sign a store's webhooks. The signature scheme itself lives in the Genstore client module
(contract Part B: base64 or hex HMAC-SHA256 of the raw body, compared in constant time)."""

from __future__ import annotations

from oma.genstore.webhooks import verify_webhook_hmac
from oma.stores.models import Store


def store_webhook_secrets(store: Store) -> list[str]:
    """The current client secret, then the previous one while a rotation completes."""
    return [secret for secret in (store.client_secret, store.previous_client_secret) if secret]


def delivery_signature_valid(*, store: Store, body: bytes, header_value: str, current_only: bool = False) -> bool:
    secrets = [store.client_secret] if current_only else store_webhook_secrets(store)
    if not secrets or not header_value:
        return False
    return verify_webhook_hmac(secrets, body, header_value)
