"""A reader that stops early (`| head -1`) ends a streaming command quietly: status 0, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from oma.orders.models import Order
from oma.stores.models import Store

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
@pytest.mark.parametrize("output_format", ["jsonl", "csv"])
def test_export_orders_into_a_closed_pipe_ends_quietly(output_format):
    store = Store.objects.create(domain="shop1.genmystore.com", access_token="t", client_secret="s")
    Order.objects.bulk_create(Order(store=store, order_id=str(1000 + n), name=f"#{1000 + n}") for n in range(300))
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone (head has printed its line and exited)
    with open(write_end, "w", buffering=1) as pipe:
        result = call_command("export_orders", "--store", store.domain, "--format", output_format, stdout=pipe)
        assert result == ""
        pipe.write("later output is discarded, not raised\n")
        pipe.flush()


def test_head_ends_a_real_command_quietly():
    """The shell's own pipeline, end to end: the interpreter's last flush at exit must not complain either."""
    numbers = ["1Z999AA10123456784"] * 5000  # far more than a pipe buffer
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    command = subprocess.Popen([sys.executable, "manage.py", "detect_carrier", *numbers], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert command.stdout is not None and command.stderr is not None
    first = command.stdout.readline()
    command.stdout.close()  # what `head -1` does after its line
    errors = command.stderr.read().decode()
    assert command.wait(timeout=60) == 0, errors
    assert first.startswith(b'{"number": "1Z999AA10123456784"')
    assert "Traceback" not in errors and "BrokenPipe" not in errors and errors == ""
