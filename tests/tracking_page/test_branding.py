"""The tracking page in the store's name, logo and colour; logos are raster images only, served from OMA."""

from __future__ import annotations

import base64

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from oma.merchant.admin_stores import StoreBrandingForm
from oma.merchant.models import StoreBranding
from oma.merchant.tokens import tracking_token_for
from oma.merchant.tracking_page import readable_text_on
from tests.admin.factories import OrderFactory, ShipmentFactory, StoreFactory, TrackingEventFactory
from tests.admin.world import merchant

pytestmark = pytest.mark.django_db
# A 1x1 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def _brand(store, upload: bytes, name: str = "logo.png", **fields) -> StoreBrandingForm:
    data = {"display_name": "Teapot Emporium", "accent_colour": "#f5c400", "support_email": "help@teapots.example",
            "support_url": "", **fields}
    form = StoreBrandingForm(data=data, files={"logo_upload": SimpleUploadedFile(name, upload)},
                             instance=StoreBranding(store=store))
    return form


def test_the_page_wears_the_stores_branding(client):
    store = StoreFactory()
    form = _brand(store, PNG)
    assert form.is_valid(), form.errors
    branding = form.save()
    order = OrderFactory(store=store)
    ShipmentFactory(order=order)
    html = client.get(reverse("track:order", args=[tracking_token_for(order)])).content.decode()
    assert "Teapot Emporium" in html
    assert "--accent: #f5c400" in html and "--on-accent: #111111" in html  # dark text on a light accent
    logo_url = reverse("track:logo", args=[store.pk, branding.logo_sha256[:16]])
    assert f'src="{logo_url}"' in html
    assert "help@teapots.example" in html

    logo = client.get(logo_url)
    assert logo.status_code == 200 and logo["Content-Type"] == "image/png" and logo.content == PNG
    assert "immutable" in logo["Cache-Control"] and logo["X-Content-Type-Options"] == "nosniff"
    assert client.get(reverse("track:logo", args=[store.pk, "0" * 16])).status_code == 404


@pytest.mark.parametrize(("payload", "name"), [
    (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "logo.svg"),
    (b"<html>hello</html>", "logo.png"),
    (PNG + b"\0" * (256 * 1024), "big.png"),
])
def test_only_small_raster_logos_are_accepted(payload, name):
    form = _brand(StoreFactory(), payload, name)
    assert not form.is_valid() and "logo_upload" in form.errors


def test_contrast_picks_readable_text():
    assert readable_text_on("#000000") == "#ffffff"
    assert readable_text_on("#ffffff") == "#111111"
    assert readable_text_on("#2f5d8a") == "#ffffff"


def test_the_store_page_offers_branding_and_alert_settings(client):
    store = StoreFactory()
    client.force_login(merchant("brander", store))
    html = client.get(reverse("admin:stores_store_change", args=[store.pk])).content.decode()
    assert 'enctype="multipart/form-data"' in html
    assert 'name="branding-0-logo_upload"' in html and 'name="alert_policy-0-stuck_after_days"' in html


def test_the_page_costs_the_same_queries_however_many_parcels_and_scans(client):
    store = StoreFactory()
    order = OrderFactory(store=store)
    first = ShipmentFactory(order=order)
    TrackingEventFactory(shipment=first)

    def count() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(reverse("track:order", args=[tracking_token_for(order)])).status_code == 200
        return len(captured.captured_queries)

    small = count()
    for _ in range(4):
        shipment = ShipmentFactory(order=order)
        TrackingEventFactory.create_batch(10, shipment=shipment)
    assert count() == small
