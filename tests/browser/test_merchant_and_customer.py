"""In a real browser: a merchant logs in, filters orders and opens a timeline; a customer looks up an order."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.admin.factories import LineItemFactory, OrderFactory, ShipmentFactory, StoreFactory, TrackingEventFactory
from tests.admin.world import merchant
from tests.browser.conftest import screenshot

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def shop():
    store = StoreFactory(domain="teapots.genmystore.com", name="Teapot Emporium")
    hidden = StoreFactory(domain="rival.genmystore.com", name="Rival Shop")
    now = timezone.now()
    calm = OrderFactory(store=store, order_id="1001", name="#1001", unified_status="in_transit")
    ShipmentFactory(order=calm, tracking_number="1ZCALM0000000001", carrier="ups", status="in_transit")
    problem = OrderFactory(store=store, order_id="1002", name="#1002", unified_status="delivery_issue",
                           email="pat@example.com")
    LineItemFactory(order=problem, title="Cast-iron teapot")
    shipment = ShipmentFactory(order=problem, tracking_number="1ZPROBLEM00000001", carrier="ups",
                               status="attempt_failed", substatus="recipient_unavailable",
                               last_event_at=now - timedelta(hours=2))
    TrackingEventFactory(shipment=shipment, occurred_at=now - timedelta(days=2), status="info_received",
                         raw_text="Shipper created a label", location="Portland, OR, US")
    TrackingEventFactory(shipment=shipment, occurred_at=now - timedelta(days=1), status="in_transit",
                         raw_text="Departed from facility", location="Louisville, KY, US")
    TrackingEventFactory(shipment=shipment, occurred_at=now - timedelta(hours=2), status="attempt_failed",
                         raw_text="Customer not available", location="Boston, MA, US")
    OrderFactory(store=hidden, order_id="9009", name="#9009", unified_status="delivery_issue")
    merchant("teapots", store)
    return store


def test_merchant_logs_in_filters_orders_and_opens_a_timeline(live_server, page, shop):
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "teapots")
    page.fill("#id_password", "pw-teapots")
    page.click("input[type=submit]")
    page.wait_for_selector("#oma-dashboard-link")
    screenshot(page, "merchant-01-index")

    page.click("a[href='/admin/orders/order/']")
    page.wait_for_selector("#result_list")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 2
    assert "#9009" not in page.content()  # the rival store's order

    page.click("#changelist-filter a[href*='exception=carrier']")
    page.wait_for_selector("#result_list")
    assert page.locator("#result_list tbody tr").count() == 1
    assert "Delivery issue" in page.locator("#result_list").inner_text()
    screenshot(page, "merchant-02-filtered")

    page.click("#result_list tbody tr th a")
    page.wait_for_selector("#shipments-and-timeline")
    timeline = page.locator("#shipments-and-timeline .oma-timeline li")
    assert timeline.count() == 3
    assert "Customer not available" in timeline.nth(0).inner_text()  # newest first
    assert "Shipper created a label" in timeline.nth(2).inner_text()
    screenshot(page, "merchant-03-order-timeline")

    page.goto(f"{live_server.url}/admin/dashboard/")
    page.wait_for_selector("#orders-by-status svg.oma-chart")
    assert "Rival" not in page.content()
    screenshot(page, "merchant-04-dashboard")


def test_customer_looks_up_an_order_on_a_phone(live_server, phone, shop):
    phone.goto(f"{live_server.url}/track/?store=teapots.genmystore.com")
    assert phone.locator("label[for=id_order]").inner_text() == "Order number"
    phone.fill("#id_order", "1002")
    phone.fill("#id_email", "wrong@example.com")
    phone.click("button[type=submit]")
    phone.wait_for_selector("[role=alert]")
    assert "couldn't find an order" in phone.locator("[role=alert]").inner_text()
    screenshot(phone, "customer-01-not-found")

    phone.fill("#id_email", "PAT@example.com")
    phone.click("button[type=submit]")
    phone.wait_for_selector("section.parcel")
    assert "/track/" in phone.url and phone.url.rstrip("/") != f"{live_server.url}/track"
    text = phone.locator("main").inner_text()
    assert "Order #1002" in text and "Delivery attempted" in text and "Cast-iron teapot" in text
    assert "Recipient not available" in text
    items = phone.locator("ol.timeline li")
    assert items.count() == 3 and "Customer not available" in items.nth(0).inner_text()
    assert phone.locator("ol.steps li[aria-current=step]").inner_text() == "Out for delivery"
    # Fits the phone's width: nothing scrolls sideways.
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    screenshot(phone, "customer-02-tracking-page")

    # The link is permanent: opening it again in a fresh visit shows the same page.
    url = phone.url
    phone.goto(url)
    assert "Order #1002" in phone.locator("h1").inner_text()


def test_merchant_brands_the_tracking_page(live_server, page, shop, tmp_path):
    import base64

    from oma.merchant.models import StoreBranding

    logo = tmp_path / "logo.png"
    logo.write_bytes(base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="))
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "teapots")
    page.fill("#id_password", "pw-teapots")
    page.click("input[type=submit]")
    page.goto(f"{live_server.url}/admin/stores/store/{shop.pk}/change/")
    page.fill("#id_branding-0-display_name", "The Teapot Emporium")
    page.set_input_files("#id_branding-0-logo_upload", str(logo))
    page.fill("#id_alert_policy-0-recipients", "ops@teapots.example")
    page.click("input[name=_continue]")
    page.wait_for_selector(".messagelist .success")
    screenshot(page, "merchant-05-branding")
    branding = StoreBranding.objects.get(store=shop)
    assert branding.display_name == "The Teapot Emporium" and branding.logo_content_type == "image/png"
    assert shop.alert_policy.recipient_list == ["ops@teapots.example"]

    page.goto(f"{live_server.url}/track/?store={shop.domain}")
    assert page.locator("header.brand .name").inner_text() == "The Teapot Emporium"
    assert page.evaluate("document.querySelector('header.brand img').naturalWidth") == 1  # served by OMA
