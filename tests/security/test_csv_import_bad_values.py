"""The tracking CSV import never raises on bad input: a row with a hostile value is rejected with its line number and
a short reason, and the good rows of the same file are imported (the service, and the admin upload page)."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from oma.channels.csv_import import tracking_csv_import
from oma.channels.models import CsvImport, ExternalShipment
from oma.stores.models import Store
from tests.channels.conftest import order_record, sync_orders
from tracking.models import Shipment

pytestmark = pytest.mark.django_db

HEADER = ["order", "tracking_number", "carrier", "sku", "line_item_id", "quantity", "shipped_at"]
MAX_REASON_CHARS = 300

BAD_QUANTITIES = [
    "9" * 5000,  # past Python's 4300-digit limit for int()
    "9" * 400,
    "1" + "0" * 30,
    "NaN", "Infinity", "-Infinity", "1e5", "0x10", "+1", "-1", "1_000", "1.0",
    "²", "١٢", "１２", "߁",  # superscript, Arabic-Indic, full-width and N'Ko digits
]
BAD_SHIPPED_AT = [
    "9" * 5000,
    "9999-12-31T23:59:59-23:59",
    "0001-01-01T00:00:00+23:59",  # year 0 once in UTC
    "0001-01-01",
    "1899-12-31",
    "NaN", "Infinity",
    "２０２４-０５-０１",
    "2024-05-01T00:00:00+99:00",
    "2024-05-01T00:00:00+23:59",  # Python takes it, PostgreSQL does not
    "2024-05-01" + "0" * 500,
]
OVERLONG = "A" * 10_000


@pytest.fixture
def store() -> Store:
    return Store.objects.create(domain="shop1.genmystore.com", name="Shop 1", access_token="t", client_secret="s")


def to_csv(rows: list[dict[str, str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HEADER, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode()


def bad_rows() -> list[dict[str, str]]:
    rows = [{"order": "4001", "tracking_number": f"BADQTY{i:06d}", "sku": "SKU-A", "quantity": value}
            for i, value in enumerate(BAD_QUANTITIES)]
    rows += [{"order": "4001", "tracking_number": f"BADDATE{i:06d}", "shipped_at": value}
             for i, value in enumerate(BAD_SHIPPED_AT)]
    rows += [
        {"order": "4001", "tracking_number": OVERLONG},
        {"order": OVERLONG, "tracking_number": "LONGORDER0001"},
        {"order": "4001", "tracking_number": "LONGSKU00001", "sku": OVERLONG, "quantity": "1"},
        {"order": "4001", "tracking_number": "LONGLINE00001", "line_item_id": OVERLONG},
        {"order": "4001", "tracking_number": "LONGCARR00001", "carrier": OVERLONG},
        {"order": "4001", "tracking_number": "LONGQTY000001", "sku": "SKU-A", "quantity": "1" * 10_000},
    ]
    return rows


def test_csv_import_rejects_huge_nan_non_ascii_and_overlong_values_by_line_and_keeps_the_good_rows(store):
    sync_orders(store, [order_record("4001", [("L1", "SKU-A", 3)]), order_record("4002")])
    good = {"order": "4002", "tracking_number": "GOODROW00001", "sku": "SKU-A", "quantity": "1",
            "shipped_at": "2024-05-01"}
    bad = bad_rows()
    report = tracking_csv_import(store=store, data=to_csv([good, *bad]), file_name="hostile.csv")

    assert report.ok, report.file_error
    assert report.results[0].outcome == "created"
    rejected = report.results[1:]
    assert [r.line for r in rejected] == list(range(3, 3 + len(bad)))
    for result, sent in zip(rejected, bad, strict=True):
        assert result.outcome == "rejected", (sent, result)
        assert result.reason and len(result.reason) <= MAX_REASON_CHARS, (sent, result.reason[:80])
    assert Shipment.objects.get().tracking_number == "GOODROW00001"
    assert ExternalShipment.objects.count() == 1
    assert CsvImport.objects.get().rejected == len(bad)


def test_csv_import_reads_a_5000_digit_quantity_as_not_plausible(store):
    sync_orders(store, [order_record("4003")])
    report = tracking_csv_import(
        store=store, file_name="q.csv",
        data=to_csv([{"order": "4003", "tracking_number": "HUGEQTY00001", "sku": "SKU-A", "quantity": "9" * 5000}]),
    )
    (result,) = report.results
    assert result.outcome == "rejected" and result.line == 2
    assert "quantity" in result.reason and "not plausible" in result.reason


def test_csv_import_refuses_non_ascii_digits_in_quantity(store):
    sync_orders(store, [order_record("4004", [("L1", "SKU-A", 20)])])
    report = tracking_csv_import(
        store=store, file_name="q.csv",
        data=to_csv([{"order": "4004", "tracking_number": "ARABIC000001", "sku": "SKU-A", "quantity": "١٢"}]),
    )
    assert report.results[0].outcome == "rejected"
    assert "not a whole number" in report.results[0].reason
    assert not Shipment.objects.exists()


def test_csv_import_refuses_a_shipped_at_before_2000_or_beyond_utc(store):
    sync_orders(store, [order_record("4005")])
    report = tracking_csv_import(
        store=store, file_name="d.csv",
        data=to_csv([
            {"order": "4005", "tracking_number": "OLDDATE00001", "shipped_at": "0001-01-01T00:00:00+23:59"},
            {"order": "4005", "tracking_number": "OLDDATE00002", "shipped_at": "1899-12-31"},
        ]),
    )
    assert [r.outcome for r in report.results] == ["rejected", "rejected"]
    assert all("shipped_at" in r.reason for r in report.results)
    assert not ExternalShipment.objects.exists()


def test_admin_csv_upload_answers_200_with_the_report_for_a_5000_digit_quantity(store, client, django_user_model):
    sync_orders(store, [order_record("4006")])
    client.force_login(django_user_model.objects.create_superuser("boss", "boss@example.com", "pw"))
    data = to_csv([
        {"order": "4006", "tracking_number": "HUGEQTY00002", "sku": "SKU-A", "quantity": "9" * 5000},
        {"order": "4006", "tracking_number": "GOODROW00002"},
    ])
    response = client.post("/admin/channels/csvimport/upload/",
                           {"store": store.pk, "file": SimpleUploadedFile("u.csv", data, "text/csv")})
    assert response.status_code == 200
    body = response.content.decode()
    assert "line 2" in body and "not plausible" in body
    assert Shipment.objects.get().tracking_number == "GOODROW00002"
