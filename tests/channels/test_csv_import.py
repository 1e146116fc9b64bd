"""CSV import: the acceptance file (1,000 rows, 30 bad), split shipments, re-imports, the command and the page."""

from __future__ import annotations

import csv
import io
import random
import re
from collections import defaultdict
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Sum

from oma.channels.csv_import import tracking_csv_import
from oma.channels.models import Channel, CsvImport, ExternalShipment
from oma.core.cli import EXIT_REJECTS
from oma.orders.models import LineItem
from tests.channels.conftest import order_record, sync_orders
from tracking.models import Shipment, ShipmentLine

pytestmark = pytest.mark.django_db

HEADER = ["order", "tracking_number", "carrier", "sku", "line_item_id", "quantity", "shipped_at"]


def to_csv(rows: list[dict[str, str]], header: list[str] = HEADER) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return buffer.getvalue().encode()


def tn(n: int) -> str:
    return f"TEST{n:010d}"


def row(order: str, number: str, *, sku: str = "", line_item_id: str = "", quantity: str = "", carrier: str = "",
        shipped_at: str = "") -> dict[str, str]:
    return {"order": order, "tracking_number": number, "carrier": carrier, "sku": sku, "line_item_id": line_item_id,
            "quantity": quantity, "shipped_at": shipped_at}


def assert_never_over_shipped() -> None:
    held = defaultdict(int)
    for line_item_id, quantity in (
        ShipmentLine.objects.exclude(shipment__status="cancelled").values_list("line_item_id", "quantity")
    ):
        held[line_item_id] += quantity
    for line in LineItem.objects.filter(pk__in=held):
        assert held[line.pk] <= line.quantity, f"line {line.line_item_id} of order {line.order_id} over-shipped"


def build_acceptance_file(store) -> tuple[bytes, dict[int, str]]:
    """970 good rows and 30 bad ones (6 of each kind); returns the file and {line: expected reason pattern}."""
    records = [order_record(f"{1000 + i}", [("L1", "SKU-A", 2), ("L2", "SKU-B", 1)]) for i in range(400)]
    records += [
        order_record(f"{1000 + i}", [("L1", "SKU-C", 3)], source_name="amazon", source_identifier=f"111-{i:07d}")
        for i in range(400, 490)
    ]
    sync_orders(store, records)
    number = iter(range(1, 10_000))
    good: list[dict[str, str]] = []
    for i in range(250):  # split shipments: three parcels, two holding part of a line's quantity
        good.append(row(f"{1000 + i}", tn(next(number)), sku="SKU-A", quantity="1", carrier="UPS"))
        good.append(row(f"{1000 + i}", tn(next(number)), line_item_id="L1", quantity="1"))
        good.append(row(f"{1000 + i}", tn(next(number)), sku="sku-b", shipped_at="2024-05-01"))
    for i in range(250, 400):  # the whole order in one parcel
        good.append(row(f"{1000 + i}", tn(next(number)), carrier="fedex", shipped_at="2024-05-02T10:00:00Z"))
    for i in range(400, 470):  # by the marketplace's order id (sourceIdentifier)
        good.append(row(f"111-{i:07d}", tn(next(number)), sku="SKU-C", quantity="3"))
    assert len(good) == 970

    bad: list[tuple[dict[str, str], str]] = []
    for k in range(6):
        bad.append((row(f"NOPE-{k}", tn(next(number))), r"unknown order"))
    for k, malformed in enumerate(["12-34", "ABC$%^123456", "ZZ", "1Z#99", "TOO" * 20, "ÄÖÜ123456"]):
        bad.append((row(f"{1000 + 470 + k}", malformed), r"malformed"))
    for k in range(3):  # the order's SKU-A is already fully in parcels by then
        bad.append((row(f"{1000 + k}", tn(next(number)), sku="SKU-A", quantity="1"), r"more than is left"))
    for k in range(3):  # more than the order has at all
        bad.append((row(f"111-{480 + k:07d}", tn(next(number)), sku="SKU-C", quantity="5"), r"more than is left"))
    for k in range(6):
        bad.append((dict(good[100 + k * 37]), r"duplicate of line"))
    for k in range(3):
        bad.append((row(f"{1000 + 300 + k}", ""), r"tracking_number is empty"))
    for _ in range(3):
        bad.append((row("", tn(next(number))), r"order is empty"))
    assert len(bad) == 30

    # Good rows keep their order (the over-quantity rows must come after the parcels they compete with); the
    # bad rows go at random places after everything they depend on.
    rng = random.Random(5)
    rows: list[tuple[dict[str, str], str | None]] = [(r, None) for r in good]
    for bad_row, reason in bad:
        rows.insert(rng.randint(len(good) - 100, len(rows)), (bad_row, reason))
    expected = {index + 2: reason for index, (_, reason) in enumerate(rows) if reason}
    return to_csv([r for r, _ in rows]), expected


