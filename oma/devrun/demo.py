"""The demo data `make run` seeds when no real store is configured: an admin user, carrier accounts pointed at the
carrier sandbox, and tracking numbers imported by CSV. Imported once Django is set up (it imports models)."""

from __future__ import annotations

import os
import secrets

from django.contrib.auth import get_user_model

from oma.channels.csv_import import tracking_csv_import
from oma.devrun import CARRIER_SANDBOX_PORT, DEMO_DOMAIN, DEMO_SHIPMENTS, say
from oma.stores.models import Store
from tracking.models import CarrierAccount, Shipment
from tracking.sandbox.numbers import numbers_for
from tracking.services import OAUTH_CARRIERS, carrier_account_add


def ensure_admin_user() -> None:
    username = os.environ.get("OMA_ADMIN_USERNAME", "admin")
    password = os.environ.get("OMA_ADMIN_PASSWORD")
    user_model = get_user_model()
    user = user_model.objects.filter(username=username).first()
    if user and not password:
        say(f"admin user {username!r} exists (password as printed on the first run)")
        return
    generated = password is None
    password = password or secrets.token_urlsafe(12)
    if user is None:
        user_model.objects.create_superuser(username=username, email="", password=password)
    else:
        user.set_password(password)
        user.save(update_fields=["password"])
    if generated:
        say(f"admin user created: username={username} password={password}  (printed once; keep it)")
    else:
        say(f"admin user {username!r} ready (password from OMA_ADMIN_PASSWORD)")


def needs_sandbox() -> bool:
    real_stores = Store.objects.exclude(domain=DEMO_DOMAIN)
    return not real_stores.exists()


def ensure_demo_carrier_accounts() -> None:
    """One shared account per carrier, pointed at the carrier sandbox (its credentials are the sandbox's own)."""
    base_url = f"http://127.0.0.1:{CARRIER_SANDBOX_PORT}"
    for carrier in ("ups", "fedex", "usps", "dhl", "17track"):
        if CarrierAccount.objects.filter(carrier=carrier, store__isnull=True, is_active=True).exists():
            continue
        if carrier in OAUTH_CARRIERS:
            carrier_account_add(carrier=carrier, client_id="demo", client_secret="demo", base_url=base_url)
        else:
            carrier_account_add(carrier=carrier, api_key="demo", base_url=base_url)


def ensure_demo_tracking() -> None:
    """Import tracking numbers (CSV, as a merchant would) for some paid demo orders, once, so polling and
    pushes have something to show."""
    store = Store.objects.get(domain=DEMO_DOMAIN)
    if Shipment.objects.filter(store=store).exists():
        return
    orders = list(
        store.orders.filter(financial_status="paid", cancelled_at__isnull=True, fulfillment_status="unfulfilled")
        .order_by("order_id")
        .values_list("order_id", flat=True)[:DEMO_SHIPMENTS]
    )
    carriers = ["ups", "fedex", "usps", "dhl", "17track"]
    numbers = {carrier: numbers_for(carrier, DEMO_SHIPMENTS) for carrier in carriers}
    rows = ["order,tracking_number,carrier"]
    for position, order_id in enumerate(orders):
        carrier = carriers[position % len(carriers)]
        rows.append(f"{order_id},{next(numbers[carrier])},{'' if carrier == '17track' else carrier}")
    report = tracking_csv_import(store=store, data="\n".join(rows).encode(), file_name="demo-tracking.csv")
    say(f"demo tracking imported from CSV: {report.as_text().splitlines()[0]}")
