"""A tracking CSV that voids a label (issue 16, item 2: "a CSV re-import that withdraws it").

A row whose status is voided/void/cancelled/canceled withdraws its number for the channel through the same path as
a platform's void (withdraw_row): the shipment is cancelled, and the fulfillment OMA pushed for it is cancelled in
Genstore exactly once by the push that follows. Against the Genstore sandbox over HTTP, with PostgreSQL."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from oma.channels.connectors.csv import parse_tracking_csv
from oma.channels.csv_import import (
    ADDED,
    ALREADY,
    CREATED,
    NOTHING_TO_VOID,
    REJECTED,
    VOIDED,
    WAITING,
    CsvImportReport,
    tracking_csv_import,
)
from oma.channels.models import Channel, ExternalShipment
from oma.channels.services import channel_create
from oma.fulfillment.models import FulfillmentPush
from oma.fulfillment.services.push import store_pushes_drain
from oma.orders.models import LineItem
from oma.stores.models import Store
from tests.channels.genstore_voids import (  # noqa: F401 (fixtures)
    genstore_fulfillments,
    lines_of,
    open_order,
    quick_client,
    requests_seen,
    sandbox_fixture,
    status_at_genstore,
    store_fixture,
    sweep,
)
from tests.fulfillment.conftest import new_number
from tracking.models import Shipment

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

HEADER = ("order", "tracking_number", "carrier", "line_item_id", "quantity", "Label Status")


def to_csv(rows: Sequence[Sequence[object]], header: Sequence[str] = HEADER) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def import_csv(store: Store, channel: Channel, rows: Sequence[Sequence[object]], *,
               dry_run: bool = False) -> CsvImportReport:
    report = tracking_csv_import(store=store, data=to_csv(rows), file_name="labels.csv", channel=channel,
                                 dry_run=dry_run)
    assert report.ok, report.file_error
    return report


def outcomes(report: CsvImportReport) -> list[str]:
    return [result.outcome for result in report.results]


def sheet(store: Store) -> Channel:
    return channel_create(store=store, kind="csv", name="Label sheet")


def test_a_second_csv_voiding_a_pushed_label_and_bringing_its_replacement_cancels_once_and_creates_it(
    sandbox, store
):
    order = open_order(store, lines_at_least=2)
    lines = lines_of(order)
    channel = sheet(store)
    first, replacement = new_number(), new_number()

    # The label is imported (a status other than a void is an ordinary row) and its fulfillment pushed.
    imported = import_csv(store, channel, [
        (order.order_id, first, "usps", line.line_item_id, line.quantity, "shipped") for line in lines
    ])
    assert outcomes(imported) == [CREATED] + [ADDED] * (len(lines) - 1)
    assert store_pushes_drain(store=store, client=quick_client(store)).results == {"created": 1}
    assert status_at_genstore(sandbox, order, first) == "success"
    # The mirror as Genstore holds it now: the items are fulfilled, fulfillableQuantity is down to 0.
    sweep(store)
    assert set(LineItem.objects.filter(order=order).values_list("fulfillable_quantity", flat=True)) == {0}
    before = requests_seen(sandbox)
    assert before[:2] == (0, 0)

    # The second file: the label voided (one row per item, the order left blank on one, any case), and the
    # replacement label for the same items.
    second = [
        ("", first, "usps", lines[0].line_item_id, lines[0].quantity, "Voided"),
        *((order.order_id, first, "usps", line.line_item_id, line.quantity, "VOID") for line in lines[1:]),
        *((order.order_id, replacement, "usps", line.line_item_id, line.quantity, "") for line in lines),
    ]
    expected = [VOIDED] + [ALREADY] * (len(lines) - 1) + [CREATED] + [ADDED] * (len(lines) - 1)

    # A dry run shows it all and changes nothing.
    dry = import_csv(store, channel, second, dry_run=True)
    assert outcomes(dry) == expected
    assert [result.line for result in dry.voids] == [2]
    assert "1 labels voided" in dry.summary() and f"line 2: voided: tracking number {first}" in dry.as_text()
    assert dry.as_json()["voided"] == 1 and dry.as_json()["voids"][0]["trackingNumber"] == first
    assert Shipment.objects.get(store=store, tracking_number=first).status != "cancelled"
    assert not Shipment.objects.filter(store=store, tracking_number=replacement).exists()
    assert not ExternalShipment.objects.filter(voided=True).exists()

    # Imported: the label is withdrawn and the replacement matched at once (not refused for the voided label's
    # still-live fulfillment).
    report = import_csv(store, channel, second)
    assert outcomes(report) == expected, report.as_text()
    assert Shipment.objects.get(store=store, tracking_number=first).status == "cancelled"
    assert set(ExternalShipment.objects.filter(tracking_number=first).values_list("state", flat=True)) == {
        "withdrawn"
    }
    assert ExternalShipment.objects.filter(tracking_number=replacement, state="matched").count() == len(lines)

    # The pushes: exactly one cancel at Genstore, and the replacement's fulfillment created with the same items.
    drained = store_pushes_drain(store=store, client=quick_client(store))
    assert drained.results == {"cancelled": 1, "created": 1}
    assert requests_seen(sandbox) == (1, 1, before[2] + 1)
    assert status_at_genstore(sandbox, order, first) == "cancelled"
    [created] = genstore_fulfillments(sandbox, order, replacement)
    assert created["status"] == "success"
    assert created["lineItems"] == [{"id": line.line_item_id, "quantity": line.quantity} for line in lines]
    assert FulfillmentPush.objects.get(shipment__tracking_number=first).state == FulfillmentPush.State.CANCELLED

    # Importing the void file again: every row known, nothing to push, nothing sent.
    again = import_csv(store, channel, second)
    assert outcomes(again) == [ALREADY] * len(second)
    assert store_pushes_drain(store=store, client=quick_client(store)).pushed == 0
    assert requests_seen(sandbox) == (1, 1, before[2] + 1)
    # And the first file again: the voided label is not used again.
    assert set(outcomes(import_csv(store, channel, imported_rows(order, first)))) == {ALREADY}
    assert requests_seen(sandbox) == (1, 1, before[2] + 1)


def imported_rows(order, number: str) -> list[tuple[object, ...]]:
    return [(order.order_id, number, "usps", line.line_item_id, line.quantity, "shipped") for line in lines_of(order)]


def test_a_void_for_a_number_never_imported_is_reported_and_the_other_rows_still_import(sandbox, store):
    order = open_order(store)
    channel = sheet(store)
    unknown, shipped = new_number(), new_number()
    rows = [("", unknown, "", "", "", "cancelled"), (order.order_id, shipped, "usps", "", "", "in transit")]

    report = import_csv(store, channel, rows)

    assert outcomes(report) == [NOTHING_TO_VOID, CREATED]
    [problem] = report.problems
    assert problem.line == 2 and "never reported" in problem.reason and problem.values["tracking_number"] == unknown
    assert "line 2: nothing to void" in report.as_text() and "1 voids with nothing to void" in report.summary()
    assert report.as_json()["nothingToVoid"] == 1 and report.count(REJECTED) == 0
    kept = ExternalShipment.objects.get(tracking_number=unknown)
    assert kept.voided and kept.state == "withdrawn" and kept.shipment is None
    assert not Shipment.objects.filter(tracking_number=unknown).exists()
    # Again: a no-op.
    assert outcomes(import_csv(store, channel, rows)) == [ALREADY, ALREADY]
    assert ExternalShipment.objects.filter(tracking_number=unknown).count() == 1


def test_a_void_withdraws_a_row_still_waiting_for_its_order_and_a_file_cannot_ship_what_it_voids(
    sandbox, store
):
    order = open_order(store)
    channel = sheet(store)
    waiting, number = new_number(), new_number()
    assert outcomes(import_csv(store, channel, [("NOT-MIRRORED-1", waiting, "usps", "", "", "")])) == [WAITING]

    report = import_csv(store, channel, [
        (order.order_id, number, "usps", "", "", ""),  # shipped and voided in one file: which is it?
        ("NOT-MIRRORED-1", waiting, "usps", "", "", "canceled"),
        ("", number, "", "", "", "Cancelled"),
    ])

    assert outcomes(report) == [REJECTED, VOIDED, NOTHING_TO_VOID]
    assert "voided on line 4" in report.results[0].reason
    assert ExternalShipment.objects.get(tracking_number=waiting, voided=False).state == "withdrawn"
    assert not Shipment.objects.filter(tracking_number__in=[waiting, number]).exists()


def test_the_status_column_and_its_spellings():
    data = to_csv([
        ("1001", "PARCEL000001", "", "", "", "voided"),
        ("", "PARCEL000002", "", "", "", " CANCELED "),
        ("1001", "PARCEL000003", "", "", "", "Shipped"),
        ("1001", "PARCEL000004", "", "", "", ""),
        ("", "PARCEL000005", "", "", "", "delivered"),  # not a void: it needs its order
    ], header=("Order", "Tracking Number", "carrier", "sku", "qty", "Shipment Status"))
    parsed = parse_tracking_csv(data)
    assert "status" in parsed.columns and not parsed.ignored_columns
    assert [row.record.voided if row.record else None for row in parsed.rows] == [True, True, False, False, None]
    assert parsed.rows[4].problem == "order is empty (required)"
    assert parsed.rows[2].record is not None and parsed.rows[2].record.status == "Shipped"
    for spelling in ("status", "label status", "Label-Status", "shipment_status"):
        assert parse_tracking_csv(f"order,tracking_number,{spelling}\n1,PARCEL000001,void\n".encode()).rows[0].record


def test_the_admin_upload_page_lists_a_void_with_nothing_to_void(sandbox, store, client, django_user_model):
    admin = django_user_model.objects.create_superuser("boss", "boss@example.com", "pw")
    client.force_login(admin)
    number = new_number()
    upload = SimpleUploadedFile("voids.csv", to_csv([("", number, "", "", "", "voided")]), "text/csv")
    response = client.post("/admin/channels/csvimport/upload/", {"store": store.pk, "file": upload})
    body = response.content.decode()
    assert response.status_code == 200
    assert "1 voids with nothing to void" in body and "nothing to void</td>" in body and number in body
