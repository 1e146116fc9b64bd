"""Acceptance of external orders (issue 15), end to end: gunicorn, a real Celery worker on its own Redis broker, the
Genstore sandbox over HTTP, PostgreSQL.

300 external orders from three inputs: 100 signed channel webhooks posted to `/webhooks/channels/<slug>/`, an Amazon
order report and an eBay orders report of 100 good orders each (and a few bad rows) through `import_orders`. The
sandbox applies a tenth of the writes but answers 502, and the worker is SIGKILLed while a create is in flight; a new
worker finishes (the test ticks beat's minute). Checked:

- Genstore holds exactly one order per external order, with its sourceName, sourceIdentifier, line SKUs,
  quantities, unit prices and shipping city and zip; one of the Amazon orders was in Genstore (and the mirror)
  before the import: it is adopted, never created;
- importing the same files again and re-delivering every webhook under a new webhook-id creates nothing; the bad
  rows are reported by line number, every time, and the good orders kept;
- tracking imported for the Amazon orders (`import_tracking --channel`, rows keyed by Amazon's order-id) ends as one
  fulfillment per order in Genstore, and `export_shipments --format amazon-confirm` lists every shipped
  order-item-id with its tracking number;
- an order cancelled on the channel (two cancel inputs) cancels its Genstore order once.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count
from pathlib import Path
from typing import Any

import pytest
import requests
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Count
from django.utils import timezone

from oma.channels.connectors.webhook import sign
from oma.channels.models import Channel, ExternalOrder
from oma.channels.selectors import external_orders_due
from oma.channels.services import channel_create
from oma.channels.tasks import enqueue_external_order_drains
from oma.core.cli import EXIT_REJECTS
from oma.fulfillment.tasks import push_pending
from oma.genstore.records import OrderDraft, OrderDraftLine
from oma.orders.models import Order, SyncRun
from oma.orders.services import orders_sweep
from oma.sandbox.server import GenstoreSandbox
from oma.stores.models import Store
from oma.stores.services import genstore_client_for
from tests.faults.processes import celery_app_publishing_to, sigkill_tree
from tests.fixtures_celery import (  # noqa: F401 (fixtures)
    CeleryWorker,
    RedisServer,
    celery_worker_factory,
    gunicorn_factory,
    private_redis,
    subprocess_env,
    wait_until,
)
from tests.genstore_sandbox import connect, start_sandbox
from tracking.sandbox import numbers_for
from webhooks.models import WebhookDelivery

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

HANDLE = "shop1"
PER_INPUT = 100
ORDERS = 3 * PER_INPUT
State = ExternalOrder.State
DONE = (State.CREATED, State.ADOPTED)
CATALOG = (("MUG-1", "Stoneware mug"), ("POT-2", "Teapot"), ("TEA-3", "Green tea 100 g"), ("NAP-4", "Linen napkins"))
CITIES = ("Seattle", "Austin", "Denver", "Boston", "Portland")


# --- what each input says, and what Genstore must end up holding ----------------------------------------------


@dataclass(frozen=True)
class Line:
    sku: str
    title: str
    quantity: int
    price: Decimal  # the unit price
    external_id: str  # the channel's own line id (Amazon's order-item-id, eBay's item-transaction)


@dataclass(frozen=True)
class Expected:
    source_name: str
    external_id: str
    lines: tuple[Line, ...]
    city: str
    zip: str

    @property
    def key(self) -> tuple[str, str]:
        return self.source_name, self.external_id

    def as_genstore_has_it(self) -> tuple[object, ...]:
        return tuple((line.sku, line.quantity, line.price) for line in self.lines), self.city, self.zip


def as_created(order: dict[str, Any]) -> tuple[object, ...]:
    """A sandbox `orders_by_source` entry, in the terms of `Expected.as_genstore_has_it`."""
    lines = tuple((line["sku"], line["quantity"], Decimal(line["price"])) for line in order["lineItems"])
    address = order["shippingAddress"] or {}
    return lines, address.get("city"), address.get("zip")


def orders_for(source_name: str, order_id: Callable[[int], str], line_id: Callable[[int, int], str],
               zip_base: int) -> list[Expected]:
    """PER_INPUT orders of one or two lines, every order with its own shipping zip."""
    orders = []
    for i in range(PER_INPUT):
        lines = tuple(
            Line(sku=CATALOG[(i + k) % 4][0], title=CATALOG[(i + k) % 4][1], quantity=1 + (i + k) % 3,
                 price=Decimal("4.75") + i % 7 + 3 * k, external_id=line_id(i, k))
            for k in range(1 + i % 2)
        )
        orders.append(Expected(source_name, order_id(i), lines, CITIES[i % len(CITIES)], f"{zip_base + i:05d}"))
    return orders


TIKTOK = orders_for("tiktok", lambda i: f"5769{i:011d}", lambda i, k: f"tt-{i}-{k}", 20000)
AMAZON = orders_for("amazon", lambda i: f"113-{i:07d}-{(i * 7919) % 10**7:07d}",
                    lambda i, k: f"{52000000000000 + 10 * i + k}", 30000)
EBAY = orders_for("ebay", lambda i: f"{10 + i % 80:02d}-{i:05d}-{(31 * i) % 10**5:05d}",
                  lambda i, k: f"{285500000000 + 10 * i + k}-{2400000000 + 10 * i + k}", 40000)
ADOPTED = AMAZON[0]  # in Genstore (and mirrored) before any import


def csv_line(cells: Sequence[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(cells)
    return out.getvalue()


@dataclass
class OrderFile:
    data: bytes
    rejected_lines: dict[int, str]  # physical line -> a word its reason must hold


AMAZON_COLUMNS = (
    "order-id", "order-item-id", "purchase-date", "buyer-email", "buyer-phone-number", "sku", "product-name",
    "quantity-purchased", "currency", "item-price", "item-tax", "shipping-price", "recipient-name", "ship-address-1",
    "ship-city", "ship-state", "ship-postal-code", "ship-country",
)


def amazon_file(ordered_at: datetime) -> OrderFile:
    """Amazon's order report (tab-separated; item-price is the line's total), with two bad orders mid-file: one
    whose second line has quantity 0 (both its lines are refused) and one without a SKU."""
    lines = ["\t".join(AMAZON_COLUMNS)]
    rejected: dict[int, str] = {}

    def add(order_id: str, item_id: str, sku: str, title: str, quantity: int, total: Decimal, city: str = "Seattle",
            zip_code: str = "98101") -> int:
        lines.append("\t".join((
            order_id, item_id, ordered_at.isoformat(), "buyer@example.com", "+1 206 555 0100", sku, title,
            str(quantity), "USD", str(total), "0.80", "3.99", "Ana Souza", "1200 Pine St", city, "WA", zip_code, "US",
        )))
        return len(lines)

    for i, order in enumerate(AMAZON):
        for line in order.lines:
            add(order.external_id, line.external_id, line.sku, line.title, line.quantity, line.price * line.quantity,
                order.city, order.zip)
        if i == 30:
            sunk_by = add("113-9000001-0000001", "59000000000001", "MUG-1", "Stoneware mug", 1, Decimal("5.00"))
            rejected[sunk_by] = f"line {sunk_by + 1}"
            rejected[add("113-9000001-0000001", "59000000000002", "POT-2", "Teapot", 0, Decimal("9.00"))] = "quantity"
        if i == 60:
            rejected[add("113-9000002-0000002", "59000000000003", "", "No SKU", 1, Decimal("5.00"))] = "sku"
    return OrderFile(("\n".join(lines) + "\n").encode(), rejected)


EBAY_COLUMNS = (
    "Sales Record Number", "Order Number", "Buyer Email", "Buyer Name", "Ship To Name", "Ship To Phone",
    "Ship To Address 1", "Ship To Address 2", "Ship To City", "Ship To State", "Ship To Zip", "Ship To Country",
    "Item Number", "Item Title", "Custom Label", "Quantity", "Sold For", "Shipping And Handling", "Sale Date",
    "Transaction ID", "Variation Details",
)


def ebay_file(ordered_at: datetime) -> OrderFile:
    """eBay's orders report as eBay writes it: a blank first row, "$" money, "Dec-06-26" dates, country names, a
    summary row before a multi-item order's item rows, a blank row, the trailing lines; two bad orders (a price
    that is not money, a country nobody knows)."""
    sale_date = ordered_at.strftime("%b-%d-%y")
    lines = ["", csv_line(EBAY_COLUMNS)]
    rejected: dict[int, str] = {}

    def add(record: int, order_id: str, *, buyer: bool, item: tuple[str, str, str, str, int, str] | None = None,
            shipping: str = "", city: str = "San Jose", zip_code: str = "95112", country: str = "United States") -> int:
        item_number, transaction, title, sku, quantity, sold_for = item or ("", "", "", "", 0, "")
        ship_to = ("Carla Mendes", "(415) 555-0199", "77 Harbor Way", "Suite 210", city, "CA", zip_code, country)
        lines.append(csv_line((
            str(record), order_id, *(("carla@example.com", "Carla Mendes", *ship_to) if buyer else ("",) * 10),
            item_number, title, sku, str(quantity) if item else "", sold_for, shipping, sale_date, transaction, "",
        )))
        return len(lines)

    for i, order in enumerate(EBAY):
        items = [(*line.external_id.split("-"), line.title, line.sku, line.quantity, f"${line.price}")
                 for line in order.lines]
        where = {"city": order.city, "zip_code": order.zip}
        if len(items) == 1:
            add(1000 + i, order.external_id, buyer=True, item=items[0], shipping="$4.50", **where)
        else:  # a summary row with the order's values, then the items
            add(1000 + i, order.external_id, buyer=True, shipping="$4.50", **where)
            for item in items:
                add(1000 + i, order.external_id, buyer=False, item=item)
        if i == 40:
            item = ("285599990001", "2499990001", "Teapot", "POT-2", 1, "$abc")
            rejected[add(9001, "99-90001-00001", buyer=True, item=item)] = "Sold For"
            lines.append("")
        if i == 70:
            item = ("285599990002", "2499990002", "Teapot", "POT-2", 1, "$12.00")
            rejected[add(9002, "99-90002-00002", buyer=True, item=item, country="Atlantis")] = "Country"
    lines += ["", f"{PER_INPUT + 2} record(s) downloaded,from {sale_date} to {sale_date}", "Seller ID : oma_demo"]
    return OrderFile(("\n".join(lines) + "\n").encode(), rejected)


def webhook_payload(order: Expected, ordered_at: datetime, **changes: Any) -> dict[str, Any]:
    return {
        "externalOrderId": order.external_id,
        "order": {
            "createdAt": ordered_at.isoformat(),
            "currency": "USD",
            "email": "dev@example.org",
            "name": "Dev Patel",
            "lineItems": [
                {"sku": line.sku, "title": line.title, "quantity": line.quantity, "price": str(line.price),
                 "lineItemId": line.external_id}
                for line in order.lines
            ],
            "shippingAddress": {"name": "Dev Patel", "address1": "9 Elm Rd", "city": order.city, "provinceCode": "OR",
                                "zip": order.zip, "countryCode": "US"},
            "shippingPrice": "3.50",
            **changes,
        },
    }


# --- the running system -----------------------------------------------------------------------------------------


@dataclass
class World:
    sandbox: GenstoreSandbox
    store: Store
    channels: dict[str, Channel]
    env: dict[str, str]
    web_url: str
    worker: CeleryWorker
    start_worker: Callable[..., CeleryWorker]
    tmp_path: Path
    ordered_at: datetime
    msg_ids: Iterator[int] = field(default_factory=lambda: count(1))

    def post(self, payload: dict[str, Any]) -> requests.Response:
        """A signed delivery to the TikTok channel's webhook, each under a webhook-id of its own."""
        target = self.channels["tiktok"]
        body = json.dumps(payload).encode()
        msg_id, timestamp = f"msg_{next(self.msg_ids):05d}", int(time.time())
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret=target.signing_secret, msg_id=msg_id, timestamp=timestamp, body=body),
            "Content-Type": "application/json",
        }
        return requests.post(f"{self.web_url}/webhooks/channels/{target.slug}/", data=body, headers=headers,
                             timeout=30)

    def post_all(self, payloads: Sequence[dict[str, Any]]) -> list[int]:
        """The payloads posted by eight senders at once (as a platform delivers); their statuses, in order."""
        with ThreadPoolExecutor(max_workers=8) as senders:
            return [answer.status_code for answer in senders.map(self.post, payloads)]

    def import_orders(self, channel: str, data: bytes) -> tuple[dict[str, Any], int]:
        """`import_orders FILE --channel SLUG --json`: its report and exit status."""
        path = self.tmp_path / f"{channel}-orders.txt"
        path.write_bytes(data)
        out = io.StringIO()
        try:
            call_command("import_orders", str(path), "--channel", self.channels[channel].slug, "--json", stdout=out,
                         stderr=io.StringIO())
            status = 0
        except CommandError as exc:
            status = exc.returncode
        return json.loads(out.getvalue()), status

    def alive(self) -> None:
        if self.worker.process is None or self.worker.process.poll() is not None:
            raise AssertionError(f"the worker died:\n{self.worker.log_tail()}")

    def wait(self, done: Callable[[], bool], *, what: str, timeout: float = 60, interval: float = 0.5,
             tick: Callable[[], object] | None = None) -> None:
        """Until `done`, with beat's minute (`tick`) every two seconds meanwhile; the worker's log when it fails."""
        last_tick = [time.monotonic()]

        def check() -> bool:
            self.alive()
            if done():
                return True
            if tick is not None and time.monotonic() - last_tick[0] >= 2:
                tick()
                last_tick[0] = time.monotonic()
            return False

        try:
            wait_until(check, timeout=timeout, interval=interval, what=what)
        except TimeoutError:
            states = dict(ExternalOrder.objects.values_list("state").annotate(n=Count("pk")))
            raise AssertionError(f"timed out waiting for {what}: external orders {states}\n"
                                 f"{self.worker.log_tail()}") from None


