"""Acceptance, end to end: 200 shipments of orders mirrored from the Genstore sandbox move through their statuses
the way carrier polls write them; a real Celery worker (own Redis broker) sends the customer emails through Django's
file email backend; one worker process is SIGKILLed right after the mail server took an email and before the row
was marked sent.

Checked: each shipment gets exactly one email per milestone it passed after the store opted in (none for the
backlog before), each with a working tracking link (GET: 200, the parcel on the page); orders without an email
are skipped and counted; none after unsubscribing (the one-click link of an email, or the page's button); the
email whose worker was killed between send and commit exists once, and its row stays `sending` (at most once),
although the task was redelivered and the beat's safety net ran again.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.db import transaction
from django.test import Client
from django.utils import timezone

from oma.merchant.tokens import tracking_path_for
from oma.notifications.models import OrderUnsubscribe, ShipmentNotification
from oma.notifications.services import (
    SENDING_UNCONFIRMED_AFTER,
    notification_unconfirmed,
    store_notifications_enable,
)
from oma.notifications.tasks import enqueue_due, send_due
from oma.orders.models import Order, SyncRun
from oma.orders.services import orders_sweep
from tests.fixtures_celery import (  # noqa: F401 (fixtures)
    celery_worker_factory,
    private_redis,
    subprocess_env,
    wait_until,
)
from tests.fulfillment.conftest import broker  # noqa: F401 (a fixture: this process publishes to the test's Redis)
from tests.genstore_sandbox import connect, start_sandbox
from tests.notifications.conftest import carrier_says
from tracking.models import Shipment
from tracking.services import shipment_add
from tracking.signals import shipments_changed_batch

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.urls("tests.notifications.urls")]

State = ShipmentNotification.State
PUBLIC_URL = "http://testserver"
VICTIM = "victim@example.com"
SEPARATOR = b"\n" + b"-" * 79 + b"\n"

# Status paths after the store opts in (everyone was `info_received` before, except LATE: in transit already).
PATHS: dict[str, tuple[str, ...]] = {
    "plain": ("in_transit", "out_for_delivery", "delivered"),
    "bumpy": ("in_transit", "exception", "in_transit", "out_for_delivery", "attempt_failed", "out_for_delivery",
              "delivered"),
    "pickup": ("in_transit", "available_for_pickup", "delivered"),
    "idle": (),
    "late": ("out_for_delivery", "delivered"),
}
GROUP_SIZES = {"plain": 100, "bumpy": 40, "pickup": 30, "idle": 10, "late": 20}


def read_mailbox(directory: Path) -> list[EmailMessage]:
    found = []
    for path in sorted(directory.glob("*.log")):
        for chunk in path.read_bytes().split(SEPARATOR):
            if chunk.strip():
                found.append(email.message_from_bytes(chunk, policy=email.policy.default))
    return found


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return part.get_content()


def test_two_hundred_shipments_one_email_per_milestone_with_unsubscribes_and_a_killed_worker(
    transactional_db, broker, private_redis, celery_worker_factory, tmp_path  # noqa: F811
):
    genstore = start_sandbox(orders=240, seed=16, rate_limit=(2000, 1000.0))
    try:
        _run(genstore, broker, private_redis, celery_worker_factory, tmp_path)
    finally:
        genstore.stop()


def _run(genstore, broker, private_redis, celery_worker_factory, tmp_path) -> None:  # noqa: F811
    store = connect(genstore, rate_limit=(2000, 1000.0))
    assert orders_sweep(store=store, kind=SyncRun.Kind.FULL).state == SyncRun.State.SUCCEEDED
    orders = list(Order.objects.filter(store=store, cancelled_at__isnull=True).order_by("pk")[:200])
    assert len(orders) == 200

    # --- 200 parcels in five groups. Genstore withholds some customers' emails (protected data) ----------------
    groups: dict[str, list[Shipment]] = {name: [] for name in PATHS}
    names = [name for name, size in GROUP_SIZES.items() for _ in range(size)]
    with transaction.atomic(), shipments_changed_batch():
        for index, (order, group) in enumerate(zip(orders, names, strict=True)):
            shipment = shipment_add(store=store, order=order, tracking_number=f"1ZNOTIFY{index:010d}", carrier="ups")
            groups[group].append(shipment)
    no_email = {order.pk for order in orders if not order.email}
    assert 10 <= len(no_email) <= 100, len(no_email)
    reachable = {name: [s for s in group if s.order_id not in no_email] for name, group in groups.items()}
    victim = reachable["plain"][-1]
    Order.objects.filter(pk=victim.order_id).update(email=VICTIM)
    plan = Plan(groups=groups, no_email=no_email, victim=victim,
                one_click=reachable["plain"][:15], button=reachable["bumpy"][:5])

    # --- before the opt-in: labels, and some parcels already moving (their first scan is no news later) ---------
    everyone = [s for group in groups.values() for s in group]
    carrier_says([s for s in everyone if s not in groups["late"]], "info_received")
    carrier_says(groups["late"], "in_transit")
    store_notifications_enable(store_id=store.pk)

    # --- the worker: file email backend that dies once, right after writing the victim's first email ------------
    mailbox, marker = tmp_path / "mail", tmp_path / "killed"
    env = subprocess_env(
        broker_url=broker,
        settings_module="tests.notifications.settings",
        extra={
            "LOG_LEVEL": "WARNING",
            "REDIS_URL": private_redis.url(1),
            "OMA_PUBLIC_URL": PUBLIC_URL,
            "EMAIL_URL": f"filemail:///{mailbox}",  # django-environ: four slashes for an absolute path
            "EMAIL_BACKEND": "tests.notifications.backends.KillOnceFileBackend",
            "OMA_TEST_KILL_AFTER_SENDING_TO": VICTIM,
            "OMA_TEST_KILL_MARKER": str(marker),
        },
    )
    worker = celery_worker_factory(env=env, concurrency=4)
    waits = Counter[str]()

    def drained() -> bool:
        if worker.process is None or worker.process.poll() is not None:
            raise AssertionError(f"the worker died:\n{worker.log_tail()}")
        if ShipmentNotification.objects.filter(state=State.DUE).exists():
            waits["due"] += 1
            if waits["due"] % 6 == 0:
                enqueue_due.delay()  # the beat's safety net keeps ticking
            return False
        # An email in flight is `sending` for milliseconds; the killed one stays so for good.
        in_flight = timezone.now() - timedelta(seconds=2)
        return not ShipmentNotification.objects.filter(state=State.SENDING, sending_started_at__gt=in_flight).exists()

    # --- the polls: step k of every group's path; customers unsubscribe after their first email -----------------
    web = Client()
    for step in range(max(len(path) for path in PATHS.values())):
        for group, path in PATHS.items():
            if step < len(path):
                carrier_says(groups[group], path[step])
        if step == 0:
            wait_until(drained, timeout=60, interval=0.5, what="the first emails sent")
            _unsubscribe(web, read_mailbox(mailbox), plan)
    wait_until(drained, timeout=60, interval=0.5, what="every email sent")

    # --- retried after the kill (the redelivered task, the beat's net, one more drain): nothing sent again --------
    assert marker.exists(), f"the worker was never killed:\n{worker.log_tail()}"
    assert "WorkerLostError" in worker.log_path.read_text()
    retries = [send_due.delay().id, enqueue_due.delay().id]
    wait_until(lambda: all(f"[{task_id}] succeeded" in worker.log_path.read_text() for task_id in retries),
               timeout=30, interval=0.5, what="the retries run")
    wait_until(drained, timeout=30, interval=0.5, what="a last drain")
    _check(read_mailbox(mailbox), plan, web)


@dataclass
class Plan:
    groups: dict[str, list[Shipment]]
    no_email: set[int]
    victim: Shipment
    one_click: list[Shipment]
    button: list[Shipment]

    @property
    def unsubscribed(self) -> set[int]:
        return {s.pk for s in self.one_click + self.button}

    def expected(self) -> Counter[tuple[int, str]]:
        """(shipment, milestone) -> 1 for every email owed: each distinct milestone of its path, none without an
        email, none after the first for those who unsubscribed then."""
        owed: Counter[tuple[int, str]] = Counter()
        for group, path in PATHS.items():
            for shipment in self.groups[group]:
                if shipment.order_id in self.no_email:
                    continue
                for milestone in dict.fromkeys(path):  # a milestone passed twice is emailed once
                    owed[(shipment.pk, milestone)] += 1
                    if shipment.pk in self.unsubscribed:
                        break
        return owed

    def skipped_no_email(self) -> int:
        return sum(
            len(dict.fromkeys(path))
            for group, path in PATHS.items() for s in self.groups[group] if s.order_id in self.no_email
        )


def _unsubscribe(web: Client, messages: list[EmailMessage], plan: Plan) -> None:
    """Fifteen customers use their first email's one-click link (RFC 8058), five the page's button."""
    first_email = {}
    for message in messages:
        row = ShipmentNotification.objects.get(pk=int(str(message["X-OMA-Notification"])))
        first_email[row.shipment_id] = message
    for shipment in plan.one_click:
        found = re.search(r"<([^>]+)>", str(first_email[shipment.pk]["List-Unsubscribe"]))
        assert found is not None
        response = web.post(urlsplit(found.group(1)).path, data="List-Unsubscribe=One-Click",
                            content_type="application/x-www-form-urlencoded")
        assert response.status_code == 200
    for shipment in plan.button:
        link = re.search(rf"{PUBLIC_URL}(/notifications/unsubscribe/\S+/)", text_of(first_email[shipment.pk]))
        assert link is not None
        assert "Unsubscribe" in web.get(link.group(1)).content.decode()
        assert web.post(link.group(1)).status_code == 200
    assert OrderUnsubscribe.objects.count() == 20


def _check(messages: list[EmailMessage], plan: Plan, web: Client) -> None:
    rows = {row.pk: row for row in ShipmentNotification.objects.select_related("order", "shipment")}
    got: Counter[tuple[int, str]] = Counter()
    for message in messages:
        row = rows[int(str(message["X-OMA-Notification"]))]
        got[(row.shipment_id, row.milestone)] += 1
        assert str(message["To"]) == row.order.email
        assert row.shipment.tracking_number in text_of(message)
    expected = plan.expected()
    twice = {key: n for key, n in got.items() if n > 1}
    assert not twice, f"emailed more than once: {twice}"
    assert got == expected, (
        f"{len(messages)} emails for {len(expected)} milestones passed; missing {sorted(expected - got)[:5]}, "
        f"extra {sorted(got - expected)[:5]}"
    )

    # The tracking link of an email opens that order's page, with the parcel on it.
    for message in messages[::25]:
        row = rows[int(str(message["X-OMA-Notification"]))]
        link = PUBLIC_URL + tracking_path_for(row.order)
        assert link in text_of(message)
        page = web.get(urlsplit(link).path)
        assert page.status_code == 200 and row.shipment.tracking_number in page.content.decode()

    # Every row says what happened; the victim's first email stays `sending`: maybe sent, never sent again.
    states = Counter(row.state for row in rows.values())
    assert states[State.SKIPPED_NO_EMAIL] == plan.skipped_no_email()
    assert states[State.SKIPPED_UNSUBSCRIBED] == 15 * 2 + 5 * 4
    assert states[State.SENT] == sum(expected.values()) - 1
    assert set(states) == {State.SENT, State.SENDING, State.SKIPPED_NO_EMAIL, State.SKIPPED_UNSUBSCRIBED}
    [stuck] = [row for row in rows.values() if row.state == State.SENDING]
    assert (stuck.shipment_id, stuck.milestone) == (plan.victim.pk, "in_transit")
    assert got[(plan.victim.pk, "in_transit")] == 1 and got[(plan.victim.pk, "delivered")] == 1
    # Admin calls it "may not have been sent" once it is older than a send can take.
    assert not notification_unconfirmed(stuck)
    assert notification_unconfirmed(stuck, now=stuck.sending_started_at + SENDING_UNCONFIRMED_AFTER * 2)
