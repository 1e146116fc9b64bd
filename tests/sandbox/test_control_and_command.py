from __future__ import annotations

import os
import select
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from oma.sandbox import SandboxControl, SandboxProcess
from oma.sandbox.cli import parse_rate_limit, parse_shops
from oma.sandbox.control import SandboxControlError, parse_startup_line
from tests.sandbox.conftest import orders_url

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_control_endpoints_mirror_the_python_api(sandbox, api, receiver):
    control = SandboxControl(sandbox.url)
    assert control.health()
    info = control.info()
    assert info["shops"]["shop1"]["baseUrl"] == sandbox.base_url_for("shop1")
    assert info["accessToken"] == sandbox.access_token and info["clientSecret"] == sandbox.client_secret

    changed = control.mutate_orders("shop1", 5, seed=1)
    assert len(changed) == 5
    assert control.order("shop1", changed[0]) == sandbox.order("shop1", changed[0])
    assert control.canonical("shop1", changed[0])["orderId"] == changed[0]
    assert set(control.quirky_order_ids("shop1")) == set(sandbox.quirky_order_ids("shop1"))
    added = control.add_orders("shop1", 2)
    assert control.order_count("shop1") == 302
    assert control.cancel_order("shop1", added[0], reason="fraud")["cancelReason"] == "fraud"

    control.set_faults(error_rate=1.0, status=502)
    assert api.get(orders_url(sandbox)).status_code == 502
    control.set_faults()
    control.set_rate_limit(1, 0.0, handle="shop1")
    api.get(orders_url(sandbox))
    assert api.get(orders_url(sandbox)).status_code == 429
    stats = control.stats("shop1")
    assert stats["rate_limited"] == 1 and stats["faults_injected"] == 1
    control.reset_stats()
    assert control.stats("shop1")["requests"] == 0

    [webhook_id] = control.send_webhook(
        "shop2", "app/uninstalled", {"app": {"clientId": "c", "shopId": "1"}}, address=receiver.url
    )
    assert control.wait_for_webhooks(10)
    [attempt] = control.webhook_attempts("shop2")
    assert attempt["webhook_id"] == webhook_id and attempt["status"] == 200

    control.set_access_token("rotated")
    assert api.get(orders_url(sandbox, "shop2")).status_code == 401

    with pytest.raises(SandboxControlError) as error:
        control.order("shop1", "42")
    assert error.value.status == 404
    assert requests.get(f"{sandbox.url}/_sandbox/nothing", timeout=5).status_code == 404


def test_rate_limit_and_shop_options():
    assert parse_rate_limit("40/2") == (40, 2.0)
    assert parse_rate_limit("200/20") == (200, 20.0)
    assert parse_rate_limit("off") is None
    assert parse_shops(["a,b", "c"]) == ["a", "b", "c"]
    assert parse_shops(None) == ["shop1"]


def test_startup_line_parses():
    line = (
        "Genstore sandbox ready base_urls=http://127.0.0.1:8100/shop1,http://127.0.0.1:8100/shop2 "
        "domains=shop1.genmystore.com,shop2.genmystore.com access_token=t client_secret=s api_version=202412 "
        "orders=500,500 seed=1 control=http://127.0.0.1:8100/_sandbox/"
    )
    details = parse_startup_line(line)
    assert details["base_urls"].split(",")[1] == "http://127.0.0.1:8100/shop2"
    assert details["access_token"] == "t" and details["client_secret"] == "s"


def test_sandbox_in_a_subprocess_is_driven_over_http():
    with SandboxProcess(orders=120, seed=2, shops=("alpha", "beta"), rate_limit="off") as process:
        session = requests.Session()
        session.headers["X-Genstore-Access-Token"] = process.access_token
        count = session.get(f"{process.base_url_for('beta')}/api/202412/orders/count", timeout=10)
        assert count.json() == {"count": 120}
        changed = process.control.mutate_orders("alpha", 3)
        assert len(changed) == 3
        assert process.control.stats("beta")["requests"] == 1
        assert process.domain_for("alpha") == "alpha.genmystore.com"
    assert process.process is None


def test_management_command_prints_one_line_to_connect_a_store():
    command = [
        sys.executable, "manage.py", "genstore_sandbox", "--port", "0", "--orders", "20", "--seed", "3",
        "--shop", "demo", "--access-token", "tok", "--client-secret", "sec", "--rate-limit", "40/4",
    ]  # fmt: skip
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True, env={**env, "DEBUG": "1"})
    try:
        ready, _, _ = select.select([process.stdout], [], [], 60)
        assert ready, "no startup line within 60 s"
        details = parse_startup_line(process.stdout.readline().strip())
        assert details["access_token"] == "tok" and details["client_secret"] == "sec"
        assert details["domains"] == "demo.genmystore.com"
        base_url = details["base_urls"]
        response = requests.get(
            f"{base_url}/api/202412/orders/count", headers={"X-Genstore-Access-Token": "tok"}, timeout=10
        )
        assert response.json() == {"count": 20}
        assert response.headers["X-Genstore-Shop-Api-Rate-Limit"] == "1/40"
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()
