"""A staff login with *view* permission only reads: no admin action or custom page lets it change rows or queue work
(pushes to Genstore, polls, replays, secret rotations). The change permission is what acting needs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from celery.signals import before_task_publish
from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import models
from django.test import RequestFactory
from django.urls import reverse

from oma.core.tenancy import filter_by_stores, store_path_for
from oma.fulfillment.models import FulfillmentPush
from oma.fulfillment.reconciliation import store_reconcile
from oma.stores.models import Store, StoreMembership
from tests.admin.factories import LineItemFactory, OrderFactory, ShipmentFactory
from tests.admin.world import World

pytestmark = pytest.mark.django_db

RECONCILE = "/admin/fulfillment/fulfillmentpush/reconcile/"
REGISTRY = admin.site._registry
SCOPED = sorted((m for m in REGISTRY if REGISTRY[m].is_store_scoped()), key=lambda m: m._meta.label)
# Actions that only read (a CSV download): a view permission is enough for them.
READ_ONLY_ACTIONS = {"export_csv"}


def _label(model: type[models.Model]) -> str:
    return model._meta.label


def staff_with(username: str, store: Store, *codenames: str) -> Any:
    """A staff login (not a Merchant) on `store` with exactly these permissions."""
    user = get_user_model().objects.create_user(username, password="pw", is_staff=True)
    StoreMembership.objects.create(user=user, store=store)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


def every_view_permission() -> list[str]:
    return list(Permission.objects.filter(codename__startswith="view_").values_list("codename", flat=True))


def store_snapshot(store: Store) -> dict[str, list[dict[str, Any]]]:
    """Every row of `store` in every model that belongs to a store."""
    snapshot = {}
    for model in apps.get_models():
        path = store_path_for(model)
        if path is None:
            continue
        rows = filter_by_stores(model._base_manager.all(), path=path, store_ids=[store.pk]).order_by("pk")
        snapshot[model._meta.label] = [
            {key: bytes(value) if isinstance(value, memoryview) else value for key, value in row.items()}
            for row in rows.values()
        ]
    return snapshot


@pytest.fixture
def published_tasks() -> Iterator[list[str]]:
    """Names of the Celery tasks sent to the broker during the test (the signal Celery sends before publishing)."""
    sent: list[str] = []

    def record(sender: str | None = None, **kwargs: Any) -> None:
        sent.append(str(sender))

    before_task_publish.connect(record, weak=False)
    yield sent
    before_task_publish.disconnect(record)


@pytest.fixture
def unpushed_shipment() -> Any:
    """A store with one paid order whose shipment Genstore has no fulfillment for: a fixable finding."""
    store = Store.objects.create(domain="shop1.genmystore.com", name="Shop 1", access_token="t", client_secret="s")
    order = OrderFactory(store=store, financial_status="paid", fulfillment_status="unfulfilled")
    LineItemFactory(order=order, quantity=1)
    shipment = ShipmentFactory(order=order, store=store, tracking_number="9400100000000000000001")
    assert store_reconcile(store=store).fixable, "the scene must have a fixable finding"
    return shipment


# --- the reconciliation page ----------------------------------------------------------------------------------


def test_reconcile_page_answers_403_to_a_post_from_a_view_only_user_and_enqueues_nothing(
    client, unpushed_shipment, published_tasks, django_capture_on_commit_callbacks
):
    store = unpushed_shipment.store
    client.force_login(staff_with("viewer", store, "view_fulfillmentpush"))
    assert client.get(RECONCILE, {"store": store.pk}).status_code == 200  # reading stays allowed

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(RECONCILE, {"store": store.pk})
    assert response.status_code == 403
    assert not FulfillmentPush.objects.exists()
    assert callbacks == [] and published_tasks == []


def test_reconcile_page_offers_the_push_button_only_with_change_permission(client, unpushed_shipment):
    store = unpushed_shipment.store
    client.force_login(staff_with("viewer", store, "view_fulfillmentpush"))
    page = client.get(RECONCILE, {"store": store.pk}).content.decode()
    assert "Shipments with no Genstore fulfillment (1)" in page
    assert "missing fulfillment(s)" not in page

    client.force_login(staff_with("pusher", store, "view_fulfillmentpush", "change_fulfillmentpush"))
    assert "missing fulfillment(s)" in client.get(RECONCILE, {"store": store.pk}).content.decode()


def test_reconcile_page_queues_the_fix_for_a_user_with_change_permission(
    client, unpushed_shipment, django_capture_on_commit_callbacks
):
    store = unpushed_shipment.store
    client.force_login(staff_with("pusher", store, "view_fulfillmentpush", "change_fulfillmentpush"))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(RECONCILE, {"store": store.pk})
    assert response.status_code == 302
    assert FulfillmentPush.objects.get().shipment_id == unpushed_shipment.pk
    assert len(callbacks) == 1  # the push task, sent after the commit


# --- every action of every admin ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", SCOPED, ids=_label)
def test_a_view_only_user_runs_no_admin_action_that_changes_or_enqueues(
    model, client, published_tasks, django_capture_on_commit_callbacks
):
    world = World()
    obj = world.get(model, "a")
    viewer = staff_with("viewer", world.store_a, *every_view_permission())
    client.force_login(viewer)
    model_admin = REGISTRY[model]
    request = RequestFactory().get("/admin/")
    request.user = viewer
    offered = set(model_admin.get_actions(request))
    assert offered <= READ_ONLY_ACTIONS, f"{_label(model)} offers {sorted(offered - READ_ONLY_ACTIONS)} to a viewer"

    declared = {name if isinstance(name, str) else name.__name__ for name in model_admin.actions or ()}
    before = store_snapshot(world.store_a)
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    for action in sorted((declared | {"delete_selected"}) - READ_ONLY_ACTIONS):
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            response = client.post(url, {"action": action, "_selected_action": [str(obj.pk)], "index": "0",
                                         "post": "yes"})
        assert response.status_code in (200, 302, 403), (action, response.status_code)
        assert callbacks == [], action
    assert published_tasks == []
    assert store_snapshot(world.store_a) == before


@pytest.mark.parametrize("model", SCOPED, ids=_label)
def test_a_merchant_keeps_every_action(model):
    """The Merchants group holds the change permission on its stores' rows: nothing above takes an action away."""
    from tests.admin.world import merchant

    store = Store.objects.create(domain="m.genmystore.com", access_token="t", client_secret="s")
    request = RequestFactory().get("/admin/")
    request.user = merchant("merchant", store)
    model_admin = REGISTRY[model]
    declared = {name if isinstance(name, str) else name.__name__ for name in model_admin.actions or ()}
    assert declared <= set(model_admin.get_actions(request))
