"""Webhook and install-request signatures (the topic list: test_topics.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from oma.genstore.webhooks import (
    compute_webhook_hmac,
    verify_install_hmac,
    verify_webhook_hmac,
)

BODY = b'{"order":{"orderId":"1001","financialStatus":"paid"}}'


def test_compute_is_base64_of_hmac_sha256_over_the_raw_body():
    expected = base64.b64encode(hmac.new(b"s3cret", BODY, hashlib.sha256).digest()).decode()
    assert compute_webhook_hmac("s3cret", BODY) == expected


def test_verify_accepts_base64_and_hex():
    digest = hmac.new(b"s3cret", BODY, hashlib.sha256).digest()
    assert verify_webhook_hmac(["s3cret"], BODY, base64.b64encode(digest).decode())
    assert verify_webhook_hmac(["s3cret"], BODY, digest.hex())
    assert verify_webhook_hmac(["s3cret"], BODY, digest.hex().upper())
    assert verify_webhook_hmac(["s3cret"], BODY, " " + base64.b64encode(digest).decode() + " ")
    assert verify_webhook_hmac(["s3cret"], BODY, base64.urlsafe_b64encode(digest).decode())


def test_verify_accepts_any_of_the_secrets_during_rotation():
    signed_with_old = compute_webhook_hmac("old-secret", BODY)
    assert verify_webhook_hmac(["new-secret", "old-secret"], BODY, signed_with_old)
    assert not verify_webhook_hmac(["new-secret"], BODY, signed_with_old)


@pytest.mark.parametrize("header", [None, "", "not-a-signature", "4iiJ", "00" * 32, "=" * 44])
def test_verify_rejects_missing_or_malformed_headers(header):
    assert not verify_webhook_hmac(["s3cret"], BODY, header)


def test_verify_rejects_a_tampered_body():
    signature = compute_webhook_hmac("s3cret", BODY)
    assert not verify_webhook_hmac(["s3cret"], BODY.replace(b"paid", b"refunded"), signature)


def test_empty_secrets_never_match():
    signature = compute_webhook_hmac("", BODY)
    assert not verify_webhook_hmac(["", ""], BODY, signature)  # an unset previous secret must not open the door


def _install_hmac(secret: str, message: str) -> str:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def test_install_hmac_from_a_mapping():
    params = {"shop": "shop1.genmystore.com", "shopId": "42", "timestamp": "1733047200"}
    signature = _install_hmac("client-secret", "shop=shop1.genmystore.com&shopId=42&timestamp=1733047200")
    assert verify_install_hmac("client-secret", {**params, "hmac": signature})
    assert not verify_install_hmac("other-secret", {**params, "hmac": signature})
    assert not verify_install_hmac("client-secret", {**params, "shopId": "43", "hmac": signature})
    assert not verify_install_hmac("client-secret", params)  # no hmac at all


def test_install_hmac_from_the_raw_query_signs_values_as_sent():
    # Values are not URL-decoded before signing: "a%20b" is signed as those five characters.
    message = "extra=a%20b&shop=shop1.genmystore.com&timestamp=1733047200"
    signature = _install_hmac("client-secret", message)
    raw = f"timestamp=1733047200&hmac={signature}&shop=shop1.genmystore.com&extra=a%20b"
    assert verify_install_hmac("client-secret", raw)
    assert verify_install_hmac("client-secret", "?" + raw)
    assert not verify_install_hmac("client-secret", raw.replace("a%20b", "a b"))


def test_install_hmac_freshness_when_asked():
    message = "shop=s&timestamp=1733047200"
    query = {"shop": "s", "timestamp": "1733047200", "hmac": _install_hmac("k", message)}
    assert verify_install_hmac("k", query, max_age_seconds=300, now=1733047200 + 60)
    assert not verify_install_hmac("k", query, max_age_seconds=300, now=1733047200 + 3600)
    millis = {"shop": "s", "timestamp": "1733047200000"}
    millis["hmac"] = _install_hmac("k", "shop=s&timestamp=1733047200000")
    assert verify_install_hmac("k", millis, max_age_seconds=300, now=1733047200 + 60)


def test_install_hmac_with_empty_secret_is_refused():
    assert not verify_install_hmac("", {"shop": "s", "hmac": _install_hmac("", "shop=s")})

