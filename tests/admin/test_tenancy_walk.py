"""Walk EVERY model registered in admin and prove tenant isolation: merchant A (store A only) against store B.

The model list comes from admin.site._registry at collection time, so a model registered later is walked too,
and its rows are built generically (tests/admin/world.py): nothing to add here for it to be covered.
"""

from __future__ import annotations

import json

import pytest
from django.apps import apps
from django.contrib import admin
from django.db import models
from django.test import RequestFactory
from django.urls import reverse

from oma.core.tenancy import StoreScopedAdminMixin
from oma.stores.models import Store
from tests.admin.world import World, b_snapshot, merchant, superuser

REGISTRY = admin.site._registry
ADMIN_MODELS = sorted(REGISTRY, key=lambda model: model._meta.label)
SCOPED = [model for model in ADMIN_MODELS if REGISTRY[model].is_store_scoped()]
SUPERUSER_ONLY = [model for model in ADMIN_MODELS if not REGISTRY[model].is_store_scoped()]


def _label(model: type[models.Model]) -> str:
    return model._meta.label


def _autocomplete_sources() -> list[tuple[type[models.Model], str]]:
    sources = []
    for model in apps.get_models():
        for field in model._meta.get_fields():
            if not (field.is_relation and field.concrete and (field.many_to_one or field.one_to_one
                                                               or field.many_to_many)):
                continue
            remote = field.related_model
            if remote in REGISTRY and REGISTRY[remote].search_fields:
                sources.append((model, field.name))
    return sorted(sources, key=lambda pair: (pair[0]._meta.label, pair[1]))


AUTOCOMPLETE_SOURCES = _autocomplete_sources()


def admin_url(model: type[models.Model], view: str, *args: object) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def world(db) -> World:
    return World()


@pytest.fixture
def merchant_a(world: World):
    return merchant("alice", world.store_a)


@pytest.fixture
def client_a(client, merchant_a):
    client.force_login(merchant_a)
    return client


def _request_as(user):
    request = RequestFactory().get("/admin/")
    request.user = user
    return request


def _refused(response) -> bool:
    """What a cross-tenant URL may answer: a redirect to the admin index (Django's 'does not exist'), 403 or 404."""
    if response.status_code == 302:
        return response["Location"] in (reverse("admin:index"), "/admin/") or "login" in response["Location"]
    return response.status_code in (403, 404)


def test_every_registered_admin_is_tenant_scoped():
    unscoped = [_label(model) for model, model_admin in REGISTRY.items()
                if not isinstance(model_admin, StoreScopedAdminMixin)]
    assert unscoped == []


def test_the_walk_covers_the_project_models():
    labels = {_label(model) for model in SCOPED}
    assert {"stores.Store", "orders.Order", "orders.SyncRun", "orders.Refund"} <= labels
    assert {"auth.User", "auth.Group", "django_celery_beat.PeriodicTask"} <= {_label(m) for m in SUPERUSER_ONLY}


