"""Every admin change list answers a crafted query string without a 500 and without another tenant's rows.

For each registered ModelAdmin, every parameter its list filters and date hierarchy read (found from the change list
itself, so filters added later are probed too) gets non-integer, huge, NaN, non-ASCII, NUL and overlong values,
and unknown or forbidden lookups are tried. Django's answer to a bad lookup is a redirect to `?e=1` (or 400 for a
lookup the admin does not allow); the page must never be a 500, and merchant A's page never shows store B.

Some 5,000 pages, so each costs what it must and no more:
- A field filter's `__isnull` (Django turns any value into a bool first) and a field filter's `__exact` on a text
  field (the value reaches the query unchanged, so only its characters and length can matter) get the values of
  their equivalence classes only. A list filter's own parameter (custom code) and every other lookup get every value.
- The crafted requests go to the admin view itself, with Django's own mapping of an exception to its answer (a 500
  for anything unexpected, in the view or in rendering the page): the middleware reads no query string, and the
  test client's session, user and template bookkeeping cost a third of each page. The first query of each list
  also goes through the test client and every middleware, and must get the same answer (and pass the same check).
- The site-wide part of an admin page (AdminSite.each_context: the app list, and the navigation sidebar drawn from
  it) reads the user and the path, never the query string, and cost a third of each rendered page. The client's page
  renders all of it; the crafted pages of that list compute it once, and leave the sidebar out.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import pytest
from django.contrib import admin
from django.contrib.admin.utils import NotRelationField, get_fields_from_path
from django.contrib.admin.views.main import ChangeList
from django.contrib.messages.storage.fallback import FallbackStorage
from django.contrib.sessions.backends.base import SessionBase
from django.core.exceptions import FieldDoesNotExist
from django.core.handlers.exception import convert_exception_to_response
from django.db import models
from django.http import HttpRequest, HttpResponseBase
from django.template.response import SimpleTemplateResponse
from django.test import RequestFactory
from django.urls import resolve, reverse

from tests.admin.world import World, merchant, superuser

pytestmark = pytest.mark.django_db

REGISTRY = admin.site._registry
ADMIN_MODELS = sorted(REGISTRY, key=lambda model: model._meta.label)
SCOPED = [model for model in ADMIN_MODELS if REGISTRY[model].is_store_scoped()]

BAD_VALUES = [
    "abc", "-1", "1.5", "0", "99999999999999999999", "9" * 5000, "NaN", "Infinity", "²", "١٢", "\x00", "%00",
    "' OR 1=1 --", "é" * 300, "2024-13-45", "True", "[]",
]
# Django's prepare_lookup_value() turns any `__isnull` value into a bool ("", "0" and "false": False): one value of
# each, and NUL (refused before any filter runs).
ISNULL_VALUES = ["abc", "0", "\x00"]
# A text field's exact lookup sends the string as a query parameter, unparsed: ASCII, a quote, non-ASCII, overlong,
# NUL (PostgreSQL refuses it in any text) and a percent escape.
TEXT_VALUES = ["abc", "' OR 1=1 --", "²", "é" * 300, "9" * 5000, "\x00", "%00"]
DATE_PARTS = [
    {"year": "9999", "month": "12", "day": "31"},
    {"year": "9999", "month": "12"},
    {"year": "9999"},
    {"year": "0"},
    {"year": "1", "month": "1", "day": "0"},
    {"year": "2024", "month": "2", "day": "30"},
    {"year": "9" * 5000},
    {"year": "２０２４"},
]
OTHER_QUERIES = [
    {"nonexistent": "1"},
    {"pk__in": "abc"},
    {"id__gt": "9" * 30},
    {"store__domain__startswith": "bmark"},
    {"store__access_token__startswith": "t"},
    {"o": "abc"}, {"o": "99999"}, {"o": "-1.-2"},
    {"p": "abc"}, {"p": "9" * 5000},
    {"q": "\x00"}, {"q": "9" * 5000},
    {"_to_field": "access_token"},
    {"_facets": "1", "store": "abc"},
    {"e": "1"},
]


def _label(model: type[models.Model]) -> str:
    return model._meta.label


def changelist_url(model: type[models.Model]) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def filter_parameters(model: type[models.Model], user: Any) -> dict[str, list[str]]:
    """The query-string parameters the change list's filters read, for this user, each with the values to try."""
    model_admin = REGISTRY[model]
    request = RequestFactory().get(changelist_url(model))
    request.user = user
    changelist: ChangeList = model_admin.get_changelist_instance(request)
    names: list[str] = []
    custom: set[str] = set()  # read by a list filter's own code, not handed to filter() as Django's are: every value
    for spec in changelist.filter_specs:
        names.extend(spec.expected_parameters())
        if type(spec).queryset is not admin.FieldListFilter.queryset:
            custom.update(spec.expected_parameters())
    for entry in model_admin.get_list_filter(request):
        # A filter with no choices yet has no output and is left out of filter_specs: probe its parameter too.
        if isinstance(entry, str):
            names.append(f"{entry}__exact")
            names.append(f"{entry}__id__exact")
        elif isinstance(entry, type) and hasattr(entry, "parameter_name"):
            names.append(entry.parameter_name)
            custom.add(entry.parameter_name)
    return {name: BAD_VALUES if name in custom else values_for(model, name) for name in sorted(set(names))}


def values_for(model: type[models.Model], name: str) -> list[str]:
    """The bad values worth trying on a field lookup: see the module docstring."""
    path, _, lookup = name.rpartition("__")
    try:
        field = get_fields_from_path(model, path)[-1] if path else None
    except (FieldDoesNotExist, NotRelationField):  # not a field path (`status__id__exact`): every value
        field = None
    if field is None:
        return BAD_VALUES
    if lookup == "isnull":
        return ISNULL_VALUES
    if lookup == "exact" and not field.is_relation and isinstance(field, (models.CharField, models.TextField)):
        return TEXT_VALUES
    return BAD_VALUES


