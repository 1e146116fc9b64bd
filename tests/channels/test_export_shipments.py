"""Tracking back to Amazon: `export_shipments --format amazon-confirm` lists every shipped external line per parcel,
with the channel's own ids, Amazon's carrier codes and the parcel's quantity; the admin offers the same file."""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Value
from django.db.models.functions import Concat, Substr
from django.utils import timezone

from oma.channels.connectors.base import AddressInput, ExternalOrderInput, ExternalOrderLineInput
from oma.channels.csv_import import tracking_csv_import
from oma.channels.marketplace_export import AMAZON_CONFIRM_COLUMNS
from oma.channels.models import Channel, ExternalOrder, ExternalOrderLine
from oma.channels.order_intake import external_orders_receive
from oma.channels.services import channel_create
from oma.orders.models import LineItem, Order
from oma.stores.models import Store
from tests.admin.factories import LineItemFactory, OrderFactory, ShipmentFactory
from tests.admin.world import merchant
from tests.channels.conftest import order_record, sync_orders
from tests.channels.test_csv_import import row, to_csv
from tests.fixtures_celery import ROOT, database_url_for_subprocesses
from tracking.models import Shipment, ShipmentLine

HEADER = "\t".join(AMAZON_CONFIRM_COLUMNS)


def external_order(order_id: str, lines: list[tuple[str, str, int]]) -> ExternalOrderInput:
    """An Amazon order; lines are (order-item-id, sku, quantity)."""
    return ExternalOrderInput(
        external_order_id=order_id, created_at=timezone.now() - timedelta(days=2), currency="USD",
        lines=tuple(ExternalOrderLineInput(sku=sku, title=f"item {sku}", quantity=quantity, price=Decimal("5.00"),
                                           external_line_id=item) for item, sku, quantity in lines),
        shipping_address=AddressInput(name="Ana", city="Seattle", zip="98101", country_code="US"),
    )


def created_in_genstore(channel: Channel, external_id: str, order_id: str, *, line_ids: dict[str, str]) -> Order:
    """What the create leaves behind: the Genstore order in the mirror, the row created and its lines' Genstore
    ids (by SKU; a line left out of `line_ids` gets no id, and the export finds it by its SKU)."""
    external = ExternalOrder.objects.get(channel=channel, external_order_id=external_id)
    lines = [(line_ids.get(line.sku, f"G{line.position}"), line.sku, line.quantity) for line in external.lines.all()]
    (order,) = sync_orders(channel.store, [order_record(order_id, lines, source_name="amazon",
                                                        source_identifier=external_id)])
    ExternalOrder.objects.filter(pk=external.pk).update(state="created", genstore_order_id=order_id, order=order)
    for sku, line_item_id in line_ids.items():
        ExternalOrderLine.objects.filter(external_order=external, sku=sku).update(genstore_line_item_id=line_item_id)
    return order


def export(*args: str) -> list[list[str]]:
    out = io.StringIO()
    call_command("export_shipments", *args, stdout=out)
    return [line.split("\t") for line in out.getvalue().splitlines()]


@pytest.fixture
def amazon(store: Store) -> Channel:
    channel = channel_create(store=store, kind="csv", name="Amazon", source_names=["amazon"])
    external_orders_receive(channel=channel, orders=[
        external_order("111-0000001", [("9001", "MUG-1", 2), ("9002", "POT-1", 1)]),
        external_order("222-0000002", [("9101", "TEA-1", 3)]),
        external_order("333-0000003", [("9201", "MUG-1", 1)]),  # never created in Genstore: nothing to export
    ])
    created_in_genstore(channel, "111-0000001", "5001", line_ids={"MUG-1": "L-MUG"})  # POT-1: by its SKU
    created_in_genstore(channel, "222-0000002", "5002", line_ids={"TEA-1": "L-TEA"})
    return channel


@pytest.mark.django_db
def test_every_shipped_external_line_per_parcel_with_amazon_carrier_codes(amazon, store):
    sync_orders(store, [order_record("5999", [("X1", "MUG-1", 1)])])  # a web order's parcel: not the channel's
    report = tracking_csv_import(store=store, file_name="t.csv", data=to_csv([
        row("111-0000001", "1Z999AA10123456784", carrier="UPS", sku="MUG-1", quantity="1", shipped_at="2026-11-02"),
        row("111-0000001", "7023210039414604", carrier="Canada Post", sku="MUG-1", quantity="1",
            shipped_at="2026-11-03T10:00:00Z"),
        row("111-0000001", "7023210039414604", carrier="Canada Post", sku="POT-1", quantity="1",
            shipped_at="2026-11-03T10:00:00Z"),
        row("222-0000002", "9400100000000000000017", carrier="usps"),  # the whole order: all 3 teas
        row("5999", "1Z999AA10123456791", carrier="ups"),
    ]))
    assert report.count("rejected") == 0 and report.count("created") == 4, report.as_text()

    rows = export("--channel", amazon.slug, "--format", "amazon-confirm")
    assert rows[0] == HEADER.split("\t")
    assert sorted(rows[1:]) == sorted([
        ["111-0000001", "9001", "1", "2026-11-02", "UPS", "", "1Z999AA10123456784", ""],
        ["111-0000001", "9001", "1", "2026-11-03", "Other", "Canada Post", "7023210039414604", ""],
        ["111-0000001", "9002", "1", "2026-11-03", "Other", "Canada Post", "7023210039414604", ""],
        ["222-0000002", "9101", "3", timezone.now().date().isoformat(), "USPS", "", "9400100000000000000017", ""],
    ])


