"""Beat's sweep tasks, run eagerly: a fan-out to every active store, each swept with its hooks in tasks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from oma.celery import app
from oma.orders.models import Order, SyncRun
from oma.orders.signals import orders_changed
from oma.orders.tasks import sweep_all_stores
from tests.genstore_sandbox import connect, start_sandbox
from tests.signals import only_receivers

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def eager() -> Iterator[None]:
    before, app.conf.task_always_eager = app.conf.task_always_eager, True
    yield
    app.conf.task_always_eager = before


def test_beat_sweeps_every_active_store_and_its_hooks_run_in_tasks(redis_client, eager, monkeypatch):
    changed: list[tuple[str, int]] = []
    only_receivers(
        monkeypatch, orders_changed,
        lambda sender, store, order_ids, **kw: changed.append((store.domain, len(order_ids))),
    )
    sandbox = start_sandbox(orders=40, shops=("shop1", "shop2"))
    try:
        active = connect(sandbox, "shop1", rate_limit=(1000, 1000.0))
        paused = connect(sandbox, "shop2", rate_limit=(1000, 1000.0))
        paused.is_active = False
        paused.save()

        assert sweep_all_stores.delay(SyncRun.Kind.INCREMENTAL).get() == 1
        run = SyncRun.objects.get(store=active)
        assert (run.kind, run.state, run.created) == (SyncRun.Kind.FULL, SyncRun.State.SUCCEEDED, 40)
        assert not SyncRun.objects.filter(store=paused).exists()
        assert not Order.objects.filter(store=paused).exists()
        assert changed == [(active.domain, 40)]
    finally:
        sandbox.stop()
