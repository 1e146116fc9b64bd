"""add_merchant_user, the Merchants permission backend, and the store-path introspection behind tenancy."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from oma.core.tenancy import store_path_for
from oma.orders.models import LineItem, Order
from oma.stores.models import Store, StoreMembership
from tests.admin.factories import OrderFactory, StoreFactory
from tracking.models import CarrierAccount, Shipment, ShipmentLine, TrackingEvent

pytestmark = pytest.mark.django_db


def _run(*args: str) -> dict:
    from io import StringIO

    out = StringIO()
    call_command("add_merchant_user", *args, stdout=out)
    return json.loads(out.getvalue())


def test_creates_a_staff_user_limited_to_its_stores(client):
    first, second = StoreFactory(domain="one.genmystore.com"), StoreFactory(domain="two.genmystore.com")
    hidden = StoreFactory(domain="three.genmystore.com")
    OrderFactory(store=first, order_id="1001")
    OrderFactory(store=hidden, order_id="3003")
    result = _run("--username", "ann", "--password", "s3cret-pass", "--store", first.domain, "--store",
                  second.domain)
    assert result["created"] is True and result["stores"] == [first.domain, second.domain]
    user = get_user_model().objects.get(username="ann")
    assert user.is_staff and not user.is_superuser and user.check_password("s3cret-pass")

    assert client.login(username="ann", password="s3cret-pass")
    page = client.get(reverse("admin:orders_order_changelist"))
    assert [order.order_id for order in page.context["cl"].result_list] == ["1001"]
    index = client.get(reverse("admin:index")).content.decode()
    assert "/admin/auth/user/" not in index and "/admin/django_celery_beat/" not in index
    assert "/admin/orders/order/" in index


def test_updates_add_stores_and_keep_the_password_unless_given():
    first, second = StoreFactory(domain="one.genmystore.com"), StoreFactory(domain="two.genmystore.com")
    _run("--username", "bob", "--password", "first-pass", "--store", first.domain)
    result = _run("--username", "bob", "--store", second.domain)
    assert result["created"] is False and result["added"] == [second.domain]
    user = get_user_model().objects.get(username="bob")
    assert user.check_password("first-pass")
    assert set(StoreMembership.objects.filter(user=user).values_list("store__domain", flat=True)) == {
        first.domain, second.domain}
    result = _run("--username", "bob", "--store", second.domain, "--only")
    assert result["removed"] == [first.domain] and result["stores"] == [second.domain]


def test_unknown_store_or_missing_password_is_an_error():
    StoreFactory(domain="one.genmystore.com")
    with pytest.raises(CommandError, match="unknown store"):
        _run("--username", "cy", "--password", "amber-kettle-cy", "--store", "nope.genmystore.com")
    with pytest.raises(CommandError, match="password"):
        _run("--username", "cy", "--store", "one.genmystore.com")
    assert not get_user_model().objects.filter(username="cy").exists()


def test_merchant_permissions_cover_store_models_only():
    store = StoreFactory()
    _run("--username", "dee", "--password", "amber-kettle-dee", "--store", store.domain)
    user = get_user_model().objects.get(username="dee")
    assert user.has_perm("orders.view_order") and user.has_perm("tracking.change_shipment")
    assert user.has_perm("stores.change_store")
    assert not user.has_perm("auth.view_user") and not user.has_perm("django_celery_beat.change_periodictask")
    assert user.has_module_perms("orders") and not user.has_module_perms("auth")
    # A plain staff user with a membership but no permissions sees the rows of its store read... nothing.
    plain = get_user_model().objects.create_user("plain", password="pw", is_staff=True)
    StoreMembership.objects.create(user=plain, store=store)
    assert not plain.has_perm("orders.view_order")


@pytest.mark.parametrize(("model", "path"), [
    (Store, "pk"),
    (Order, "store"),
    (LineItem, "order__store"),
    (Shipment, "store"),
    (ShipmentLine, "shipment__store"),
    (TrackingEvent, "shipment__store"),
    (CarrierAccount, "store"),
    (get_user_model(), None),
    (PeriodicTask, None),
])
def test_store_paths_are_found_by_introspection(model, path):
    assert store_path_for(model) == path


def test_shared_carrier_accounts_are_for_the_operator_only(client):
    store = StoreFactory()
    own = CarrierAccount.objects.create(carrier="ups", store=store, label="own account")
    shared = CarrierAccount.objects.create(carrier="fedex", store=None, label="shared account")
    _run("--username", "eve", "--password", "amber-kettle-eve", "--store", store.domain)
    client.login(username="eve", password="amber-kettle-eve")
    listed = client.get(reverse("admin:tracking_carrieraccount_changelist")).context["cl"].result_list
    assert [account.pk for account in listed] == [own.pk]
    assert client.get(reverse("admin:tracking_carrieraccount_change", args=[shared.pk])).status_code == 302


def test_a_path_declared_on_the_admin_wins_over_introspection():
    from django.contrib import admin

    from oma.core.tenancy import SUPERUSER_ONLY, effective_store_path, model_is_store_scoped
    from oma.merchant.admin import TransitTimeStatAdmin
    from oma.merchant.models import TransitTimeStat

    store = StoreFactory()
    _run("--username", "fay", "--password", "amber-kettle-fay", "--store", store.domain)
    user = get_user_model().objects.get(username="fay")
    assert effective_store_path(TransitTimeStat) == "store" and user.has_perm("merchant.view_transittimestat")

    class OperatorOnly(TransitTimeStatAdmin):
        store_path = SUPERUSER_ONLY

    admin.site.unregister(TransitTimeStat)
    admin.site.register(TransitTimeStat, OperatorOnly)
    try:
        assert effective_store_path(TransitTimeStat) is None and not model_is_store_scoped(TransitTimeStat)
        fresh = get_user_model().objects.get(username="fay")
        assert not fresh.has_perm("merchant.view_transittimestat")
    finally:
        admin.site.unregister(TransitTimeStat)
        admin.site.register(TransitTimeStat, TransitTimeStatAdmin)
