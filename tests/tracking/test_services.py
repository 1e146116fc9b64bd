"""Tracking services and models: adding shipments, storing carrier answers, never backwards, constraints."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from oma.orders.models import LineItem, Order
from oma.stores.models import Store
from tests.signals import also_receiver, only_receivers
from tests.tracking.conftest import make_store
from tracking.carriers.base import TrackingEventRecord, TrackingResult
from tracking.models import CarrierAccount, Shipment, ShipmentLine, TrackingEvent
from tracking.services import (
    CarrierAccountInvalid,
    ShipmentConflict,
    carrier_account_add,
    event_key,
    shipment_add,
    shipment_apply_result,
    shipments_apply_results,
)
from tracking.signals import shipments_changed, shipments_changed_batch

pytestmark = pytest.mark.django_db

UPS = "1Z5R89390357567127"  # a valid UPS 1Z number (tracking_number_data test set)
T0 = (datetime.now(UTC) - timedelta(days=3)).replace(minute=0, second=0, microsecond=0)


def make_order(store: Store, order_id: str = "1001", lines: int = 2) -> Order:
    order = Order.objects.create(store=store, order_id=order_id, name=f"#{order_id}")
    for index in range(lines):
        LineItem.objects.create(
            order=order, line_item_id=f"{order_id}-{index}", sku=f"SKU{index}", quantity=2, price=Decimal("5.00")
        )
    return order


def event(hours: float, status: str, code: str = "", text: str = "", location: str = "ATLANTA, GA") -> (
    TrackingEventRecord
):
    return TrackingEventRecord(
        occurred_at=T0 + timedelta(hours=hours), status=status, raw_code=code or status.upper(),
        raw_text=text or status.replace("_", " "), location=location,
    )


def result(number: str, status: str, *events: TrackingEventRecord, **fields: object) -> TrackingResult:
    return TrackingResult(
        tracking_number=number, carrier="ups", status=status, events=tuple(sorted(
            events, key=lambda e: e.occurred_at, reverse=True)), **fields,
    )


# --- shipment_add ---------------------------------------------------------------------------------------


def test_shipment_add_detects_the_carrier_and_is_due_now(store: Store) -> None:
    before = timezone.now()
    shipment = shipment_add(store=store, tracking_number="1z5r8 939 0357 567127", source=Shipment.Source.CSV)

    assert shipment.tracking_number == UPS
    assert (shipment.carrier, shipment.carrier_format, shipment.carrier_valid) == ("ups", "ups", True)
    assert shipment.carrier_candidates[0]["carrier"] == "ups" and shipment.carrier_candidates[0]["valid"] is True
    assert UPS in shipment.tracking_url
    assert shipment.status == "pending" and before <= shipment.next_poll_at <= timezone.now()
    assert shipment.source == "csv"


def test_the_stores_priority_list_decides_between_valid_candidates(store: Store) -> None:
    # Passes both FedEx Express's and Purolator's check digits (tracking_number_data's own collision example).
    ambiguous = "287809468872"
    assert shipment_add(store=store, tracking_number=ambiguous).carrier == "fedex"
    other = make_store("shop2.genmystore.com", carrier_priority=["purolator"])
    shipment = shipment_add(store=other, tracking_number=ambiguous)
    assert shipment.carrier == "purolator" and shipment.carrier_valid is True
    assert {c["carrier"] for c in shipment.carrier_candidates} >= {"fedex", "purolator"}


def test_unknown_numbers_keep_a_blank_carrier_for_17track(store: Store) -> None:
    shipment = shipment_add(store=store, tracking_number="zz-not-a-format-42")
    assert shipment.carrier == "" and shipment.carrier_valid is None and shipment.carrier_candidates == []
    assert shipment.tracking_number == "ZZNOTAFORMAT42"


def test_a_given_carrier_wins_over_detection(store: Store) -> None:
    shipment = shipment_add(store=store, tracking_number="RR123456785CN", carrier="Canada_Post")
    assert shipment.carrier == "canada_post"
    assert any(candidate["carrier"] == "s10" for candidate in shipment.carrier_candidates)


def test_shipment_add_is_idempotent_and_completes_the_shipment(store: Store) -> None:
    order = make_order(store)
    first_line, second_line = order.line_items.all()
    first = shipment_add(store=store, tracking_number=UPS, lines=[(first_line, 1)])
    again = shipment_add(store=store, tracking_number=f" {UPS.lower()} ", order=order, lines=[(first_line, 1)])
    third = shipment_add(store=store, tracking_number=UPS, order=order, lines=[(first_line, 2), (second_line, 1)])

    assert first.pk == again.pk == third.pk and Shipment.objects.count() == 1
    third.refresh_from_db()
    assert third.order == order
    assert dict(ShipmentLine.objects.values_list("line_item__line_item_id", "quantity")) == {
        "1001-0": 2,
        "1001-1": 1,
    }


def test_the_same_number_on_another_order_of_the_store_is_refused(store: Store) -> None:
    shipment_add(store=store, tracking_number=UPS, order=make_order(store, "1001"))
    with pytest.raises(ShipmentConflict):
        shipment_add(store=store, tracking_number=UPS, order=make_order(store, "1002"))
    # Another store may track the same number.
    other = make_store("shop2.genmystore.com")
    assert shipment_add(store=other, tracking_number=UPS).store == other
    assert Shipment.objects.count() == 2


def test_duplicates_are_impossible_at_the_database_level(store: Store) -> None:
    Shipment.objects.create(store=store, tracking_number=UPS)
    with pytest.raises(IntegrityError), transaction.atomic():
        Shipment.objects.create(store=store, tracking_number=UPS)


def test_correcting_the_carrier_asks_the_right_carrier_now(store: Store) -> None:
    shipment = shipment_add(store=store, tracking_number=UPS)
    Shipment.objects.filter(pk=shipment.pk).update(next_poll_at=timezone.now() + timedelta(hours=3))
    corrected = shipment_add(store=store, tracking_number=UPS, carrier="17track")
    corrected.refresh_from_db()
    assert corrected.carrier == "17track" and corrected.next_poll_at <= timezone.now()


def test_lines_must_belong_to_the_order(store: Store) -> None:
    order, other = make_order(store, "1001"), make_order(store, "1002")
    with pytest.raises(ValueError, match="not on order"):
        shipment_add(store=store, tracking_number=UPS, order=order, lines=[(other.line_items.first(), 1)])
    with pytest.raises(ValueError, match="another store"):
        shipment_add(store=make_store("shop2.genmystore.com"), tracking_number=UPS, order=order)


def test_shipments_changed_is_sent_after_commit(
    store: Store, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    seen: list[list[int]] = []
    also_receiver(monkeypatch, shipments_changed, lambda sender, shipment_ids, **kw: seen.append(shipment_ids))
    with django_capture_on_commit_callbacks(execute=True):
        shipment = shipment_add(store=store, tracking_number=UPS)
    with django_capture_on_commit_callbacks(execute=True):
        shipment_add(store=store, tracking_number=UPS)  # nothing new: no call
    with django_capture_on_commit_callbacks(execute=True):
        shipment_apply_result(shipment=shipment, result=result(UPS, "in_transit", event(1, "in_transit")))
    assert seen == [[shipment.pk], [shipment.pk]]


def test_a_batch_sends_shipments_changed_once_for_all_its_shipments(
    store: Store, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    seen: list[list[int]] = []
    also_receiver(monkeypatch, shipments_changed, lambda sender, shipment_ids, **kw: seen.append(shipment_ids))
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        with shipments_changed_batch():
            first = shipment_add(store=store, tracking_number=UPS)
            with shipments_changed_batch():  # a nested block joins the outer one
                second = shipment_add(store=store, tracking_number="1ZSB00010300000015")
            shipment_add(store=store, tracking_number=UPS)  # nothing new
        assert seen == []  # not before the commit
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic(), \
            pytest.raises(RuntimeError), shipments_changed_batch():
        shipment_add(store=store, tracking_number="1ZSB00010300000023")
        raise RuntimeError("the batch fails: its transaction is rolled back, nothing is notified")
    assert seen == [[first.pk, second.pk]]


def test_a_failing_receiver_never_breaks_the_tracking_write(
    store: Store, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    seen: list[list[int]] = []

    def broken(sender: object, **kwargs: object) -> None:
        raise RuntimeError("receiver bug")

    only_receivers(monkeypatch, shipments_changed, broken, lambda sender, shipment_ids, **kw: seen.append(shipment_ids))
    with django_capture_on_commit_callbacks(execute=True):
        shipment = shipment_add(store=store, tracking_number=UPS)
    assert seen == [[shipment.pk]]


# --- applying answers -------------------------------------------------------------------------------------


def test_events_are_stored_once_whatever_the_number_of_answers(store: Store) -> None:
    shipment = shipment_add(store=store, tracking_number=UPS)
    answer = result(UPS, "in_transit", event(0, "info_received"), event(5, "in_transit", text="Departed"))

    assert shipment_apply_result(shipment=shipment, result=answer) is True
    assert shipment_apply_result(shipment=shipment, result=answer) is False
    outcome = shipments_apply_results(pairs=[(shipment, answer)])[0]

    assert outcome.events_added == 0 and TrackingEvent.objects.count() == 2
    shipment.refresh_from_db()
    assert shipment.status == "in_transit" and shipment.last_event_at == T0 + timedelta(hours=5)


def test_the_same_event_twice_is_impossible_in_the_database(store: Store) -> None:
    shipment = shipment_add(store=store, tracking_number=UPS)
    record = event(1, "in_transit")
    fields = {"shipment": shipment, "occurred_at": record.occurred_at, "status": "in_transit", "key": event_key(record)}
    TrackingEvent.objects.create(**fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        TrackingEvent.objects.create(**fields)


def test_event_key_ignores_our_mapping_and_the_offset_notation() -> None:
    local = event(0, "in_transit")
    same_moment = TrackingEventRecord(
        occurred_at=local.occurred_at.astimezone(timezone.get_fixed_timezone(-300)), status="exception",
        raw_code=local.raw_code, raw_text=local.raw_text, location=local.location,
    )
    assert event_key(local) == event_key(same_moment)
    assert event_key(local) != event_key(event(0, "in_transit", location="DENVER, CO"))


def test_status_never_goes_back_from_delivered_on_an_older_answer(store: Store) -> None:
    shipment = shipment_add(store=store, tracking_number=UPS)
    delivered = result(
        UPS, "delivered", event(1, "in_transit"), event(30, "delivered"), delivered_at=T0 + timedelta(hours=30),
        signed_by="J. SMITH",
    )
    shipment_apply_result(shipment=shipment, result=delivered)
    stale = result(UPS, "in_transit", event(1, "in_transit"), event(20, "out_for_delivery"))

    assert shipment_apply_result(shipment=shipment, result=stale) is False

    shipment.refresh_from_db()
    assert shipment.status == "delivered" and shipment.next_poll_at is None
    assert shipment.delivered_at == T0 + timedelta(hours=30) and shipment.signed_by == "J. SMITH"
    assert TrackingEvent.objects.filter(shipment=shipment).count() == 3  # the older scan is kept as history


def test_a_late_scan_after_delivery_is_history_not_status(store: Store) -> None:
    shipment = shipment_add(store=store, tracking_number=UPS)
    shipment_apply_result(shipment=shipment, result=result(UPS, "delivered", event(30, "delivered")))
    late = result(UPS, "in_transit", event(30, "delivered"), event(31, "in_transit", text="Sorted"))
    shipment_apply_result(shipment=shipment, result=late)
    shipment.refresh_from_db()
    assert shipment.status == "delivered" and shipment.last_event_at == T0 + timedelta(hours=31)


def test_an_older_answer_does_not_move_a_moving_shipment_back(store: Store) -> None:
    shipment = shipment_add(store=store, tracking_number=UPS)
    shipment_apply_result(shipment=shipment, result=result(UPS, "out_for_delivery", event(40, "out_for_delivery")))
    shipment_apply_result(shipment=shipment, result=result(UPS, "in_transit", event(10, "in_transit")))
    shipment.refresh_from_db()
    assert shipment.status == "out_for_delivery"


def test_a_lost_parcel_shows_even_after_out_for_delivery(store: Store) -> None:
    shipment = shipment_add(store=store, tracking_number=UPS)
    shipment_apply_result(shipment=shipment, result=result(UPS, "out_for_delivery", event(40, "out_for_delivery")))
    lost = result(UPS, "exception", event(40, "out_for_delivery"), event(45, "exception"), substatus="lost")
    assert shipment_apply_result(shipment=shipment, result=lost) is True
    shipment.refresh_from_db()
    assert (shipment.status, shipment.substatus) == ("exception", "lost")


def test_not_found_keeps_the_shipment_pending_with_the_carriers_message(store: Store) -> None:
    shipment = shipment_add(store=store, tracking_number=UPS)
    missing = TrackingResult(tracking_number=UPS, carrier="ups", found=False, error="Tracking Information Not Found")
    assert shipment_apply_result(shipment=shipment, result=missing) is False
    shipment.refresh_from_db()
    assert shipment.status == "pending" and shipment.last_error == "Tracking Information Not Found"
    assert shipment.next_poll_at is not None and shipment.consecutive_failures == 0


def test_estimated_delivery_as_a_date_or_a_time(store: Store) -> None:
    shipment = shipment_add(store=store, tracking_number=UPS)
    shipment_apply_result(
        shipment=shipment, result=result(UPS, "in_transit", event(1, "in_transit"), estimated_delivery=date(2026, 5, 8))
    )
    shipment.refresh_from_db()
    assert shipment.estimated_delivery_date == date(2026, 5, 8) and shipment.estimated_delivery_at is None
    moment = datetime(2026, 5, 9, 2, 0, tzinfo=UTC)
    shipment_apply_result(
        shipment=shipment, result=result(UPS, "in_transit", event(2, "in_transit"), estimated_delivery=moment)
    )
    shipment.refresh_from_db()
    assert shipment.estimated_delivery_at == moment and shipment.estimated_delivery_date == date(2026, 5, 9)


def test_no_event_for_the_maximum_age_expires_the_shipment(store: Store, settings) -> None:
    settings.TRACKING_MAX_AGE_DAYS = 60
    shipment = shipment_add(store=store, tracking_number=UPS)
    answer = result(UPS, "in_transit", event(0, "in_transit"))
    shipment_apply_result(shipment=shipment, result=answer, now=T0 + timedelta(days=59))
    shipment.refresh_from_db()
    assert shipment.status == "in_transit" and shipment.next_poll_at <= T0 + timedelta(days=60)

    assert shipment_apply_result(shipment=shipment, result=answer, now=T0 + timedelta(days=61)) is True
    shipment.refresh_from_db()
    assert shipment.status == "expired" and shipment.next_poll_at is None and shipment.last_error


def test_a_status_change_is_sent_after_commit(
    store: Store, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    calls: list[int] = []
    shipment = shipment_add(store=store, tracking_number=UPS)
    only_receivers(monkeypatch, shipments_changed, lambda sender, shipment_ids, **kw: calls.extend(shipment_ids))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        shipment_apply_result(shipment=shipment, result=result(UPS, "in_transit", event(1, "in_transit")))
    assert calls == []  # nothing before the commit
    for callback in callbacks:
        callback()
    assert calls == [shipment.pk]


def test_17track_fills_in_a_carrier_detection_could_not_place(store: Store) -> None:
    shipment = shipment_add(store=store, tracking_number="ZZ42")
    answer = TrackingResult(tracking_number="ZZ42", carrier="yunexpress", status="in_transit",
                            events=(event(1, "in_transit"),))
    shipment_apply_result(shipment=shipment, result=answer)
    shipment.refresh_from_db()
    assert shipment.carrier == "yunexpress"


# --- carrier accounts ---------------------------------------------------------------------------------


def test_carrier_account_secrets_are_encrypted_at_rest(store: Store) -> None:
    account = carrier_account_add(carrier="ups", client_id="the-id", client_secret="the-secret", store=store)
    with connection.cursor() as cursor:
        cursor.execute("SELECT client_id, client_secret FROM tracking_carrieraccount WHERE id = %s", [account.pk])
        raw_id, raw_secret = cursor.fetchone()
    assert "the-id" not in raw_id and "the-secret" not in raw_secret
    account.refresh_from_db()
    assert (account.client_id, account.client_secret) == ("the-id", "the-secret")


def test_carrier_account_add_validates_and_replaces(store: Store) -> None:
    with pytest.raises(CarrierAccountInvalid):
        carrier_account_add(carrier="ups", api_key="k")
    with pytest.raises(CarrierAccountInvalid):
        carrier_account_add(carrier="dhl", client_id="a", client_secret="b")
    with pytest.raises(CarrierAccountInvalid):
        carrier_account_add(carrier="royalmail", api_key="k")
    first = carrier_account_add(carrier="dhl", api_key="one")
    second = carrier_account_add(carrier="dhl", api_key="two")
    mine = carrier_account_add(carrier="dhl", api_key="three", store=store)
    first.refresh_from_db()
    assert not first.is_active and second.is_active and mine.is_active
    assert CarrierAccount.objects.filter(is_active=True).count() == 2
    with pytest.raises(IntegrityError), transaction.atomic():
        CarrierAccount.objects.create(carrier="dhl", api_key="four", store=store)
