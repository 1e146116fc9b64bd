"""oma.core.outbox: publish after commit (at once outside a transaction), never raise a broker failure into the
caller, and re-dispatch the rows still due."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import cast

import pytest
from django.db import transaction
from django.utils import timezone

from oma.core.outbox import (
    PUBLISH_RETRY_POLICY,
    AnyTask,
    after_commit,
    dispatch_due,
    enqueue_each_on_commit,
    enqueue_on_commit,
    publish,
    publish_each,
)
from oma.stores.models import Store
from tests.webhooks.payloads import encode, order_json
from webhooks.models import WebhookDelivery
from webhooks.receive import delivery_receive


class FakeTask:
    """Records what was published; refuses everything from the `down_after`-th publish on (a broker gone down)."""

    name = "tests.fake"

    def __init__(self, down_after: int | None = None) -> None:
        self.published: list[tuple[tuple[object, ...], dict[str, object] | None, dict[str, object]]] = []
        self.down_after = down_after
        self.tries = 0

    def apply_async(self, args: tuple[object, ...], kwargs: dict[str, object] | None = None, **options: object) -> None:
        self.tries += 1
        if self.down_after is not None and self.tries > self.down_after:
            raise ConnectionRefusedError("Connection refused")
        self.published.append((args, kwargs, options))

    def as_task(self) -> AnyTask:
        return cast(AnyTask, self)


def test_publish_sends_one_call_with_one_quick_retry_and_says_false_when_the_broker_is_down(caplog) -> None:
    task = FakeTask(down_after=1)
    assert publish(task.as_task(), 1, "a", kwargs={"force": True}, countdown=5) is True
    assert task.published == [((1, "a"), {"force": True}, {"countdown": 5, "retry": True,
                                                          "retry_policy": PUBLISH_RETRY_POLICY})]
    assert publish(task.as_task(), 2) is False  # no exception
    assert "broker did not take tests.fake" in caplog.text


def test_publish_each_stops_at_the_first_refusal_and_returns_the_rest() -> None:
    task = FakeTask(down_after=2)
    assert publish_each(task.as_task(), [(1,), (2,), (3,), (4,)]) == [(3,), (4,)]
    assert [args for args, _, _ in task.published] == [(1,), (2,)]
    assert task.tries == 3  # (4,) was not even tried: it would only fail too, after its retry


@pytest.mark.django_db
def test_enqueue_on_commit_waits_for_the_commit(django_capture_on_commit_callbacks) -> None:
    task = FakeTask()
    with django_capture_on_commit_callbacks(execute=True):
        enqueue_on_commit(task.as_task(), 7)
        assert task.published == []  # the row it points to is not visible to a worker yet
    assert [args for args, _, _ in task.published] == [(7,)]


@pytest.mark.django_db
def test_nothing_is_published_when_the_transaction_rolls_back(django_capture_on_commit_callbacks) -> None:
    task = FakeTask()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        try:
            with transaction.atomic():
                enqueue_on_commit(task.as_task(), 7)
                raise RuntimeError("rolled back")
        except RuntimeError:
            pass
    assert callbacks == [] and task.published == []


def test_outside_a_transaction_it_publishes_at_once_and_a_down_broker_calls_on_broker_down() -> None:
    task = FakeTask(down_after=1)
    down: list[str] = []
    enqueue_on_commit(task.as_task(), 1, on_broker_down=lambda: down.append("first"))
    enqueue_on_commit(task.as_task(), 2, on_broker_down=lambda: down.append("second"))  # raises nothing
    assert [args for args, _, _ in task.published] == [(1,)]
    assert down == ["second"]


def test_enqueue_each_hands_what_was_not_published_to_on_broker_down() -> None:
    task = FakeTask(down_after=1)
    rest: list[list[tuple[object, ...]]] = []
    enqueue_each_on_commit(task.as_task(), [(1,), (2,), (3,)], kwargs={"force": True}, on_broker_down=rest.append)
    assert [(args, kwargs) for args, kwargs, _ in task.published] == [((1,), {"force": True})]
    assert rest == [[(2,), (3,)]]
    enqueue_each_on_commit(task.as_task(), [], on_broker_down=rest.append)  # nothing to do
    assert len(rest) == 1


def test_after_commit_logs_a_failing_callback_instead_of_raising(caplog) -> None:
    def boom() -> None:
        raise RuntimeError("boom")

    after_commit(boom)
    assert "failed after commit" in caplog.text


@pytest.fixture
def store() -> Store:
    return Store.objects.create(domain="shop1.genmystore.com", access_token="t", client_secret="s")


def _due(store: Store, order_id: str, **fields: object) -> int:
    result = delivery_receive(store=store, topic="orders/update", body=encode(order_json(order_id)), headers={})
    assert result.delivery_id is not None
    WebhookDelivery.objects.filter(pk=result.delivery_id).update(**fields)
    return result.delivery_id


def _sender(sent: list[list[int]], *, fail_on: int | None = None) -> Callable[[Sequence[int]], bool]:
    def send(ids: Sequence[int]) -> bool:
        if fail_on is not None and len(sent) == fail_on:
            return False
        sent.append(list(ids))
        return True

    return send


@pytest.mark.django_db
def test_dispatch_due_sends_due_rows_in_batches_and_pushes_their_due_time_forward(store) -> None:
    now = timezone.now()
    due = [_due(store, str(n), next_dispatch_at=now - timedelta(seconds=n)) for n in range(1, 6)]
    later = _due(store, "9", next_dispatch_at=now + timedelta(minutes=1))
    sent: list[list[int]] = []
    result = dispatch_due(WebhookDelivery.objects.all(), due_field="next_dispatch_at", count_field="dispatch_count",
                          send=_sender(sent), send_size=2, batch_size=3, redispatch_after=timedelta(minutes=5),
                          now=now)
    assert (result.dispatched, result.broker_down) == (5, False)
    assert sorted(pk for batch in sent for pk in batch) == sorted(due)
    assert max(len(batch) for batch in sent) == 2
    rows = dict(WebhookDelivery.objects.values_list("pk", "dispatch_count"))
    assert {pk: rows[pk] for pk in due} == dict.fromkeys(due, 1) and rows[later] == 0
    assert set(WebhookDelivery.objects.filter(pk__in=due).values_list("next_dispatch_at", flat=True)) == {
        now + timedelta(minutes=5)
    }
    # Sent once per round: a second run at the same time finds nothing due.
    assert dispatch_due(WebhookDelivery.objects.all(), due_field="next_dispatch_at", send=_sender(sent),
                        redispatch_after=timedelta(minutes=5), now=now).dispatched == 0


@pytest.mark.django_db
def test_dispatch_due_leaves_what_the_broker_refused_due_at_once(store) -> None:
    now = timezone.now()
    for n in range(1, 5):
        _due(store, str(n), next_dispatch_at=now - timedelta(seconds=n))
    sent: list[list[int]] = []
    result = dispatch_due(WebhookDelivery.objects.all(), due_field="next_dispatch_at", send=_sender(sent, fail_on=1),
                          send_size=2, redispatch_after=timedelta(minutes=5), now=now)
    assert (result.dispatched, result.broker_down) == (2, True)
    left = WebhookDelivery.objects.exclude(pk__in=sent[0])
    assert set(left.values_list("next_dispatch_at", flat=True)) == {now}