@pytest.mark.parametrize("model", SCOPED, ids=_label)
def test_merchant_a_sees_only_store_a(model, world: World, client_a, merchant_a):
    model_admin = REGISTRY[model]
    try:
        a_obj, b_obj = world.get(model, "a"), world.get(model, "b")
    except Exception as exc:  # pragma: no cover - a message for whoever registers a new model
        pytest.fail(f"tests/admin/world.py cannot build {_label(model)} generically ({exc!r}); add an OVERRIDES entry")
    before = b_snapshot()

    # The changelist: A's row, never B's, and no trace of B anywhere on the page (cells, filters, facets).
    for query in ("", "?_facets=1"):
        response = client_a.get(admin_url(model, "changelist") + query)
        assert response.status_code == 200, (query, response.status_code)
        html = response.content.decode()
        assert "bmark" not in html
        shown = {obj.pk for obj in response.context["cl"].result_list}
        assert b_obj.pk not in shown
        assert a_obj.pk in shown

    # Searching for B's own values finds nothing.
    if model_admin.get_search_fields(_request_as(merchant_a)):
        b_texts = [value for value in _texts_of(b_obj) if "bmark" in value] or [str(b_obj.pk)]
        for term in b_texts[:3]:
            response = client_a.get(admin_url(model, "changelist"), {"q": term})
            assert response.status_code == 200
            assert b_obj.pk not in {obj.pk for obj in response.context["cl"].result_list}

    # B's object by URL: change, history, delete pages are refused (GET and POST).
    for view in ("change", "history", "delete"):
        response = client_a.get(admin_url(model, view, b_obj.pk))
        assert _refused(response), (view, response.status_code)
        assert "bmark" not in response.content.decode()
    assert _refused(client_a.post(admin_url(model, "change", b_obj.pk), {}))
    assert _refused(client_a.post(admin_url(model, "delete", b_obj.pk), {"post": "yes"}))

    # A's own pages and forms offer nothing of B's (dropdowns, inlines, read-only links).
    response = client_a.get(admin_url(model, "change", a_obj.pk))
    assert response.status_code == 200
    assert "bmark" not in response.content.decode()
    request = _request_as(merchant_a)
    if model_admin.has_add_permission(request):
        response = client_a.get(admin_url(model, "add"), follow=True)
        assert response.status_code == 200
        assert "bmark" not in response.content.decode()
    _assert_form_choices_exclude_b(model_admin, request, a_obj, world)

    # Every action, run on a crafted selection of B's ids, changes nothing of B.
    for action_name in model_admin.get_actions(request):
        response = client_a.post(
            admin_url(model, "changelist"),
            {"action": action_name, "_selected_action": [str(b_obj.pk)], "index": "0", "post": "yes"},
        )
        assert response.status_code in (200, 302), (action_name, response.status_code)
        body = b"".join(response.streaming_content) if response.streaming else response.content  # CSV exports
        assert "bmark" not in body.decode(), action_name

    # Custom pages of the admin (downloads, uploads, exports...): with B's id they refuse, without one they show
    # nothing of B's. Found from the admin's own URL patterns, so pages added later are probed too.
    for pattern in _custom_patterns(model_admin):
        params = list(pattern.pattern.converters)
        if len(params) > 1:
            continue
        url = reverse(f"admin:{pattern.name}", kwargs={params[0]: b_obj.pk} if params else {})
        response = client_a.get(url)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert "bmark" not in body.decode(errors="replace"), url
        if params:
            assert _refused(response), (url, response.status_code)

    assert b_snapshot() == before


STANDARD_VIEWS = ("changelist", "add", "history", "delete", "change")


def _custom_patterns(model_admin) -> list:
    from django.urls import URLPattern

    prefix = f"{model_admin.opts.app_label}_{model_admin.opts.model_name}_"
    return [
        pattern for pattern in model_admin.get_urls()
        if isinstance(pattern, URLPattern) and pattern.name
        and pattern.name.removeprefix(prefix) not in STANDARD_VIEWS
    ]


@pytest.mark.parametrize("model", SCOPED, ids=_label)
def test_superuser_sees_both_stores(model, world: World, client):
    a_obj, b_obj = world.get(model, "a"), world.get(model, "b")
    client.force_login(superuser())
    response = client.get(admin_url(model, "changelist"))
    assert response.status_code == 200
    shown = {obj.pk for obj in response.context["cl"].result_list}
    assert {a_obj.pk, b_obj.pk} <= shown
    assert client.get(admin_url(model, "change", b_obj.pk)).status_code == 200


@pytest.mark.parametrize("model", SUPERUSER_ONLY, ids=_label)
def test_models_of_no_store_are_for_superusers_only(model, world: World, client_a):
    assert client_a.get(admin_url(model, "changelist")).status_code == 403
    response = client_a.get(admin_url(model, "add"))
    assert response.status_code in (302, 403)
    shared = model._default_manager.first()
    if shared is not None:
        assert _refused(client_a.get(admin_url(model, "change", shared.pk)))
    for pattern in _custom_patterns(REGISTRY[model]):
        params = list(pattern.pattern.converters)
        if len(params) == 1 and shared is not None:
            assert _refused(client_a.get(reverse(f"admin:{pattern.name}", kwargs={params[0]: shared.pk})))
        elif not params:
            assert client_a.get(reverse(f"admin:{pattern.name}")).status_code in (302, 403)
    index = client_a.get(reverse("admin:index")).content.decode()
    assert admin_url(model, "changelist") not in index


