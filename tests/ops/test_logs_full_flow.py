"""A full run's logs hold none of the secrets, tokens or customer e-mails it handled, and carry store and order ids.

Real processes at DEBUG level, each writing its log to a file: gunicorn takes signed webhooks, a Celery worker
sweeps the store, processes the webhooks, polls a carrier and pushes fulfillments to Genstore (sandboxes over HTTP,
with credentials made up for this run). A `manage.py shell` plays the developer who logs a token and an e-mail by
mistake, and this process logs the same way. Then every line of every log is searched for every secret used:
the Genstore token and client secret, the carrier credentials and the OAuth token they earned, the webhooks'
HMACs, SECRET_KEY and the encryption key, and every customer e-mail of the store.
"""

from __future__ import annotations

import json
import logging
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from oma.fulfillment.models import FulfillmentPush
from oma.ops.logging import ContextFilter, JsonFormatter
from oma.orders.models import Order, SyncRun
from oma.orders.tasks import sweep_store
from oma.sandbox.server import GenstoreSandbox
from oma.stores.models import Store
from tests.faults.processes import celery_app_publishing_to
from tests.fixtures_celery import ROOT, subprocess_env, wait_until
from tests.tracking.conftest import ALL_DONE, EPOCH, FAST_LIMITS
from tests.webhooks.payloads import encode
from tests.webhooks.sender import post_all, signed_delivery
from tracking.models import CarrierAccount, Shipment
from tracking.polling import forget_transports
from tracking.sandbox import CarrierSandbox, numbers_for
from tracking.services import carrier_account_add, shipment_add
from tracking.tasks import poll_due
from webhooks.models import WebhookDelivery

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

HANDLE = "shop1"


def test_no_secret_token_or_customer_email_in_any_log_of_a_full_run(
    transactional_db, private_redis, gunicorn_factory, celery_worker_factory, tmp_path
):
    token = f"gst_{secrets.token_hex(16)}"
    client_secret = f"gcs_{secrets.token_hex(16)}"
    carrier_secret = f"usps-secret-{secrets.token_hex(12)}"
    genstore = GenstoreSandbox(orders=40, seed=5, shops=(HANDLE,), access_token=token, client_secret=client_secret,
                               rate_limit=None).start()
    carriers = CarrierSandbox(port=0, epoch=EPOCH, rate_limits=FAST_LIMITS).start()
    carriers.set_clock(ALL_DONE)
    carriers.set_credentials("usps", client_id="usps-client", client_secret=carrier_secret)
    in_process_log = tmp_path / "pytest-process.log"
    handler = logging.FileHandler(in_process_log)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    previous_level = root.level
    root.setLevel(logging.DEBUG)
    try:
        with celery_app_publishing_to(private_redis.url()):
            _run(genstore, carriers, private_redis, gunicorn_factory, celery_worker_factory, tmp_path,
                 token=token, client_secret=client_secret, carrier_secret=carrier_secret,
                 in_process_log=in_process_log)
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)
        handler.close()
        genstore.stop()
        carriers.stop()
        forget_transports()