def queries_for(model: type[models.Model], user: Any) -> list[dict[str, str]]:
    queries = [{name: value} for name, values in filter_parameters(model, user).items() for value in values]
    hierarchy = REGISTRY[model].date_hierarchy
    if hierarchy:
        queries += [{f"{hierarchy}__{part}": value for part, value in parts.items()} for parts in DATE_PARTS]
    return queries + OTHER_QUERIES


def change_list_answer(model: type[models.Model], user: Any, query: dict[str, str]) -> HttpResponseBase:
    """What Django answers `user` for the change list with `query`, from the URL's view on: the admin's own checks,
    the change list, the rendered page, and an exception turned into its 4xx or 500 as Django's handler does."""
    url = changelist_url(model)
    request = RequestFactory().get(url, query)
    request.user = user
    request.session = SessionBase()
    request._messages = FallbackStorage(request)  # type: ignore[attr-defined]
    request.resolver_match = match = resolve(url)

    def view(request: HttpRequest) -> HttpResponseBase:
        response = match.func(request, *match.args, **match.kwargs)
        return response.render() if isinstance(response, SimpleTemplateResponse) else response

    return convert_exception_to_response(view)(request)


@contextmanager
def site_context_computed_once() -> Iterator[None]:
    """Within it, the admin site's each_context is computed once and reused, without the navigation sidebar: see
    the module docstring (for one user and one change list, it does not depend on the query string)."""
    each_context = admin.site.each_context
    computed: dict[str, Any] = {}

    def computed_once(request: HttpRequest) -> dict[str, Any]:
        if not computed:
            computed.update(each_context(request), is_nav_sidebar_enabled=False)
        return dict(computed)

    with mock.patch.object(admin.site, "each_context", computed_once):
        yield


def assert_answers_without_a_5xx(client, model: type[models.Model], user: Any, *, forbid: str | None) -> None:
    failures = []
    queries = queries_for(model, user)
    # The whole stack, once, the sidebar included: the same answer as the view's own.
    through_client = client.get(changelist_url(model), queries[0])
    assert through_client.status_code < 500, queries[0]
    assert through_client.status_code == change_list_answer(model, user, queries[0]).status_code, queries[0]
    assert not forbid or forbid not in through_client.content.decode(errors="replace"), queries[0]
    with site_context_computed_once():
        for query in queries:
            response = change_list_answer(model, user, query)
            if response.status_code >= 500:
                failures.append((query if len(str(query)) < 120 else str(query)[:120], response.status_code))
                continue
            if forbid and forbid in response.content.decode(errors="replace"):
                failures.append((str(query)[:120], "shows the other store"))
    assert failures == [], f"{_label(model)}: {failures}"


@pytest.fixture
def world() -> World:
    return World()


@pytest.mark.parametrize("model", SCOPED, ids=_label)
def test_merchant_change_lists_answer_crafted_query_strings_without_500_or_other_stores_rows(model, world, client):
    world.get(model, "a"), world.get(model, "b")
    user = merchant("alice", world.store_a)
    client.force_login(user)
    client.raise_request_exception = False
    assert_answers_without_a_5xx(client, model, user, forbid="bmark")


@pytest.mark.parametrize("model", ADMIN_MODELS, ids=_label)
def test_superuser_change_lists_answer_crafted_query_strings_without_500(model, world, client):
    if REGISTRY[model].is_store_scoped():
        world.get(model, "a"), world.get(model, "b")
    user = superuser()
    client.force_login(user)
    client.raise_request_exception = False
    assert_answers_without_a_5xx(client, model, user, forbid=None)


@pytest.mark.parametrize("path", ["webhooks/webhookdelivery", "webhooks/customerdataexport"])
def test_store_filter_answers_abc_with_the_invalid_lookup_redirect_not_500(path, world, client):
    client.force_login(superuser())
    client.raise_request_exception = False
    response = client.get(f"/admin/{path}/", {"store": "abc"})
    assert response.status_code == 302 and response["Location"].endswith("?e=1")


def test_store_filter_with_another_stores_id_shows_nothing_of_it(world, client):
    from webhooks.models import WebhookDelivery

    world.get(WebhookDelivery, "a"), world.get(WebhookDelivery, "b")
    client.force_login(merchant("alice", world.store_a))
    response = client.get("/admin/webhooks/webhookdelivery/", {"store": str(world.store_b.pk)})
    assert response.status_code in (200, 302)
    assert "bmark" not in response.content.decode()
    if response.status_code == 200:
        assert list(response.context["cl"].result_list) == []


def test_autocomplete_answers_a_nul_search_term_without_500(world, client):
    from oma.orders.models import Order

    world.get(Order, "a")
    client.force_login(merchant("alice", world.store_a))
    client.raise_request_exception = False
    response = client.get(reverse("admin:autocomplete"), {
        "app_label": "tracking", "model_name": "shipment", "field_name": "order", "term": "a\x00b"})
    assert response.status_code == 200
    assert response.json()["results"] == []


@pytest.mark.parametrize("pk", ["99999999999999999999", "9" * 5000])
def test_customer_data_export_download_answers_a_huge_id_without_500(pk, world, client):
    client.force_login(superuser())
    client.raise_request_exception = False
    # Up to 18 digits the download view answers 404; longer ids fall to the admin's "no such object" redirect.
    assert client.get(f"/admin/webhooks/customerdataexport/{pk}/download/").status_code in (302, 404)