@pytest.mark.postgres
@pytest.mark.slow
def test_acceptance_1000_rows_30_bad_then_reimport_creates_nothing(store):
    data, expected = build_acceptance_file(store)
    report = tracking_csv_import(store=store, data=data, file_name="tracking.csv")

    assert report.ok and report.rows == 1000
    assert Shipment.objects.filter(store=store).count() == 970
    assert report.shipments_created == 970
    problems = {problem.line: problem for problem in report.problems}
    assert set(problems) == set(expected), "the report names exactly the 30 bad rows"
    for line, pattern in expected.items():
        assert re.search(pattern, problems[line].reason), (line, problems[line].reason, pattern)
    assert report.count("rejected") == 24 and report.count("waiting") == 6
    text = report.as_text()
    for line in expected:
        assert f"line {line}: " in text
    assert_never_over_shipped()
    # Split shipments: three parcels on each of the first 250 orders, quantities exactly as the rows said.
    first = Shipment.objects.filter(order__order_id="1000").prefetch_related("lines__line_item")
    assert sorted(
        (line.line_item.sku, line.quantity) for shipment in first for line in shipment.lines.all()
    ) == [("SKU-A", 1), ("SKU-A", 1), ("SKU-B", 1)]
    assert first.count() == 3
    records_before = ExternalShipment.objects.count()

    again = tracking_csv_import(store=store, data=data, file_name="tracking.csv")
    assert Shipment.objects.filter(store=store).count() == 970
    assert ExternalShipment.objects.count() == records_before
    assert again.shipments_created == 0 and again.count("already") == 970
    assert {problem.line for problem in again.problems} == set(expected)
    assert ShipmentLine.objects.aggregate(total=Sum("quantity"))["total"] == 250 * 3 + 150 * 3 + 70 * 3
    assert CsvImport.objects.count() == 2


def test_rows_of_one_parcel_make_one_shipment_with_several_lines(store):
    sync_orders(store, [order_record("2001", [("L1", "SKU-A", 2), ("L2", "SKU-B", 1), ("L3", "GIFT", 1)],
                                     requires_shipping={"L3": False})])
    data = to_csv([
        row("2001", "1Z 999 AA1 0123456784", sku="SKU-A", quantity="2"),
        row("2001", "1z999aa10123456784", sku="SKU-B"),
    ])
    report = tracking_csv_import(store=store, data=data, file_name="parcel.csv")
    assert [r.outcome for r in report.results] == ["created", "added"]
    shipment = Shipment.objects.get()
    assert shipment.tracking_number == "1Z999AA10123456784" and shipment.carrier == "ups"
    assert sorted((line.line_item.sku, line.quantity) for line in shipment.lines.all()) == [("SKU-A", 2), ("SKU-B", 1)]
    assert shipment.source == Shipment.Source.CSV


def test_whole_order_row_takes_only_what_is_left_and_skips_items_that_do_not_ship(store):
    sync_orders(store, [order_record("2002", [("L1", "SKU-A", 3), ("L2", "SKU-B", 1), ("L3", "GIFT", 1)],
                                     requires_shipping={"L3": False}, fulfillable={"L1": 2})])
    data = to_csv([row("2002", "PARCEL000001", sku="SKU-A", quantity="1"), row("2002", "PARCEL000002")])
    report = tracking_csv_import(store=store, data=data, file_name="rest.csv")
    assert [r.outcome for r in report.results] == ["created", "created"]
    second = Shipment.objects.get(tracking_number="PARCEL000002")
    # SKU-A: 3 ordered but Genstore says 2 can still be fulfilled, one of which the first parcel holds.
    assert sorted((line.line_item.sku, line.quantity) for line in second.lines.all()) == [("SKU-A", 1), ("SKU-B", 1)]
    third = tracking_csv_import(store=store, data=to_csv([row("2002", "PARCEL000003")]), file_name="more.csv")
    assert third.results[0].outcome == "rejected"
    assert "nothing left to ship" in third.results[0].reason


