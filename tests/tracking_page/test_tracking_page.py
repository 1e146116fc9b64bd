"""The customer tracking page: lookup, signed link, what it shows and what it never reveals."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from oma.merchant.tokens import tracking_token_for
from tests.tracking_page.conftest import Tracked
from tracking.models import TrackingEvent

pytestmark = pytest.mark.django_db


def _lookup(client, order: str, email: str, **extra):
    return client.post(reverse("track:lookup"), {"order": order, "email": email}, **extra)


def _visible(html: str) -> str:
    """The page without what legitimately differs between two renders (CSRF token, CSP nonce, echoed input)."""
    html = re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", html)
    html = re.sub(r'nonce="[^"]*"', "", html)
    return re.sub(r'value="[^"]*"', "", html)


def test_lookup_by_number_and_email_shows_the_sandbox_orders_timeline(client, tracked_order: Tracked):
    order, shipment = tracked_order.order, tracked_order.shipment
    response = _lookup(client, f"#{order.order_id}", order.email.upper())
    assert response.status_code == 303
    assert response["Location"] == reverse("track:order", args=[tracking_token_for(order)])

    page = client.get(response["Location"])
    assert page.status_code == 200
    html = page.content.decode()
    assert f"Order {order.name or '#' + order.order_id}" in html
    assert shipment.tracking_number in html
    # Every carrier event, newest first, in the order the carrier sandbox reported them.
    events = list(TrackingEvent.objects.filter(shipment=shipment).order_by("-occurred_at", "-pk"))
    assert events
    positions = [html.index(event.occurred_at.strftime("%a %-d %b, %H:%M")) for event in events]
    assert positions == sorted(positions)
    for event in events:
        if event.raw_text:
            assert event.raw_text in html
    timeline = page.context["page"].parcels[0].timeline
    assert [entry.occurred_at for entry in timeline] == [event.occurred_at for event in events]


def test_wrong_email_and_unknown_order_get_the_same_answer(client, tracked_order: Tracked):
    order = tracked_order.order
    wrong_email = _lookup(client, order.order_id, "someone.else@example.com")
    unknown_order = _lookup(client, "99999999", order.email)
    assert wrong_email.status_code == unknown_order.status_code == 200
    assert _visible(wrong_email.content.decode()) == _visible(unknown_order.content.decode())
    html = wrong_email.content.decode()
    assert "couldn&#x27;t find an order" in html or "couldn't find an order" in html
    assert order.email not in html and order.email.lower() not in html
    assert tracked_order.shipment.tracking_number not in html


def test_a_tampered_token_is_refused(client, tracked_order: Tracked):
    token = tracking_token_for(tracked_order.order)
    body, signature = token.rsplit(":", 1)
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    for bad in (f"{body}:{flipped}", body, token[:-3], "garbage", f"{body}x:{signature}"):
        response = client.get(reverse("track:order", args=[bad]))
        assert response.status_code == 404, bad
        assert tracked_order.shipment.tracking_number not in response.content.decode()


def test_a_token_of_another_salt_is_refused(client, tracked_order: Tracked):
    from django.core import signing

    forged = signing.Signer(salt="something.else").sign_object([tracked_order.store.pk, tracked_order.order.pk])
    assert client.get(reverse("track:order", args=[forged])).status_code == 404


def test_lookups_are_rate_limited_per_client(client, tracked_order: Tracked, settings):
    settings.OMA_TRACK_LOOKUPS_PER_WINDOW = 3
    for _ in range(3):
        assert _lookup(client, "1", "a@example.com", REMOTE_ADDR="203.0.113.7").status_code == 200
    blocked = _lookup(client, tracked_order.order.order_id, tracked_order.order.email, REMOTE_ADDR="203.0.113.7")
    assert blocked.status_code == 429
    assert int(blocked["Retry-After"]) > 0
    # Even the right answer is withheld while blocked; another client is unaffected.
    assert "Location" not in blocked
    other = _lookup(client, tracked_order.order.order_id, tracked_order.order.email, REMOTE_ADDR="203.0.113.8")
    assert other.status_code == 303


def test_ipv6_clients_count_by_their_64(client, tracked_order: Tracked, settings):
    settings.OMA_TRACK_LOOKUPS_PER_WINDOW = 2
    assert _lookup(client, "1", "a@example.com", REMOTE_ADDR="2001:db8:1:2::1").status_code == 200
    assert _lookup(client, "1", "a@example.com", REMOTE_ADDR="2001:db8:1:2::99").status_code == 200
    assert _lookup(client, "1", "a@example.com", REMOTE_ADDR="2001:db8:1:2:ffff::5").status_code == 429


def test_the_page_is_self_contained_and_private(client, tracked_order: Tracked):
    response = client.get(reverse("track:order", args=[tracking_token_for(tracked_order.order)]))
    html = response.content.decode()
    assert not re.search(r'<(script|link|img|iframe)[^>]+(src|href)="(https?:)?//', html)
    assert "<link" not in html
    csp = response["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'nonce-" in csp
    assert response["Referrer-Policy"] == "same-origin"
    assert "no-store" in response["Cache-Control"]
    assert tracked_order.order.email not in html
    assert 'name="viewport"' in html and '<html lang="en">' in html
    # The carrier link opens the carrier's site without handing it our token.
    assert re.search(r'<a href="https://[^"]+" rel="noreferrer noopener"', html)


def test_the_page_never_calls_genstore(client, tracked_order: Tracked):
    from oma.genstore.client import GenstoreClient

    calls = []
    original = GenstoreClient.__init__

    def spy(self, *args, **kwargs):
        calls.append(1)
        original(self, *args, **kwargs)

    GenstoreClient.__init__ = spy
    try:
        assert client.get(reverse("track:order", args=[tracking_token_for(tracked_order.order)])).status_code == 200
        assert _lookup(client, tracked_order.order.order_id, tracked_order.order.email).status_code == 303
    finally:
        GenstoreClient.__init__ = original
    assert calls == []


def test_store_scoped_lookup_finds_only_that_stores_orders(client, tracked_order: Tracked):
    from tests.tracking.conftest import make_store

    other = make_store("elsewhere.genmystore.com")
    order = tracked_order.order
    url = reverse("track:lookup") + f"?store={other.domain}"
    assert client.post(url, {"order": order.order_id, "email": order.email}).status_code == 200
    url = reverse("track:lookup") + f"?store={order.store.domain}"
    assert client.post(url, {"order": order.order_id, "email": order.email}).status_code == 303


def test_an_order_without_email_is_never_found_by_lookup(client, tracked_order: Tracked):
    order = tracked_order.order
    type(order).objects.filter(pk=order.pk).update(email="")
    assert _lookup(client, order.order_id, "").status_code == 200
    assert _lookup(client, order.order_id, "x@example.com").status_code == 200