def deliveries_settled() -> bool:
    return not WebhookDelivery.objects.filter(state__in=WebhookDelivery.UNFINISHED_STATES).exists()


def done_count() -> int:
    return ExternalOrder.objects.filter(state__in=DONE).count()


@pytest.fixture
def sandbox() -> Iterator[GenstoreSandbox]:
    box = start_sandbox(orders=3, seed=23, rate_limit=None)
    yield box
    box.stop()


@pytest.fixture
def world(
    transactional_db, sandbox, private_redis: RedisServer, celery_worker_factory, gunicorn_factory,  # noqa: F811
    tmp_path: Path,
) -> Iterator[World]:
    store = connect(sandbox, rate_limit=(1000, 1000.0))
    channels = {
        "tiktok": channel_create(store=store, kind="webhook", name="TikTok Shop", source_names=["tiktok"]),
        "amazon": channel_create(store=store, kind="csv", name="Amazon", source_names=["amazon"]),
        "ebay": channel_create(store=store, kind="csv", name="eBay", source_names=["ebay"]),
    }
    env = subprocess_env(broker_url=private_redis.url(), extra={"REDIS_URL": private_redis.url(1),
                                                                "LOG_LEVEL": "WARNING"})
    with celery_app_publishing_to(private_redis.url()):
        web = gunicorn_factory(env=env, workers=2, threads=4)
        worker = celery_worker_factory(env=env, concurrency=2)
        yield World(
            sandbox=sandbox, store=store, channels=channels, env=env, web_url=web.base_url, worker=worker,
            start_worker=celery_worker_factory, tmp_path=tmp_path,
            ordered_at=timezone.now().replace(microsecond=0) - timedelta(days=1),
        )