def test_same_number_on_two_orders_and_cancelled_orders_are_refused(store):
    sync_orders(store, [order_record("3001"), order_record("3002"), order_record("3003", cancelled=True)])
    data = to_csv([row("3001", "SHARED000001"), row("3002", "SHARED000001"), row("3003", "PARCEL000009")])
    report = tracking_csv_import(store=store, data=data, file_name="x.csv")
    outcomes = [(r.outcome, r.reason) for r in report.results]
    assert outcomes[0] == ("created", "")
    assert outcomes[1][0] == "rejected" and "already used for order 3001 on line 2" in outcomes[1][1]
    assert outcomes[2][0] == "rejected" and "cancelled" in outcomes[2][1]
    # Across files too: the tracking engine refuses one number on two orders, and the report says which.
    later = tracking_csv_import(store=store, data=to_csv([row("3002", "SHARED000001")]), file_name="y.csv")
    assert later.results[0].outcome == "rejected" and "already on order 3001" in later.results[0].reason


def test_unknown_order_waits_and_is_matched_when_the_order_syncs(store, django_capture_on_commit_callbacks):
    report = tracking_csv_import(
        store=store, data=to_csv([row("111-0000042", "LATE00000001", sku="SKU-A", quantity="1")]), file_name="l.csv"
    )
    assert report.results[0].outcome == "waiting"
    assert ExternalShipment.objects.get().state == ExternalShipment.State.UNMATCHED
    with django_capture_on_commit_callbacks(execute=True):
        sync_orders(store, [order_record("4001", [("L1", "SKU-A", 2)], source_name="amazon",
                                         source_identifier="111-0000042")])
    record = ExternalShipment.objects.get()
    assert record.state == ExternalShipment.State.MATCHED and record.order.order_id == "4001"
    assert record.shipment.lines.get().quantity == 1
    again = tracking_csv_import(
        store=store, data=to_csv([row("111-0000042", "LATE00000001", sku="SKU-A", quantity="1")]), file_name="l.csv"
    )
    assert again.results[0].outcome == "already" and Shipment.objects.count() == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"foo,bar\n1,2\n", "must name the columns order and tracking_number"),
        (b"PK\x03\x04binary", "spreadsheet"),
        (b"order,tracking_number,order_id\n1,2,3\n", "two columns mean 'order'"),
        (b"\x00\x01\x02", "not a text file"),
    ],
)
def test_a_file_that_cannot_be_read_is_refused_whole_and_saves_nothing(store, data, message):
    report = tracking_csv_import(store=store, data=data, file_name="bad.csv")
    assert not report.ok and message in report.file_error
    assert not ExternalShipment.objects.exists() and not CsvImport.objects.exists()


def test_headers_delimiters_encodings_and_quoting_people_use(store):
    sync_orders(store, [order_record("5001", [("L1", "SKU-É", 2)])])
    text = '\ufeffOrder Number;Tracking No;Carrier;SKU;Qty\n"5001";"1Z999AA10123456784";United Parcel Service;SKU-É;2\n'
    report = tracking_csv_import(store=store, data=text.encode("utf-8"), file_name="semicolon.csv")
    assert [r.outcome for r in report.results] == ["created"], report.as_text()
    assert Shipment.objects.get().carrier == "ups"
    windows = "order,tracking_number,sku\n5001,PARCEL000077,SKU-É\n".encode("cp1252")
    report = tracking_csv_import(store=store, data=windows, file_name="excel.csv")
    assert report.results[0].outcome == "rejected" and "nothing left to ship of sku" in report.results[0].reason


def test_row_checks(store):
    sync_orders(store, [order_record("6001")])
    data = to_csv([
        row("6001", "PARCEL000100", quantity="2"),
        row("6001", "PARCEL000101", sku="SKU-A", quantity="0"),
        row("6001", "PARCEL000102", sku="SKU-A", quantity="1.5"),
        row("6001", "PARCEL000103", shipped_at="yesterday"),
        row("6001", "PARCEL000104", shipped_at="2999-01-01"),
        row("6001", "PARCEL000105", sku="NOPE"),
        row("6001", "PARCEL000106", line_item_id="L9"),
    ])
    reasons = [r.reason for r in tracking_csv_import(store=store, data=data, file_name="c.csv").results]
    assert "quantity needs a sku or line_item_id" in reasons[0]
    assert "not a whole number" in reasons[1] and "not a whole number" in reasons[2]
    assert "is not a date" in reasons[3]
    assert "in the future" in reasons[4]
    assert "has no sku 'NOPE'" in reasons[5]
    assert "has no line item L9" in reasons[6]
    assert not Shipment.objects.exists()


