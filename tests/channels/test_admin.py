"""Channel admin pages render, create channels through the service, and act on records."""

from __future__ import annotations

import pytest

from oma.channels.connectors.base import ExternalShipmentRecord
from oma.channels.models import Channel, ExternalShipment
from oma.channels.services import channel_create, external_shipments_receive

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_for(client, django_user_model):
    user = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return client


def test_lists_and_detail_pages_render(admin_client_for, store):
    channel = channel_create(store=store, kind="webhook", name="Hook")
    external_shipments_receive(channel=channel, records=[
        ExternalShipmentRecord(external_order_id="404", tracking_number="PARCEL000001")])
    record = ExternalShipment.objects.get()
    for url in ("/admin/channels/channel/", f"/admin/channels/channel/{channel.pk}/change/",
                "/admin/channels/externalshipment/", f"/admin/channels/externalshipment/{record.pk}/change/",
                "/admin/channels/csvimport/", "/admin/channels/orderpoll/"):
        response = admin_client_for.get(url)
        assert response.status_code == 200, url
    page = admin_client_for.get(f"/admin/channels/channel/{channel.pk}/change/").content.decode()
    assert f"/webhooks/channels/{channel.slug}/" in page
    assert channel.signing_secret not in page  # secrets are never rendered back
    assert admin_client_for.get("/admin/channels/csvimport/add/").url == "/admin/channels/csvimport/upload/"


def test_adding_a_channel_in_admin_goes_through_the_service(admin_client_for, store):
    response = admin_client_for.post("/admin/channels/channel/add/", {
        "store": store.pk, "name": "Marketplace", "kind": "webhook", "source_names_text": "instagram",
        "base_url": "", "api_key": "", "api_secret": "", "is_enabled": "on",
    }, follow=True)
    assert response.status_code == 200
    channel = Channel.objects.get()
    assert channel.slug == "shop1-marketplace" and channel.signing_secret.startswith("whsec_")
    assert channel.source_names == ["instagram"]
    assert channel.signing_secret in response.content.decode()  # shown once, in the message
    refused = admin_client_for.post("/admin/channels/channel/add/", {
        "store": store.pk, "name": "SS", "kind": "shipstation", "source_names_text": "", "base_url": "",
        "api_key": "", "api_secret": "", "is_enabled": "on",
    })
    assert b"needs --api-key and --api-secret" in refused.content and Channel.objects.count() == 1


def test_match_again_action(admin_client_for, store):
    channel = channel_create(store=store, kind="webhook", name="Hook")
    external_shipments_receive(channel=channel, records=[
        ExternalShipmentRecord(external_order_id="500", tracking_number="PARCEL000002")])
    record = ExternalShipment.objects.get()
    from oma.orders.models import LineItem, Order

    order = Order.objects.create(store=store, order_id="500")  # arrived without the hook (e.g. restored backup)
    LineItem.objects.create(order=order, line_item_id="L1", sku="S", quantity=1)
    admin_client_for.post("/admin/channels/externalshipment/", {
        "action": "match_again", "_selected_action": [record.pk]})
    record.refresh_from_db()
    assert record.state == "matched" and record.order == order