def test_external_orders_from_three_inputs_exactly_once_with_faults_a_killed_worker_tracking_and_a_cancel(world):
    started = time.monotonic()
    pre_existing = _an_amazon_order_already_in_genstore(world)
    files = {"amazon": amazon_file(world.ordered_at), "ebay": ebay_file(world.ordered_at)}

    in_flight = _three_inputs_with_faults_and_a_killed_worker(world, files)
    _exactly_one_genstore_order_each(world, pre_existing=pre_existing, in_flight=in_flight)
    _the_same_inputs_again_create_nothing(world, files)
    tracking = _tracking_becomes_fulfillments(world)
    _the_amazon_confirmation_lists_every_shipped_item(world, tracking)
    _a_cancelled_order_is_cancelled_in_genstore_once(world)

    stats = world.sandbox.stats(HANDLE)
    print(  # shown with -s: the run's figures
        f"\n{ORDERS} external orders (100 webhook, 100 Amazon, 100 eBay): {stats['orders_created']} created in "
        f"Genstore (one by another app before OMA, adopted), {stats['write_faults_injected']} writes applied but "
        f"answered 502, {len(in_flight)} create(s) in flight at the SIGKILL; {stats['fulfillments_created']} "
        f"fulfillments; {stats['orders_cancelled']} cancel; {stats['requests']} Genstore requests in "
        f"{time.monotonic() - started:.0f} s"
    )


