"""Genstore-shaped webhook bodies and signatures for the webhook tests (the contract, written out independently)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

SHOP = "shop1.genmystore.com"
OTHER_SHOP = "shop2.genmystore.com"
SECRET = "test-client-secret-current-0123456789"
PREVIOUS_SECRET = "test-client-secret-previous-9876543210"
OTHER_SECRET = "test-client-secret-of-shop2-abcdefabcdef"
CUSTOMER_EMAIL = "jane.doe.customer@example.com"
BASE_TIME = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def sign(body: bytes, secret: str, *, hex_form: bool = False) -> str:
    digest = hmac.new(secret.encode(), body, hashlib.sha256)
    return digest.hexdigest() if hex_form else base64.b64encode(digest.digest()).decode()


def encode(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def order_json(
    order_id: str,
    *,
    version: int = 1,
    financial_status: str = "paid",
    line_items: bool = True,
    updated_at: datetime | None = None,
    cancelled: bool = False,
    email: str = CUSTOMER_EMAIL,
) -> dict[str, Any]:
    """One order as Genstore sends it; `version` moves updatedAt forward and changes the total."""
    updated = updated_at or BASE_TIME + timedelta(minutes=version)
    order: dict[str, Any] = {
        "orderId": order_id,
        "id": f"9{order_id}",
        "name": f"#{order_id}",
        "financialStatus": financial_status,
        "fulfillmentStatus": None,
        "createdAt": BASE_TIME.isoformat(),
        "updatedAt": updated.isoformat(),
        "email": email,
        "phone": "+1 555 0100",
        "customer": {"id": "c-1", "email": email, "firstName": "Jane", "lastName": "Doe"},
        "shippingAddress": {"firstName": "Jane", "lastName": "Doe", "address1": "1 Main St", "city": "Springfield"},
        "totalPrice": f"{10 + version}.00",
        "currency": "USD",
        "sourceName": "web",
        "note": f"version {version}",
    }
    if line_items:
        order["lineItems"] = [
            {"id": f"{order_id}-1", "sku": "SKU-A", "title": "Mug", "quantity": "1", "price": "10.00",
             "requiresShipping": True, "fulfillableQuantity": 1},
            {"id": f"{order_id}-2", "sku": "SKU-B", "title": "Tee", "quantity": 2, "price": "5.00",
             "requiresShipping": True, "fulfillableQuantity": 2},
        ]
    if cancelled:
        order["cancelledAt"] = updated.isoformat()
        order["cancelReason"] = "customer"
    return {"order": order}


def refund_json(order_id: str, refund_id: str = "r-1", amount: str = "5.00") -> dict[str, Any]:
    return {"refund": {"refundId": refund_id, "orderId": order_id, "amount": amount, "currency": "USD",
                       "createTime": (BASE_TIME + timedelta(hours=1)).isoformat()}}


def nested_json(depth: int) -> bytes:
    return b'{"order":' + b"[" * depth + b"]" * depth + b"}"
