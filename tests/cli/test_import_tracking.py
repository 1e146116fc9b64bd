"""import_tracking for a person at a terminal: progress on standard error, a non-zero exit when rows were rejected
(--allow-rejects to accept them), --channel of any kind by name or slug, and dry runs that create nothing."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
from django.core.management import load_command_class

from oma.channels.models import Channel, CsvImport, ExternalShipment
from oma.channels.services import channel_create
from oma.core.cli import EXIT_REJECTS
from oma.stores.models import Store
from tests.channels.conftest import order_record, sync_orders
from tests.cli.conftest import Terminal, run
from tracking.models import Shipment

pytestmark = pytest.mark.django_db

HEADER = "order,tracking_number,sku,quantity\n"


@pytest.fixture
def store() -> Store:
    store = Store.objects.create(domain="shop1.genmystore.com", access_token="t", client_secret="s")
    sync_orders(store, [order_record("1001", [("L1", "SKU-A", 2)]),
                        order_record("1002", [("L1", "SKU-B", 2)], source_name="amazon",
                                     source_identifier="111-2223334-5556667")])
    return store


def csv_file(tmp_path: Path, *rows: str) -> str:
    path = tmp_path / "tracking.csv"
    path.write_text(HEADER + "".join(f"{row}\n" for row in rows))
    return str(path)


def test_rejected_rows_exit_3_with_the_report_and_allow_rejects_exits_0(store, tmp_path):
    path = csv_file(
        tmp_path,
        "1001,PARCEL0000001,SKU-A,1",  # created
        "1001,,SKU-A,1",  # no tracking number
        "1001,PARCEL0000002,SKU-NOPE,1",  # no such SKU on the order
        "1001,PARCEL0000003,SKU-A,9",  # more than is left
        "7777,PARCEL0000004,,",  # unknown order: waits, not rejected
    )
    ran = run("import_tracking", path, "--store", store.domain)
    assert ran.status == EXIT_REJECTS == 3
    assert ran.error == "3 of 5 rows rejected (listed above); exit status 3 (--allow-rejects: 0)"
    assert "1 shipments created" in ran.out and "line 3: rejected: tracking_number is empty" in ran.out
    assert Shipment.objects.count() == 1  # the good row is kept

    again = run("import_tracking", path, "--store", store.domain, "--allow-rejects")
    assert again.status == 0 and "1 already imported" in again.out

    only_waiting = run("import_tracking", csv_file(tmp_path, "7778,PARCEL0000005,,"), "--store", store.domain)
    assert only_waiting.status == 0 and "1 waiting for their order" in only_waiting.out


def test_exit_codes_are_documented_in_help():
    command = load_command_class("oma.channels", "import_tracking")
    text = " ".join(command.create_parser("manage.py", "import_tracking").format_help().split())
    assert "Exit status: 0 imported, 3 some rows were rejected" in text and "--allow-rejects" in text


def test_progress_is_shown_on_a_terminal_only(store, tmp_path):
    path = csv_file(tmp_path, *(f"70{n:02d},PARCEL00001{n:02d},," for n in range(3)))  # waiting rows
    terminal = Terminal()
    assert run("import_tracking", path, "--store", store.domain, stderr=terminal).status == 0
    assert "tracking.csv" in terminal.getvalue() and "rows" in terminal.getvalue()
    piped = run("import_tracking", path, "--store", store.domain)
    assert piped.status == 0 and piped.err == ""


def test_channel_of_any_kind_by_name_or_slug_rows_keyed_by_its_order_ids(store, tmp_path):
    amazon = channel_create(store=store, kind="webhook", name="Amazon", source_names=["amazon"])
    path = csv_file(tmp_path, "111-2223334-5556667,PARCEL0000010,SKU-B,1")
    by_name = run("import_tracking", path, "--store", store.domain, "--channel", "Amazon")
    assert by_name.status == 0, by_name.out
    record = ExternalShipment.objects.get()
    assert record.channel == amazon and record.state == ExternalShipment.State.MATCHED
    assert Shipment.objects.get().order.order_id == "1002"

    path = csv_file(tmp_path, "111-2223334-5556667,PARCEL0000011,SKU-B,1")
    by_slug = run("import_tracking", path, "--store", store.domain, "--channel", amazon.slug)
    assert by_slug.status == 0 and ExternalShipment.objects.filter(channel=amazon).count() == 2

    unknown = run("import_tracking", path, "--store", store.domain, "--channel", "Amazn")
    assert unknown.status == 1 and "no channel named 'Amazn'" in unknown.error and "'Amazon' (" in unknown.error
    assert Channel.objects.count() == 1


def test_a_dry_run_creates_nothing_not_even_the_default_channel(store, tmp_path, caplog):
    path = csv_file(tmp_path, "1001,PARCEL0000020,SKU-A,1", "1001,PARCEL0000021,SKU-NOPE,1")
    with caplog.at_level(logging.INFO):
        ran = run("import_tracking", path, "--store", store.domain, "--dry-run")
    assert ran.status == EXIT_REJECTS and "dry run, nothing saved: " in ran.out and "1 shipments created" in ran.out
    assert not Channel.objects.exists() and not CsvImport.objects.exists() and not Shipment.objects.exists()
    assert "channel created" not in caplog.text

    with caplog.at_level(logging.INFO):
        real = run("import_tracking", path, "--store", store.domain, "--allow-rejects")
    assert real.status == 0 and Channel.objects.get().name == "CSV import" and "channel created" in caplog.text


def test_standard_input_is_read_with_a_dash(store):
    piped = io.StringIO(HEADER + "1001,PARCEL0000030,SKU-A,1\n")
    ran = run("import_tracking", "-", "--store", store.domain, stdin=piped)
    assert ran.status == 0 and ran.out.startswith("stdin: 1 rows: 1 shipments created")