@pytest.mark.parametrize(("source", "field_name"), AUTOCOMPLETE_SOURCES,
                         ids=[f"{_label(m)}.{f}" for m, f in AUTOCOMPLETE_SOURCES])
def test_autocomplete_lists_only_store_a(source, field_name, world: World, client_a):
    remote = source._meta.get_field(field_name).related_model
    if not REGISTRY[remote].is_store_scoped():
        response = client_a.get(reverse("admin:autocomplete"), {
            "app_label": source._meta.app_label, "model_name": source._meta.model_name, "field_name": field_name})
        assert response.status_code == 403
        return
    b_remote = world.get(remote, "b")
    world.get(remote, "a")
    for term in ("", "bmark", str(b_remote.pk)):
        response = client_a.get(reverse("admin:autocomplete"), {
            "app_label": source._meta.app_label, "model_name": source._meta.model_name,
            "field_name": field_name, "term": term})
        assert response.status_code in (200, 403)
        if response.status_code == 200:
            payload = json.loads(response.content)
            assert str(b_remote.pk) not in {row["id"] for row in payload["results"]} or _pk_is_shared(remote, b_remote)
            assert "bmark" not in response.content.decode()


def _pk_is_shared(model: type[models.Model], obj: models.Model) -> bool:  # pragma: no cover - ids are distinct
    return False


def _texts_of(obj: models.Model) -> list[str]:
    return [str(getattr(obj, field.attname)) for field in obj._meta.concrete_fields
            if isinstance(field, (models.CharField, models.TextField)) and getattr(obj, field.attname)]


def _assert_form_choices_exclude_b(model_admin, request, a_obj, world: World) -> None:
    forms = []
    if model_admin.has_change_permission(request, a_obj) or model_admin.has_view_permission(request, a_obj):
        forms.append(model_admin.get_form(request, a_obj)(instance=a_obj))
        for formset_class, _inline in model_admin.get_formsets_with_inlines(request, a_obj):
            formset = formset_class(instance=a_obj)
            forms.append(formset.empty_form)
            forms.extend(formset.forms)
    for form in forms:
        for name, field in form.fields.items():
            queryset = getattr(field, "queryset", None)
            if queryset is None:
                continue
            related = queryset.model
            b_obj = world.store_b if related is Store else world.objects.get((related, "b"))
            if b_obj is not None:
                assert not queryset.filter(pk=b_obj.pk).exists(), f"{type(form).__name__}.{name} offers B's row"


@pytest.mark.parametrize("model", SCOPED, ids=_label)
def test_every_list_costs_the_same_queries_for_more_rows(model, world: World, client_a, merchant_a):
    """No admin list runs a query per row (N+1), whatever app it belongs to."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from oma.stores.models import StoreMembership

    world.get(model, "a")

    def count() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client_a.get(admin_url(model, "changelist")).status_code == 200
        return len(captured.captured_queries)

    one = count()
    for variant in (1, 2, 3):
        if model is Store:  # a merchant's store list grows with memberships
            extra = Store.objects.create(domain=f"amark-extra{variant}.genmystore.com", access_token="t",
                                         client_secret="s")
            StoreMembership.objects.create(user=merchant_a, store=extra)
        elif any(f.one_to_one and f.related_model is Store for f in model._meta.concrete_fields):
            # One row per store (a store's settings): more rows need more of the merchant's stores.
            extra = Store.objects.create(domain=f"amark-extra{variant}.genmystore.com", access_token="t",
                                         client_secret="s")
            StoreMembership.objects.create(user=merchant_a, store=extra)
            model._default_manager.create(store=extra)
        else:
            world.another(model, "a", variant)
    assert count() == one, f"{_label(model)}: the list runs more queries with more rows"
