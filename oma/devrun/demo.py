"""The demo data `make run` seeds when no real store is configured: an admin user, carrier accounts pointed at the
carrier sandbox, tracking numbers imported by CSV, and an Amazon channel with a small Amazon order file imported
(the worker then creates those orders in the Genstore sandbox). Imported once Django is set up (it imports models)."""

from __future__ import annotations

import os
import secrets
from datetime import datetime, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.utils import timezone

from oma.channels.csv_import import tracking_csv_import
from oma.channels.models import Channel, OrderImport
from oma.channels.order_import import external_orders_import
from oma.channels.services import channel_create
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
    if Shipment.objects.filter(store=store).exclude(source=Shipment.Source.GENSTORE).exists():
        return  # imported already (the shipments of the sandbox's own fulfillments do not count)
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


DEMO_AMAZON_CHANNEL = "Amazon"
_AMAZON_HEADER = (
    "order-id", "order-item-id", "purchase-date", "buyer-email", "buyer-name", "sku", "product-name",
    "quantity-purchased", "currency", "item-price", "item-tax", "shipping-price", "recipient-name", "ship-address-1",
    "ship-city", "ship-state", "ship-postal-code", "ship-country",
)
# (buyer, city, state, zip) and (sku, title, unit price): a few orders of one or two lines.
_DEMO_BUYERS = (
    ("Ada Park", "Portland", "OR", "97205"), ("Ben Ortiz", "Austin", "TX", "78701"),
    ("Chloe Nakamura", "Seattle", "WA", "98101"), ("Dev Raman", "Denver", "CO", "80202"),
    ("Elena Rossi", "Boston", "MA", "02108"), ("Farid Haddad", "Chicago", "IL", "60601"),
    ("Grace Liu", "Miami", "FL", "33130"), ("Hugo Martin", "Phoenix", "AZ", "85004"),
)
_DEMO_ITEMS = (("MUG-BLUE", "Blue mug", "12.50"), ("TEA-SENCHA", "Sencha tea 100 g", "9.90"),
               ("POT-CAST", "Cast iron teapot", "39.00"))


def demo_amazon_order_file(*, now: datetime | None = None) -> bytes:
    """A small Amazon order report (tab-separated, Amazon's column names): 8 orders, some with two lines."""
    moment = now or timezone.now()
    rows = ["\t".join(_AMAZON_HEADER)]
    for number, (buyer, city, state, zip_code) in enumerate(_DEMO_BUYERS):
        order_id = f"114-{3941680 + number:07d}-{8772230 + number * 7:07d}"
        purchased = (moment - timedelta(hours=6 * (len(_DEMO_BUYERS) - number))).strftime("%Y-%m-%dT%H:%M:%S+00:00")
        lines = _DEMO_ITEMS[number % 3:number % 3 + 1 + number % 2]  # one line, or two
        for position, (sku, title, price) in enumerate(lines):
            quantity = 1 + (number + position) % 2
            total = str(Decimal(price) * quantity)  # Amazon's item-price is the line's total
            rows.append("\t".join((
                order_id, f"{52011190000 + number * 10 + position}", purchased, f"demo-buyer-{number}@example.com",
                buyer, sku, title, str(quantity), "USD", total, "0.00", "4.99" if position == 0 else "0.00", buyer,
                f"{100 + number} Main St", city, state, zip_code, "US",
            )))
    return ("\n".join(rows) + "\n").encode()


def ensure_demo_external_orders() -> None:
    """An "Amazon" channel on the demo store and a small Amazon order file imported into it, once, so the admin
    shows external orders; the worker creates them in the Genstore sandbox."""
    store = Store.objects.get(domain=DEMO_DOMAIN)
    channel = Channel.objects.filter(store=store, name=DEMO_AMAZON_CHANNEL).first()
    if channel is None:
        channel = channel_create(store=store, kind="csv", name=DEMO_AMAZON_CHANNEL, source_names=["amazon"])
    if OrderImport.objects.filter(channel=channel).exists():
        return
    report = external_orders_import(store=store, channel=channel, data=demo_amazon_order_file(),
                                    file_name="demo-amazon-orders.txt", file_format="amazon")
    say(f"demo Amazon orders imported: {report.as_text().splitlines()[0]}")
