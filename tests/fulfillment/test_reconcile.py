"""Reconciliation against the Genstore sandbox: every kind of disagreement, `reconcile --fix`, the admin page."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from oma.fulfillment.models import FulfillmentPush
from oma.fulfillment.reconciliation import Finding, reconcile_fix, store_reconcile
from oma.fulfillment.services.push import shipment_push
from oma.orders.models import Order, SyncRun
from oma.orders.services import orders_sweep
from oma.stores.models import Store, StoreMembership
from oma.stores.services import genstore_client_for
from tests.fulfillment.conftest import add_shipment, carrier_says, new_number, open_orders
from tracking.models import Shipment
from tracking.numbers import normalize as normalize_tracking_number

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def live_numbers(sandbox) -> set[str]:
    """Tracking numbers on every live fulfillment Genstore holds."""
    numbers = set()
    for order in sandbox.orders("shop1"):
        for fulfillment in order["fulfillments"]:
            if fulfillment["status"] != "cancelled" and fulfillment["trackingNumber"]:
                numbers.add(normalize_tracking_number(fulfillment["trackingNumber"]))
    return numbers


@pytest.fixture
def scene(sandbox, store):
    """One shipment pushed and fine, one never pushed, one delivered whose Genstore status was set back, a number
    on two orders, a duplicate fulfillment, and a shipment of a cancelled order (not a finding)."""
    orders = open_orders(store)
    client = genstore_client_for(store)
    fine = carrier_says(add_shipment(store, orders[0]), "in_transit")
    shipment_push(shipment_id=fine.pk)
    never = add_shipment(store, orders[1])
    delivered = carrier_says(add_shipment(store, orders[2]), "delivered")
    push = shipment_push(shipment_id=delivered.pk).push
    client.update_tracking(
        push.fulfill_id, tracking_number=delivered.tracking_number, tracking_company="USPS",
        tracking_url=None, shipment_status="in_transit", notify_customer=False,
    )
    # The number of `fine` also on another order, and one number twice on a third order.
    line = orders[3].line_items.first()
    client.create_fulfillment(
        order_id=orders[3].order_id, line_items=[(line.line_item_id, 1)], tracking_number=fine.tracking_number,
        tracking_company="USPS", tracking_url=None, notify_customer=False,
    )
    twice = new_number()
    two_lines = next(order for order in open_orders(store, lines_at_least=2) if order not in orders[:4])
    orders[4] = two_lines
    for line in list(two_lines.line_items.order_by("pk"))[:2]:
        client.create_fulfillment(
            order_id=two_lines.order_id, line_items=[(line.line_item_id, 1)],
            tracking_number=twice, tracking_company="USPS", tracking_url=None, notify_customer=False,
        )
    cancelled = Order.objects.filter(store=store, cancelled_at__isnull=False).first()
    add_shipment(store, cancelled, [(cancelled.line_items.first(), 1)])
    assert orders_sweep(store=store, kind=SyncRun.Kind.FULL).state == SyncRun.State.SUCCEEDED
    return {"fine": fine, "never": never, "delivered": delivered, "twice": twice, "orders": orders}


def test_every_kind_of_disagreement_is_found(sandbox, store, scene):
    report = store_reconcile(store=store)

    by_kind = {kind: [d for d in report.disagreements if d.kind == kind] for kind in Finding}
    [missing] = by_kind[Finding.SHIPMENT_WITHOUT_FULFILLMENT]
    assert (missing.shipment_id, missing.tracking_number, missing.fixable) == (
        scene["never"].pk, scene["never"].tracking_number, True,
    )
    assert missing.detail == "no Genstore fulfillment with this number; never pushed"
    [late] = by_kind[Finding.DELIVERED_NOT_IN_GENSTORE]
    assert late.shipment_id == scene["delivered"].pk and late.detail.endswith(": in_transit")
    fine_number = scene["fine"].tracking_number
    [two_orders] = [d for d in by_kind[Finding.NUMBER_ON_TWO_ORDERS] if d.tracking_number == fine_number]
    assert two_orders.order_ids == tuple(sorted([scene["orders"][0].order_id, scene["orders"][3].order_id]))
    [duplicate] = by_kind[Finding.DUPLICATE_FULFILLMENT]
    assert duplicate.tracking_number == scene["twice"] and duplicate.order_ids == (scene["orders"][4].order_id,)
    unknown = {d.tracking_number for d in by_kind[Finding.UNKNOWN_TRACKING_NUMBER]}
    tracked = set(Shipment.objects.filter(store=store).values_list("tracking_number", flat=True))
    assert {normalize_tracking_number(n) for n in unknown} == live_numbers(sandbox) - tracked
    assert scene["twice"] in unknown and len(unknown) > 10  # the merchant's own fulfillments, seeded
    assert not any(d.fixable for kind in (Finding.UNKNOWN_TRACKING_NUMBER, Finding.NUMBER_ON_TWO_ORDERS,
                                          Finding.DUPLICATE_FULFILLMENT) for d in by_kind[kind])


def test_fix_pushes_what_is_missing_and_nothing_else(sandbox, store, scene):
    created_before = sandbox.stats("shop1")["fulfillments_created"]
    report = store_reconcile(store=store)

    result = reconcile_fix(report=report)

    assert (result.attempted, dict(result.by_result)) == (2, {"created": 1, "updated": 1})
    assert sandbox.stats("shop1")["fulfillments_created"] == created_before + 1
    [delivered] = [
        f for f in sandbox.fulfillments("shop1", scene["orders"][2].order_id)
        if f["trackingNumber"] == scene["delivered"].tracking_number
    ]
    assert delivered["shipmentStatus"] == "delivered"
    after = store_reconcile(store=store)
    assert after.count(Finding.SHIPMENT_WITHOUT_FULFILLMENT) == 0
    assert after.count(Finding.DELIVERED_NOT_IN_GENSTORE) == 0
    assert after.count(Finding.DUPLICATE_FULFILLMENT) == 1  # reported for a person: OMA never deletes


def test_a_fulfillment_deleted_from_genstore_is_pushed_anew_by_the_fix(sandbox, store):
    order = open_orders(store)[0]
    shipment = add_shipment(store, order)
    push = shipment_push(shipment_id=shipment.pk).push
    genstore_client_for(store).cancel_fulfillment(push.fulfill_id)
    orders_sweep(store=store, kind=SyncRun.Kind.FULL)
    report = store_reconcile(store=store)
    assert [d.kind for d in report.disagreements if d.shipment_id == shipment.pk] == [
        Finding.SHIPMENT_WITHOUT_FULFILLMENT
    ]

    result = reconcile_fix(report=report)

    # Cancelled in Genstore by someone: OMA does not fight the merchant, it says so.
    assert dict(result.by_result) == {"skipped": 1}
    push.refresh_from_db()
    assert push.state == FulfillmentPush.State.SKIPPED
    assert push.state_reason == f"Genstore fulfillment {push.fulfill_id} is cancelled: not updated"


def test_reconcile_command_text_json_and_fix(sandbox, store, scene):
    out = StringIO()
    call_command("reconcile", "--store", store.domain, stdout=out)
    text = out.getvalue()
    assert "shipment_without_fulfillment (1, fixable with --fix):" in text
    assert scene["never"].tracking_number in text
    assert text.strip().splitlines()[-1].startswith(f"{store.domain}: 4 shipments, ")

    out = StringIO()
    call_command("reconcile", "--store", store.domain, "--fix", "--json", stdout=out)
    payload = json.loads(out.getvalue())
    assert payload["refreshed"] is True
    assert payload["counts"]["shipment_without_fulfillment"] == 1
    assert payload["fix"]["results"] == {"created": 1, "updated": 1}
    assert payload["after"]["counts"]["shipment_without_fulfillment"] == 0
    assert payload["after"]["counts"]["delivered_not_in_genstore"] == 0


def test_reconcile_command_refuses_an_unknown_store(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match=r"unknown store 'nope\.genmystore\.com'"):
        call_command("reconcile", "--store", "nope.genmystore.com")


def test_admin_page_lists_and_queues_fixes_for_the_users_own_store_only(sandbox, store, scene, redis_client):
    other = Store.objects.create(domain="other.genmystore.com", access_token="t", client_secret="s")
    user = get_user_model().objects.create_user("merchant", password="pw", is_staff=True)
    StoreMembership.objects.create(user=user, store=store)
    user.is_superuser = False
    user.save()
    from django.contrib.auth.models import Permission

    user.user_permissions.add(Permission.objects.get(codename="view_fulfillmentpush"))
    browser = Client()
    browser.force_login(user)

    page = browser.get("/admin/fulfillment/fulfillmentpush/reconcile/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "Shipments with no Genstore fulfillment (1)" in body
    assert scene["never"].tracking_number in body
    assert "other.genmystore.com" not in body
    assert browser.get(f"/admin/fulfillment/fulfillmentpush/reconcile/?store={other.pk}").status_code == 403

    assert browser.post("/admin/fulfillment/fulfillmentpush/reconcile/", {"store": store.pk}).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="change_fulfillmentpush"))  # queueing pushes is acting
    response = browser.post("/admin/fulfillment/fulfillmentpush/reconcile/", {"store": store.pk})
    assert response.status_code == 302
    queued = FulfillmentPush.objects.get(shipment=scene["never"])
    assert queued.state == FulfillmentPush.State.PENDING and queued.queued_at is not None
