"""External orders in admin, as a merchant: the list and detail pages of their own stores only, the order-file
upload page, the retry and cancel actions (change permission needed), the import history, the dashboard counts and
the alert digest."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from oma.channels.connectors.base import ExternalOrderInput, ExternalOrderLineInput
from oma.channels.models import Channel, ExternalOrder, OrderImport
from oma.channels.order_intake import external_orders_receive
from oma.channels.services import channel_create
from oma.merchant.alerts import alert_digest_send
from oma.merchant.models import AlertPolicy
from oma.stores.models import Store
from tests.admin.factories import OrderFactory, StoreFactory
from tests.admin.world import merchant
from tests.channels.test_order_import import GOOD_AND_BAD
from tests.security.test_admin_permissions import staff_with

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:channels_externalorder_changelist"
UPLOAD = "admin:channels_orderimport_upload"


def an_order(order_id: str, *, sku: str = "MUG-1") -> ExternalOrderInput:
    return ExternalOrderInput(
        external_order_id=order_id, created_at=timezone.now() - timedelta(days=1), currency="USD",
        lines=(ExternalOrderLineInput(sku=sku, title=f"item {sku}", quantity=2, price=Decimal("12.50"),
                                      external_line_id=f"{order_id}-1"),),
    )


def amazon_of(store: Store, *order_ids: str) -> Channel:
    channel = channel_create(store=store, kind="csv", name="Amazon", source_names=["amazon"])
    external_orders_receive(channel=channel, orders=[an_order(order_id) for order_id in order_ids])
    return channel


@pytest.fixture
def two_stores():
    mine, theirs = StoreFactory(name="amark shop"), StoreFactory(name="bmark shop")
    amazon_of(mine, "amark-111", "amark-112", "amark-113")
    amazon_of(theirs, "bmark-221")
    return mine, theirs


@pytest.fixture
def merchant_client(client, two_stores):
    client.force_login(merchant("amy", two_stores[0]))
    return client


def test_the_list_shows_the_merchants_own_external_orders_with_state_and_genstore_link(merchant_client, two_stores):
    mine, _theirs = two_stores
    order = OrderFactory(store=mine, order_id="70001", name="#1042")
    ExternalOrder.objects.filter(external_order_id="amark-111").update(
        state="created", genstore_order_id="70001", order=order)
    ExternalOrder.objects.filter(external_order_id="amark-112").update(
        state="failed", last_error="lineItems[0].sku: unknown product", last_error_status=422)
    ExternalOrder.objects.filter(external_order_id="amark-113").update(
        needs_attention="cancelled on Amazon after something shipped: settle it in Genstore")

    response = merchant_client.get(reverse(CHANGELIST))
    html = response.content.decode()
    assert response.status_code == 200
    assert "amark-111" in html and "bmark" not in html
    assert f'href="{reverse("admin:orders_order_change", args=[order.pk])}">#1042</a>' in html
    assert "lineItems[0].sku: unknown product" in html and "settle it in Genstore" in html
    failed = merchant_client.get(reverse(CHANGELIST), {"state__exact": "failed"}).context["cl"].result_list
    assert [row.external_order_id for row in failed] == ["amark-112"]
    flagged = merchant_client.get(reverse(CHANGELIST), {"attention": "yes"}).context["cl"].result_list
    assert [row.external_order_id for row in flagged] == ["amark-113"]


def test_the_detail_page_shows_lines_later_changes_and_log_and_cannot_be_edited(merchant_client, two_stores):
    row = ExternalOrder.objects.get(external_order_id="amark-111")
    ExternalOrder.objects.filter(pk=row.pk).update(
        later_changes=[{"at": "2026-11-02T10:00:00+00:00", "changes": ["shippingAddress"], "content": {}}],
        log=[{"at": "2026-11-01T10:00:00+00:00", "message": "created in Genstore as 70001"}],
    )
    page = merchant_client.get(reverse("admin:channels_externalorder_change", args=[row.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    assert "amark-111-1" in html and "MUG-1" in html  # the line, with the channel's own line id
    assert "shippingAddress" in html and "created in Genstore as 70001" in html
    assert 'name="_save"' not in html  # nothing here is edited by hand
    theirs = ExternalOrder.objects.get(external_order_id="bmark-221")
    assert merchant_client.get(reverse("admin:channels_externalorder_change", args=[theirs.pk])).status_code == 302
    assert merchant_client.get(reverse("admin:channels_externalorder_delete", args=[row.pk])).status_code == 403


def test_retry_and_cancel_actions(merchant_client, two_stores, django_capture_on_commit_callbacks):
    failed = ExternalOrder.objects.get(external_order_id="amark-112")
    ExternalOrder.objects.filter(pk=failed.pk).update(state="failed", last_error="refused")
    unsent = ExternalOrder.objects.get(external_order_id="amark-113")
    theirs = ExternalOrder.objects.get(external_order_id="bmark-221")
    ExternalOrder.objects.filter(pk=theirs.pk).update(state="failed")

    with django_capture_on_commit_callbacks(execute=False):
        response = merchant_client.post(reverse(CHANGELIST), {
            "action": "retry_creating", "_selected_action": [failed.pk, unsent.pk, theirs.pk]}, follow=True)
    assert "1 failed order(s) queued to be created again; 1 not failed" in response.content.decode()
    failed.refresh_from_db()
    theirs.refresh_from_db()
    assert failed.state == "pending" and theirs.state == "failed"  # another store's row is never touched

    merchant_client.post(reverse(CHANGELIST), {"action": "cancel_in_genstore", "_selected_action": [unsent.pk]})
    unsent.refresh_from_db()
    assert unsent.state == "cancelled"  # never sent to Genstore: cancelled here, nothing to ask Genstore


def test_a_view_only_login_cannot_run_the_actions(client, two_stores):
    mine, _theirs = two_stores
    row = ExternalOrder.objects.get(external_order_id="amark-112")
    ExternalOrder.objects.filter(pk=row.pk).update(state="failed")
    client.force_login(staff_with("viewer", mine, "view_externalorder"))
    page = client.get(reverse(CHANGELIST))
    assert page.status_code == 200 and "retry_creating" not in page.content.decode()
    client.post(reverse(CHANGELIST), {"action": "retry_creating", "_selected_action": [row.pk]})
    row.refresh_from_db()
    assert row.state == "failed"


def test_the_upload_page_imports_into_the_merchants_channel_and_shows_the_report(merchant_client, two_stores):
    mine, theirs = two_stores
    amazon = Channel.objects.get(store=mine)
    page = merchant_client.get(reverse(UPLOAD))
    assert page.status_code == 200 and "bmark" not in page.content.decode()
    assert reverse("admin:channels_csvimport_upload") in page.content.decode()  # beside the tracking upload

    dry = merchant_client.post(reverse(UPLOAD), {
        "channel": amazon.pk, "file_format": "auto", "dry_run": "on",
        "file": SimpleUploadedFile("orders.txt", GOOD_AND_BAD, "text/plain"),
    })
    assert "dry run, nothing saved" in dry.content.decode() and not OrderImport.objects.exists()

    response = merchant_client.post(reverse(UPLOAD), {
        "channel": amazon.pk, "file_format": "amazon",
        "file": SimpleUploadedFile("orders.txt", GOOD_AND_BAD, "text/plain"),
    })
    html = response.content.decode()
    assert response.status_code == 200
    assert "orders.txt (amazon): 4 rows, 2 orders: 2 new" in html
    assert "line 5" in html and "333-0000003-0000003" in html and "quantity-purchased=0" in html
    imported = OrderImport.objects.get()
    assert imported.via == "admin" and imported.channel == amazon and imported.uploaded_by is not None
    assert set(ExternalOrder.objects.filter(order_import=imported).values_list("external_order_id", flat=True)) == {
        "111-0000001-0000001", "222-0000002-0000002"}
    assert f"order_import__id__exact={imported.pk}" in html
    listed = merchant_client.get(reverse(CHANGELIST), {"order_import__id__exact": imported.pk}).context["cl"]
    assert listed.result_count == 2

    history = merchant_client.get(reverse("admin:channels_orderimport_change", args=[imported.pk])).content.decode()
    assert "<td>5</td><td>333-0000003-0000003</td>" in history
    assert merchant_client.get(reverse("admin:channels_orderimport_add")).url == reverse(UPLOAD)

    their_channel = Channel.objects.get(store=theirs)
    refused = merchant_client.post(reverse(UPLOAD), {
        "channel": their_channel.pk, "file_format": "auto",
        "file": SimpleUploadedFile("orders.txt", GOOD_AND_BAD, "text/plain"),
    })
    assert "Select a valid choice" in refused.content.decode()
    assert not ExternalOrder.objects.filter(store=theirs, external_order_id__startswith="111").exists()


def test_a_channel_without_source_names_is_refused_on_the_form(merchant_client, two_stores):
    sheet = channel_create(store=two_stores[0], kind="csv", name="Sheet")
    response = merchant_client.post(reverse(UPLOAD), {
        "channel": sheet.pk, "file_format": "auto",
        "file": SimpleUploadedFile("orders.txt", GOOD_AND_BAD, "text/plain"),
    })
    assert "has no source names" in response.content.decode() and not OrderImport.objects.exists()


def test_the_dashboard_counts_external_orders_per_state_for_the_merchants_stores(merchant_client, two_stores):
    ExternalOrder.objects.filter(external_order_id="amark-112").update(state="failed")
    ExternalOrder.objects.filter(external_order_id="amark-113").update(needs_attention="settle it")
    ExternalOrder.objects.filter(external_order_id="bmark-221").update(state="failed")  # another store's
    response = merchant_client.get(reverse("admin:dashboard"))
    figures = response.context["external_orders"]
    assert {state: count for state, _label, count, _url in figures["states"]} == {
        "pending": 2, "creating": 0, "created": 0, "adopted": 0, "failed": 1, "cancelled": 0}
    assert (figures["total"], figures["needs_attention"]) == (3, 1)
    html = response.content.decode()
    assert 'id="external-orders"' in html and "state__exact=failed" in html and "attention=yes" in html


def test_the_digest_lists_failed_creates_and_orders_that_need_the_merchant(two_stores):
    mine = two_stores[0]
    now = timezone.now().replace(hour=12)
    AlertPolicy.objects.create(store=mine, recipients="ops@amark.example", send_hour_utc=7)
    ExternalOrder.objects.filter(external_order_id="amark-112").update(
        state="failed", last_error="lineItems[0].price: must be positive")
    ExternalOrder.objects.filter(external_order_id="amark-113").update(
        needs_attention="cancelled on Amazon after something shipped")
    digest = alert_digest_send(store=mine, now=now)
    assert digest is not None and digest.counts["external_failed"] == 1 and digest.counts["external_attention"] == 1
    body = mail.outbox[0].body
    assert "amazon order amark-112 (Amazon): lineItems[0].price: must be positive" in body
    assert "amazon order amark-113 (Amazon): cancelled on Amazon after something shipped" in body
    assert "/admin/channels/externalorder/" in body and "bmark" not in body


def test_a_big_upload_is_queued_for_a_worker_and_its_page_says_so(
    merchant_client, two_stores, settings, django_capture_on_commit_callbacks
):
    settings.OMA_CSV_QUEUE_ABOVE_ROWS = 3
    amazon = Channel.objects.get(store=two_stores[0])
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = merchant_client.post(reverse(UPLOAD), {
            "channel": amazon.pk, "file_format": "auto",
            "file": SimpleUploadedFile("big.txt", GOOD_AND_BAD, "text/plain"),
        })
    queued = OrderImport.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:channels_orderimport_change", args=[queued.pk])
    assert len(callbacks) == 1 and queued.queued_file is not None
    page = merchant_client.get(response["Location"]).content.decode()
    assert "waiting for a worker" in page and "not imported yet" in page