def _run(genstore, carriers, private_redis, gunicorn_factory, celery_worker_factory, tmp_path: Path, *,
         token: str, client_secret: str, carrier_secret: str, in_process_log: Path) -> None:
    env = subprocess_env(broker_url=private_redis.url(), extra={
        "REDIS_URL": private_redis.url(1), "LOG_LEVEL": "DEBUG", "LOG_FORMAT": "json"})
    store = Store.objects.create(domain=genstore.domain_for(HANDLE), api_base_url=genstore.base_url_for(HANDLE),
                                 access_token=token, client_secret=client_secret)
    carrier_account_add(carrier="usps", base_url=carriers.base_url, client_id="usps-client",
                        client_secret=carrier_secret, rate_limit=FAST_LIMITS["usps"])
    web = gunicorn_factory(env=env, workers=1, threads=2)
    worker = celery_worker_factory(env=env, concurrency=2)

    # --- sweep ------------------------------------------------------------------------------------------------
    sweep_store.delay(store.pk, SyncRun.Kind.FULL)
    wait_until(lambda: SyncRun.objects.filter(store=store, state=SyncRun.State.SUCCEEDED).exists(), timeout=90,
               interval=0.5, what=f"the sweep\n{worker.log_tail()}")
    emails = {email for email in Order.objects.filter(store=store).values_list("email", flat=True) if email}
    assert len(emails) > 10

    # --- webhooks (one forged) ----------------------------------------------------------------------------------
    order_ids = [o["orderId"] for o in list(genstore.orders(HANDLE))[:5]]
    deliveries = [signed_delivery(encode({"order": genstore.raw_order(HANDLE, order_id)}), topic="orders/update",
                                  shop=store.domain, secret=client_secret, webhook_id=f"wh-{order_id}")
                  for order_id in order_ids]
    hmacs = {d.headers["X-Genstore-Hmac-Sha256"] for d in deliveries}
    forged_body = encode({"order": genstore.raw_order(HANDLE, order_ids[0])})
    forged = signed_delivery(forged_body, topic="orders/update", shop=store.domain, secret="not-the-secret")
    report = post_all(f"{web.base_url}/webhooks/genstore/", [*deliveries, forged], concurrency=1)
    assert report.statuses == [200] * 5 + [401]
    wait_until(lambda: WebhookDelivery.objects.filter(state="processed").count() == 5, timeout=60, interval=0.5,
               what=f"webhooks processed\n{worker.log_tail()}")

    # --- poll and push --------------------------------------------------------------------------------------------
    orders = [o for o in Order.objects.filter(store=store, cancelled_at__isnull=True, financial_status="paid")
              if all(li.fulfillable_quantity == li.quantity > 0 and li.requires_shipping is not False
                     for li in o.line_items.all())][:3]
    for index, order in enumerate(orders):
        shipment_add(store=store, order=order, carrier="usps", source=Shipment.Source.CSV,
                     tracking_number=next(numbers_for("usps", 1, start=900 + index)),
                     lines=[(li, li.quantity) for li in order.line_items.all()])
    poll_due.delay()
    csv = Shipment.Source.CSV  # these shipments (the sandbox's own fulfillments are tracked too, as `genstore`)
    wait_until(lambda: FulfillmentPush.objects.filter(state="succeeded", shipment__source=csv).count() == len(orders)
               and not Shipment.objects.filter(last_polled_at__isnull=True, source=csv).exists(),
               timeout=90, interval=0.5, what=f"polls and pushes\n{worker.log_tail()}")
    oauth_token = CarrierAccount.objects.get(carrier="usps").oauth_token
    assert oauth_token

    # --- careless logging, in a subprocess and here -------------------------------------------------------------
    careless = (
        "import logging; from oma.stores.models import Store; s = Store.objects.get(); "
        "o = s.orders.exclude(email='').first(); log = logging.getLogger('oma.careless'); "
        "log.error('calling Genstore with %s and %s for %s', s.access_token, s.client_secret, o.email); "
        "log.warning('headers %r', {'X-Genstore-Access-Token': s.access_token})"
    )
    shell_log = tmp_path / "shell.log"
    result = subprocess.run([sys.executable, "manage.py", "shell", "-c", careless], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    shell_log.write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stderr
    logging.getLogger("oma.careless").error("token %s secret %s for %s", token, client_secret, sorted(emails)[0])

    # --- every log, every secret ------------------------------------------------------------------------------------
    logs = {path.name: path.read_text(errors="replace") for path in [*tmp_path.glob("*.log"), shell_log,
                                                                     in_process_log]}
    assert {"celery-worker-0.log", "gunicorn-0.log", "shell.log", "pytest-process.log"} <= set(logs)
    secret_values = {
        "Genstore access token": token, "Genstore client secret": client_secret,
        "carrier client secret": carrier_secret, "carrier OAuth token": oauth_token,
        "SECRET_KEY": env["SECRET_KEY"], "encryption key": env["OMA_ENCRYPTION_KEYS"],
        **{f"HMAC {n}": value for n, value in enumerate(sorted(hmacs))},
        **{f"customer e-mail {email}": email for email in emails},
    }
    leaks = [f"{what} in {name}" for name, text in logs.items() for what, value in secret_values.items()
             if value in text]
    assert leaks == [], leaks
    # The careless lines were written, redacted (so the search above had something to find).
    assert "calling Genstore with [redacted] and [redacted] for [email]" in logs["shell.log"]
    assert "{'X-Genstore-Access-Token': '[redacted]'}" in logs["shell.log"]
    assert "token [redacted] secret [redacted] for [email]" in logs["pytest-process.log"]
    assert sum(len(text.splitlines()) for text in logs.values()) > 100  # DEBUG: plenty was logged

    # --- store and order ids on the lines that know them ------------------------------------------------------------
    worker_lines = [json.loads(line) for line in logs["celery-worker-0.log"].splitlines() if line.startswith("{")]
    batches = [line for line in worker_lines if line.get("task") == "webhooks.process_deliveries"]
    assert batches and all(line.get("store_id") == store.pk for line in batches)
    # Pushes run in the store's drain (one task, several orders): each push's own lines carry its order.
    drain_lines = [line for line in worker_lines if line.get("task") == "fulfillment.push_due"]
    assert drain_lines and all(line.get("store_id") == store.pk for line in drain_lines)
    assert {line.get("order_id") for line in drain_lines if line.get("order_id")} == {o.order_id for o in orders}
    sweep_lines = [line for line in worker_lines if line.get("task") == "orders.sweep_store"]
    assert sweep_lines and all(line.get("store_id") == store.pk for line in sweep_lines)
    assert any(line.get("logger") == "oma.orders.services" for line in sweep_lines)  # the app's own lines too
