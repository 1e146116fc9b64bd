"""add_merchant_user checks a password with Django's validators (AUTH_PASSWORD_VALIDATORS) before saving anything."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from oma.stores.models import Store
from tests.cli.conftest import run

pytestmark = pytest.mark.django_db


@pytest.fixture
def store() -> Store:
    return Store.objects.create(domain="shop1.genmystore.com", access_token="t", client_secret="s")


@pytest.mark.parametrize(("password", "says"), [
    ("1", "too short"),
    ("password123", "too common"),
    ("84736251947", "entirely numeric"),
    ("carol-shop1", "too similar to the username"),
])
def test_weak_passwords_are_refused_and_nothing_is_saved(store, password, says):
    ran = run("add_merchant_user", "--username", "carol-shop1", "--password", password, "--store", store.domain)
    assert ran.status == 1 and ran.error.startswith("password refused: ") and says in ran.error
    assert not get_user_model().objects.filter(username="carol-shop1").exists()


def test_a_new_password_for_an_existing_user_is_checked_too(store):
    assert run("add_merchant_user", "--username", "dan", "--password", "Long-Enough-Pass-7",
               "--store", store.domain).status == 0
    ran = run("add_merchant_user", "--username", "dan", "--password", "1", "--store", store.domain)
    assert ran.status == 1 and "too short" in ran.error
    assert get_user_model().objects.get(username="dan").check_password("Long-Enough-Pass-7")