# --- the steps --------------------------------------------------------------------------------------------------


def _an_amazon_order_already_in_genstore(world: World) -> str:
    """Another app created ADOPTED's order in Genstore; a sweep mirrored it. Its Genstore orderId."""
    draft = OrderDraft(
        source_name="Amazon",  # any case: the pair is matched case-insensitively on the name
        source_identifier=ADOPTED.external_id,
        currency="USD",
        line_items=tuple(OrderDraftLine(sku=line.sku, title=line.title, quantity=line.quantity, price=line.price)
                         for line in ADOPTED.lines),
        shipping_address={"name": "Ana Souza", "address1": "1200 Pine St", "city": ADOPTED.city, "zip": ADOPTED.zip,
                          "country_code": "US"},
    )
    with genstore_client_for(world.store) as client:
        order_id = client.create_order(draft).order_id
    assert orders_sweep(store=world.store, kind=SyncRun.Kind.FULL).state == SyncRun.State.SUCCEEDED
    assert Order.objects.get(store=world.store, source_identifier=ADOPTED.external_id).order_id == order_id
    return order_id


def _three_inputs_with_faults_and_a_killed_worker(world: World, files: dict[str, OrderFile]) -> set[int]:
    """Everything in, a tenth of Genstore's writes answered 502; the worker killed with a create in flight and
    another started. The rows whose create was in flight at the kill."""
    sandbox = world.sandbox
    # Every answer a little slow, so that creates are still owed once everything is in.
    sandbox.set_faults(write_error_rate=0.1, slow_rate=1.0, slow_seconds=0.03)
    assert world.post_all([webhook_payload(order, world.ordered_at) for order in TIKTOK]) == [200] * PER_INPUT
    for channel, order_file in files.items():
        report, status = world.import_orders(channel, order_file.data)
        _assert_report(report, status, order_file, new=PER_INPUT)
    world.wait(lambda: ExternalOrder.objects.count() == ORDERS, what="every order received", timeout=60)
    assert ExternalOrder.objects.filter(external_order_id=ADOPTED.external_id).get().source_name == "amazon"

    world.wait(lambda: done_count() >= ORDERS // 5, what="a fifth of the orders created", interval=0.05)
    # The next creates hang for half a second in Genstore (applied, then answered): the kill lands inside one.
    sandbox.set_faults(write_error_rate=0.1, slow_rate=1.0, slow_seconds=0.5)
    # A create sent after the switch (one sent before may finish within the 0.1 s below: several drains run).
    switched = timezone.now()
    world.wait(
        lambda: ExternalOrder.objects.filter(state=State.CREATING, last_attempt_at__gt=switched).exists(),
        what="a create sent", interval=0.01,
    )
    time.sleep(0.1)  # the POST reaches the sandbox
    assert world.worker.process is not None
    sigkill_tree(world.worker.process)
    world.worker.process = None
    in_flight = set(ExternalOrder.objects.filter(state=State.CREATING).values_list("pk", flat=True))
    assert in_flight, "the kill must land inside a create"
    assert done_count() < ORDERS, "the kill must land while creates are still owed"

    sandbox.set_faults(write_error_rate=0.1)
    world.worker = world.start_worker(env=world.env, concurrency=2)
    world.wait(lambda: done_count() == ORDERS, what="every external order in Genstore", timeout=90,
               tick=enqueue_external_order_drains.delay)  # the killed worker's drain message is gone: beat queues it
    return in_flight


def _assert_report(report: dict[str, Any], status: int, order_file: OrderFile, *, new: int) -> None:
    """`import_orders`' report: the good orders taken (new or already imported), each bad row by its line."""
    assert report["error"] is None, report
    assert (report["orders"], report["new"], report["alreadyImported"]) == (PER_INPUT, new, PER_INPUT - new), report
    problems = {problem["line"]: problem["reason"] for problem in report["problems"]}
    assert set(problems) == set(order_file.rejected_lines), problems
    unexplained = {line: reason for line, reason in problems.items() if order_file.rejected_lines[line] not in reason}
    assert unexplained == {}, unexplained
    assert status == EXIT_REJECTS  # imported, some rows rejected


def _exactly_one_genstore_order_each(world: World, *, pre_existing: str, in_flight: set[int]) -> None:
    created = world.sandbox.orders_by_source(HANDLE)
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for order in created:
        by_key[(order["sourceName"].lower(), order["sourceIdentifier"])].append(order)
    expected = {order.key: order for order in (*TIKTOK, *AMAZON, *EBAY)}
    assert set(by_key) == set(expected)
    assert {key: len(orders) for key, orders in by_key.items() if len(orders) != 1} == {}
    assert len(created) == ORDERS == world.sandbox.stats(HANDLE)["orders_created"]
    wrong = {key: (as_created(by_key[key][0]), order.as_genstore_has_it())
             for key, order in expected.items() if as_created(by_key[key][0]) != order.as_genstore_has_it()}
    assert wrong == {}, list(wrong.items())[:3]
    names = {order["orderId"]: order["sourceName"] for order in created}
    assert {name for order_id, name in names.items() if order_id != pre_existing} == {"tiktok", "amazon", "ebay"}

    rows = {(row.source_name, row.external_order_id): row for row in ExternalOrder.objects.all()}
    assert {key: row.genstore_order_id for key, row in rows.items()} == {
        key: orders[0]["orderId"] for key, orders in by_key.items()
    }
    adopted = rows[ADOPTED.key]
    assert (adopted.state, adopted.genstore_order_id, adopted.create_sent_at) == (State.ADOPTED, pre_existing, None)
    assert {row.state for key, row in rows.items() if key != ADOPTED.key} == {State.CREATED}
    assert world.sandbox.stats(HANDLE)["write_faults_injected"] > 0

    def read_back(row: ExternalOrder) -> bool:
        return any("our earlier create did reach Genstore" in entry["message"] for entry in row.log)

    assert sum(read_back(row) for row in rows.values()) >= 1  # a 502'd (or killed) create found, not repeated
    assert all(read_back(row) for row in rows.values() if row.pk in in_flight)


def _the_same_inputs_again_create_nothing(world: World, files: dict[str, OrderFile]) -> None:
    before = world.sandbox.stats(HANDLE)["orders_created"]
    for channel, order_file in files.items():
        report, status = world.import_orders(channel, order_file.data)
        _assert_report(report, status, order_file, new=0)
    # The platform delivers every order again, under new webhook-ids.
    assert world.post_all([webhook_payload(order, world.ordered_at) for order in TIKTOK]) == [200] * PER_INPUT
    world.wait(deliveries_settled, what="the re-deliveries processed")
    enqueue_external_order_drains.delay()
    assert external_orders_due(store_id=world.store.pk, now=timezone.now()) == []
    time.sleep(1)  # a drain queued by mistake would have sent its first create by now
    assert ExternalOrder.objects.count() == ORDERS
    assert done_count() == ORDERS
    assert world.sandbox.stats(HANDLE)["orders_created"] == before


def _tracking_becomes_fulfillments(world: World) -> dict[str, str]:
    """`import_tracking` for the Amazon orders, keyed by Amazon's order-id: one fulfillment each in Genstore, with
    every line. The tracking number of each Amazon order-id."""
    numbers = dict(zip((order.external_id for order in AMAZON), numbers_for("ups", PER_INPUT, start=700),
                       strict=True))
    path = world.tmp_path / "amazon-tracking.csv"
    path.write_text("order,tracking_number,carrier\n" + "".join(f"{order},{number},ups\n"
                                                               for order, number in numbers.items()))
    out = io.StringIO()
    call_command("import_tracking", str(path), "--store", world.store.domain, "--channel",
                 world.channels["amazon"].slug, stdout=out, stderr=io.StringIO())

    rows = {row.external_order_id: row for row in ExternalOrder.objects.filter(channel=world.channels["amazon"])}

    def fulfilled() -> bool:
        for order in AMAZON:
            live = [f for f in world.sandbox.fulfillments(HANDLE, rows[order.external_id].genstore_order_id)
                    if f["status"] not in ("cancelled", "error", "failure")]
            if [f["trackingNumber"] for f in live] != [numbers[order.external_id]]:
                return False
        return True

    world.wait(fulfilled, what="a fulfillment on every Amazon order", timeout=90, interval=1,
               tick=lambda: push_pending.delay(requeue_after_seconds=30))
    for order in AMAZON:
        genstore = world.sandbox.order(HANDLE, rows[order.external_id].genstore_order_id)
        [fulfillment] = world.sandbox.fulfillments(HANDLE, genstore["orderId"])
        shipped = {part["id"]: int(part["quantity"]) for part in fulfillment["lineItems"]}
        assert shipped == {line["id"]: line["quantity"] for line in genstore["lineItems"]}, order.external_id
    return numbers


def _the_amazon_confirmation_lists_every_shipped_item(world: World, numbers: dict[str, str]) -> None:
    out = io.StringIO()
    call_command("export_shipments", "--channel", world.channels["amazon"].slug, "--format", "amazon-confirm",
                 stdout=out)
    listed = {
        (row["order-id"], row["order-item-id"], int(row["quantity"]), row["tracking-number"], row["carrier-code"])
        for row in csv.DictReader(io.StringIO(out.getvalue()), delimiter="\t")
    }
    assert listed == {
        (order.external_id, line.external_id, line.quantity, numbers[order.external_id], "UPS")
        for order in AMAZON for line in order.lines
    }


def _a_cancelled_order_is_cancelled_in_genstore_once(world: World) -> None:
    world.sandbox.clear_faults()
    order = TIKTOK[7]
    row = ExternalOrder.objects.get(channel=world.channels["tiktok"], external_order_id=order.external_id)
    cancelled_at = datetime.now(UTC).replace(microsecond=0)
    assert world.post(webhook_payload(order, world.ordered_at, cancelledAt=cancelled_at.isoformat())).ok
    world.wait(lambda: ExternalOrder.objects.get(pk=row.pk).state == State.CANCELLED, what="the order cancelled",
               tick=enqueue_external_order_drains.delay)
    # The channel tells again, later and with a note: recorded, nothing sent.
    again = webhook_payload(order, world.ordered_at, cancelledAt=(cancelled_at + timedelta(minutes=5)).isoformat(),
                            note="cancelled by the buyer")
    assert world.post(again).ok
    world.wait(deliveries_settled, what="the second cancel processed")
    enqueue_external_order_drains.delay()
    time.sleep(1)
    assert external_orders_due(store_id=world.store.pk, now=timezone.now()) == []

    row.refresh_from_db()
    assert row.cancelled_in_genstore_at is not None and row.needs_attention == ""
    assert [change["changes"] for change in row.later_changes] == [["cancelledAt", "note"]]
    assert world.sandbox.order(HANDLE, row.genstore_order_id)["cancelledAt"] is not None
    assert world.sandbox.stats(HANDLE)["orders_cancelled"] == 1