def test_dry_run_checks_against_orders_and_saves_nothing(store):
    sync_orders(store, [order_record("7001")])
    report = tracking_csv_import(
        store=store, data=to_csv([row("7001", "PARCEL000200"), row("nope", "PARCEL000201")]), file_name="d.csv",
        dry_run=True,
    )
    assert [r.outcome for r in report.results] == ["created", "waiting"]
    assert report.summary().startswith("dry run")
    assert not Shipment.objects.exists() and not ExternalShipment.objects.exists() and not CsvImport.objects.exists()


def test_command_prints_the_report_and_fails_only_on_an_unreadable_file(store, tmp_path: Path):
    sync_orders(store, [order_record("8001")])
    path = tmp_path / "t.csv"
    path.write_bytes(to_csv([row("8001", "PARCEL000300"), row("8001", "")]))
    out = io.StringIO()
    call_command("import_tracking", str(path), "--store", store.domain, "--allow-rejects", stdout=out)
    text = out.getvalue()
    assert "1 shipments created" in text and "line 3: rejected: tracking_number is empty (required)" in text
    assert Channel.objects.get(store=store).kind == "csv"
    assert CsvImport.objects.get().via == "command"
    out = io.StringIO()
    with pytest.raises(CommandError, match="1 of 2 rows rejected") as rejected:  # without --allow-rejects: exit 3
        call_command("import_tracking", str(path), "--store", store.domain, stdout=out)
    assert rejected.value.returncode == EXIT_REJECTS
    assert "line 3: rejected: tracking_number is empty (required)" in out.getvalue()

    path.write_bytes(b"nothing useful\n")
    with pytest.raises(CommandError, match="must name the columns"):
        call_command("import_tracking", str(path), "--store", store.domain, stdout=io.StringIO())
    with pytest.raises(CommandError, match="unknown store"):
        call_command("import_tracking", str(path), "--store", "nope.genmystore.com")
    path.write_bytes(to_csv([row("8001", "PARCEL000301")]))
    with pytest.raises(CommandError, match="no channel named 'Amazon'"):
        call_command("import_tracking", str(path), "--store", store.domain, "--channel", "Amazon", stdout=io.StringIO())
    assert Shipment.objects.count() == 1


def test_admin_upload_page_runs_the_same_service_and_shows_the_report(store, client, django_user_model):
    from django.core.files.uploadedfile import SimpleUploadedFile

    sync_orders(store, [order_record("9001")])
    admin = django_user_model.objects.create_superuser("boss", "boss@example.com", "pw")
    client.force_login(admin)
    url = "/admin/channels/csvimport/upload/"
    page = client.get(url)
    assert page.status_code == 200 and b"Import tracking CSV" in page.content
    upload = SimpleUploadedFile("upload.csv", to_csv([row("9001", "PARCEL000400"), row("9001", "X")]), "text/csv")
    response = client.post(url, {"store": store.pk, "file": upload})
    assert response.status_code == 200
    body = response.content.decode()
    assert "1 shipments created" in body and "line 3" in body and "malformed" in body
    assert CsvImport.objects.get().via == "admin" and CsvImport.objects.get().uploaded_by == admin
    assert Shipment.objects.get().tracking_number == "PARCEL000400"


def test_admin_upload_page_only_offers_the_users_stores(store, other_store, client, django_user_model):
    from oma.stores.models import StoreMembership

    staff = django_user_model.objects.create_user("clerk", "c@example.com", "pw", is_staff=True)
    StoreMembership.objects.create(user=staff, store=store)
    from django.contrib.auth.models import Permission

    staff.user_permissions.add(*Permission.objects.filter(content_type__app_label="channels"))
    client.force_login(staff)
    page = client.get("/admin/channels/csvimport/upload/")
    assert page.status_code == 200
    assert b">Shop 1<" in page.content and b"Shop 2" not in page.content
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("u.csv", to_csv([row("1", "PARCEL000500")]), "text/csv")
    response = client.post("/admin/channels/csvimport/upload/", {"store": other_store.pk, "file": upload})
    assert not CsvImport.objects.exists()
    assert response.status_code == 200 and b"Select a valid choice" in response.content
