"""The branded tracking link: a store with it on pushes OMA's signed /track/<token>/ page as `trackingUrl`."""

from __future__ import annotations

import pytest
from django.test import Client

from oma.fulfillment.models import FulfillmentPush
from oma.fulfillment.plan import BRANDED_LINK_WITHOUT_PUBLIC_URL
from oma.fulfillment.services.push import PushResult, shipment_push
from oma.merchant.tokens import order_id_from_token, tracking_page_url_for
from oma.stores.models import Store
from tests.fulfillment.conftest import add_shipment, carrier_says, open_orders

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

PUBLIC_URL = "https://oma.example.com"


def genstore_tracking_urls(sandbox, order, number: str) -> list[str]:
    return [
        f["trackingUrl"] for f in sandbox.fulfillments("shop1", order.order_id)
        if f["trackingNumber"] == number and f["status"] != "cancelled"
    ]


def test_new_stores_have_it_on():
    assert Store(domain="new.genmystore.com").branded_tracking_link is True


def test_pushes_the_signed_tracking_page_and_the_page_keeps_the_carrier_link(sandbox, store, settings):
    settings.OMA_PUBLIC_URL = PUBLIC_URL + "/"
    order = open_orders(store)[0]
    shipment = carrier_says(add_shipment(store, order), "in_transit")
    assert shipment.tracking_url.startswith("https://")  # the carrier's own page

    assert shipment_push(shipment_id=shipment.pk).result == PushResult.CREATED

    [url] = genstore_tracking_urls(sandbox, order, shipment.tracking_number)
    assert url == tracking_page_url_for(order, public_url=PUBLIC_URL)
    assert url.startswith(f"{PUBLIC_URL}/track/") and url.endswith("/")
    token = url.removeprefix(f"{PUBLIC_URL}/track/").rstrip("/")
    assert order_id_from_token(token) == (store.pk, order.pk)
    html = Client().get(url.removeprefix(PUBLIC_URL)).content.decode()
    assert shipment.tracking_number in html
    assert f'href="{shipment.tracking_url}"' in html  # the carrier's link stays on the branded page
    # Nothing more to send on the next run: Genstore holds what OMA wants.
    assert shipment_push(shipment_id=shipment.pk, force=True).result == PushResult.UNCHANGED


def test_without_a_public_address_the_carrier_link_is_pushed_and_said_once(sandbox, store, settings):
    settings.OMA_PUBLIC_URL = ""
    order = open_orders(store)[0]
    shipment = carrier_says(add_shipment(store, order), "in_transit")

    assert shipment_push(shipment_id=shipment.pk).result == PushResult.CREATED
    carrier_says(shipment, "out_for_delivery")
    assert shipment_push(shipment_id=shipment.pk).result == PushResult.UPDATED

    assert genstore_tracking_urls(sandbox, order, shipment.tracking_number) == [shipment.tracking_url]
    log = [entry["message"] for entry in FulfillmentPush.objects.get(shipment=shipment).log]
    assert log.count(BRANDED_LINK_WITHOUT_PUBLIC_URL) == 1


def test_turning_it_on_or_moving_oma_updates_pushed_fulfillments_on_their_next_push(sandbox, store, settings):
    settings.OMA_PUBLIC_URL = PUBLIC_URL
    Store.objects.filter(pk=store.pk).update(branded_tracking_link=False)
    order = open_orders(store)[0]
    shipment = carrier_says(add_shipment(store, order), "in_transit", hours_ago=5)
    assert shipment_push(shipment_id=shipment.pk).result == PushResult.CREATED
    assert genstore_tracking_urls(sandbox, order, shipment.tracking_number) == [shipment.tracking_url]
    created = sandbox.stats("shop1")["fulfillments_created"]
    log = FulfillmentPush.objects.get(shipment=shipment).log
    assert BRANDED_LINK_WITHOUT_PUBLIC_URL not in [entry["message"] for entry in log]

    Store.objects.filter(pk=store.pk).update(branded_tracking_link=True)
    carrier_says(shipment, "out_for_delivery", hours_ago=2)
    assert shipment_push(shipment_id=shipment.pk).result == PushResult.UPDATED
    assert genstore_tracking_urls(sandbox, order, shipment.tracking_number) == [
        tracking_page_url_for(order, public_url=PUBLIC_URL)
    ]

    settings.OMA_PUBLIC_URL = "https://track.teapots.example"
    carrier_says(shipment, "delivered")
    assert shipment_push(shipment_id=shipment.pk).result == PushResult.UPDATED
    [url] = genstore_tracking_urls(sandbox, order, shipment.tracking_number)
    assert url == tracking_page_url_for(order, public_url="https://track.teapots.example")
    assert sandbox.stats("shop1")["fulfillments_created"] == created  # update_tracking only, never a second one
