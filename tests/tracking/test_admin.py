"""Admin: shipments with their timeline, carrier accounts whose secrets are never shown."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from oma.stores.models import Store
from tests.tracking.conftest import make_store
from tracking.carriers.base import TrackingEventRecord, TrackingResult
from tracking.models import CarrierAccount, Shipment
from tracking.services import carrier_account_add, shipment_add, shipment_apply_result

pytestmark = pytest.mark.django_db
UPS = "1Z5R89390357567127"


@pytest.fixture
def staff(client: Client, django_user_model) -> Client:
    user = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return client


def test_shipment_pages_show_the_timeline_newest_first(staff: Client, store: Store) -> None:
    shipment = shipment_add(store=store, tracking_number=UPS)
    now = timezone.now()
    shipment_apply_result(
        shipment=shipment,
        result=TrackingResult(
            tracking_number=UPS, carrier="ups", status="out_for_delivery",
            events=(
                TrackingEventRecord(now, "out_for_delivery", raw_code="OT", raw_text="Loaded on Delivery Vehicle"),
                TrackingEventRecord(now.replace(year=now.year - 1), "in_transit", raw_code="AR", raw_text="Arrived"),
            ),
        ),
    )
    listing = staff.get("/admin/tracking/shipment/?status=out_for_delivery")
    assert listing.status_code == 200 and UPS in listing.content.decode()
    page = staff.get(f"/admin/tracking/shipment/{shipment.pk}/change/").content.decode()
    assert page.index("Loaded on Delivery Vehicle") < page.index("Arrived")


def test_adding_a_shipment_in_admin_goes_through_the_service(staff: Client, store: Store) -> None:
    response = staff.post(
        "/admin/tracking/shipment/add/", {"store": store.pk, "tracking_number": "1z5r8 9390 3575 67127", "carrier": ""}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    shipment = Shipment.objects.get()
    assert (shipment.tracking_number, shipment.carrier, shipment.source) == (UPS, "ups", "manual")
    again = staff.post("/admin/tracking/shipment/add/", {"store": store.pk, "tracking_number": UPS, "carrier": ""})
    assert again.status_code == 200 and Shipment.objects.count() == 1  # the duplicate is refused on the form


def test_actions_poll_now_and_stop(staff: Client, store: Store) -> None:
    shipment = shipment_add(store=store, tracking_number=UPS)
    Shipment.objects.update(next_poll_at=None)
    staff.post("/admin/tracking/shipment/", {"action": "poll_now", "_selected_action": [shipment.pk]})
    shipment.refresh_from_db()
    assert shipment.next_poll_at is not None
    staff.post("/admin/tracking/shipment/", {"action": "stop_tracking", "_selected_action": [shipment.pk]})
    shipment.refresh_from_db()
    assert shipment.next_poll_at is None


def test_carrier_account_secrets_are_never_shown_and_kept_when_left_blank(staff: Client, store: Store) -> None:
    account = carrier_account_add(carrier="ups", client_id="client-id-123", client_secret="very-secret-456")
    page = staff.get(f"/admin/tracking/carrieraccount/{account.pk}/change/").content.decode()
    assert "very-secret-456" not in page and "client-id-123" not in page and "Stored" in page
    listing = staff.get("/admin/tracking/carrieraccount/").content.decode()
    assert "very-secret-456" not in listing

    response = staff.post(
        f"/admin/tracking/carrieraccount/{account.pk}/change/",
        {"carrier": "ups", "store": "", "label": "main", "client_id": "", "client_secret": "", "api_key": "",
         "base_url": "https://wwwcie.ups.com", "rate_limit_requests": "", "rate_limit_per_seconds": "",
         "is_active": "on"},
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    account.refresh_from_db()
    assert (account.client_id, account.client_secret) == ("client-id-123", "very-secret-456")
    assert account.base_url == "https://wwwcie.ups.com" and account.label == "main"


def test_a_carrier_account_without_credentials_is_refused(staff: Client) -> None:
    response = staff.post(
        "/admin/tracking/carrieraccount/add/",
        {"carrier": "dhl", "store": "", "label": "", "client_id": "", "client_secret": "", "api_key": "",
         "base_url": "", "rate_limit_requests": "", "rate_limit_per_seconds": "", "is_active": "on"},
    )
    assert response.status_code == 200 and not CarrierAccount.objects.exists()


def test_merchants_see_only_their_stores_shipments(client: Client, django_user_model, store: Store) -> None:
    from oma.stores.models import StoreMembership

    other = make_store("shop2.genmystore.com")
    mine = shipment_add(store=store, tracking_number=UPS)
    theirs = shipment_add(store=other, tracking_number="1ZSB00010300000015")
    user = django_user_model.objects.create_user("merchant", password="pw", is_staff=True, is_superuser=False)
    from django.contrib.auth.models import Permission

    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="tracking"))
    StoreMembership.objects.create(user=user, store=store)
    client.force_login(user)
    listing = client.get("/admin/tracking/shipment/").content.decode()
    assert mine.tracking_number in listing and theirs.tracking_number not in listing
    assert client.get(f"/admin/tracking/shipment/{theirs.pk}/change/").status_code in (302, 404)