@pytest.mark.django_db
def test_since_voided_labels_and_the_output_file(amazon, store, tmp_path):
    tracking_csv_import(store=store, file_name="t.csv", data=to_csv([
        row("111-0000001", "1Z999AA10123456784", carrier="ups", sku="MUG-1", quantity="2"),
        row("222-0000002", "9400100000000000000017", carrier="usps"),
    ]))
    three_days_ago = timezone.now() - timedelta(days=3)
    Shipment.objects.filter(tracking_number="1Z999AA10123456784").update(created_at=three_days_ago)
    assert [r[6] for r in export("--channel", amazon.slug, "--format", "amazon-confirm", "--since", "6h")[1:]] == [
        "9400100000000000000017"]
    assert len(export("--channel", amazon.slug, "--format", "amazon-confirm", "--since", "2026-01-01")) == 3
    Shipment.objects.filter(tracking_number="9400100000000000000017").update(status="cancelled")  # voided
    target = tmp_path / "confirm.txt"
    assert export("--channel", amazon.slug, "--format", "amazon-confirm", "--output", str(target)) == []
    assert target.read_text().splitlines() == [
        HEADER, "\t".join(["111-0000001", "9001", "2", three_days_ago.date().isoformat(), "UPS", "",
                           "1Z999AA10123456784", ""])]
    assert not list(tmp_path.glob(".confirm.txt.*"))  # no temporary file left behind


@pytest.mark.django_db
def test_bad_arguments(amazon):
    with pytest.raises(CommandError, match="unknown channel 'nope'; known channels: shop1-amazon"):
        export("--channel", "nope", "--format", "amazon-confirm")
    with pytest.raises(CommandError, match="--since 'yesterday'"):
        export("--channel", amazon.slug, "--format", "amazon-confirm", "--since", "yesterday")


@pytest.mark.django_db
def test_the_admin_offers_the_same_file_for_the_merchants_own_channels(amazon, store, other_store, client):
    tracking_csv_import(store=store, file_name="t.csv", data=to_csv([
        row("222-0000002", "9400100000000000000017", carrier="usps")]))
    client.force_login(merchant("amy", store))
    page = client.get(f"/admin/channels/channel/{amazon.pk}/change/").content.decode()
    assert f"/admin/channels/channel/{amazon.pk}/amazon-confirm/?since=7d" in page
    response = client.get(f"/admin/channels/channel/{amazon.pk}/amazon-confirm/", {"since": "all"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/tab-separated-values")
    assert "attachment; filename=\"amazon-shipping-confirmation-shop1-amazon-" in response["Content-Disposition"]
    body = b"".join(response.streaming_content).decode()
    assert body.splitlines()[1].startswith("222-0000002\t9101\t3\t")
    theirs = channel_create(store=other_store, kind="csv", name="Amazon", source_names=["amazon"])
    assert client.get(f"/admin/channels/channel/{theirs.pk}/amazon-confirm/").status_code in (302, 404)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_reader_that_stops_early_ends_the_export_quietly(amazon, store):
    """`export_shipments ... | head -1` on a file bigger than a pipe's buffer: status 0, no traceback."""
    count = 1500  # about 90 kB of rows: more than the pipe holds, so the export is still writing when head leaves
    external_orders_receive(channel=amazon, orders=[
        external_order(f"9{n:06d}", [(f"7{n:06d}", "MUG-1", 1)]) for n in range(count)])
    # Created in Genstore, the mirror linked by the Genstore order id only (the export's fallback).
    ExternalOrder.objects.filter(channel=amazon, external_order_id__startswith="9").update(
        state="created", genstore_order_id=Concat(Value("8"), Substr("external_order_id", 2)))
    orders = Order.objects.bulk_create([OrderFactory.build(store=store, order_id=f"8{n:06d}") for n in range(count)])
    items = LineItem.objects.bulk_create([LineItemFactory.build(order=order, sku="MUG-1") for order in orders])
    parcels = Shipment.objects.bulk_create([
        ShipmentFactory.build(store=store, order=order, tracking_number=f"1Z999AA1{n:010d}")
        for n, order in enumerate(orders)])
    ShipmentLine.objects.bulk_create([ShipmentLine(shipment=parcel, line_item=item, quantity=1)
                                      for parcel, item in zip(parcels, items, strict=True)])
    assert len(export("--channel", amazon.slug, "--format", "amazon-confirm")) == count + 1

    env = {"DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": database_url_for_subprocesses(),
           "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    shell = (f"{sys.executable} manage.py export_shipments --channel {amazon.slug} --format amazon-confirm | head -1;"
             " echo \"status=${PIPESTATUS[0]}\"")
    done = subprocess.run(["bash", "-c", shell], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines() == [HEADER, "status=0"], done.stderr
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
