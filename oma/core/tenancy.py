"""Tenant isolation: which stores a user may see, and the admin machinery that enforces it everywhere.

Every ModelAdmin registered on OMA's admin site (oma.merchant.admin_site) gets `StoreScopedAdminMixin` mixed in, so
an app's admin.py needs no tenancy code of its own. For each model the mixin knows a *store path*: the lookup
from the model to a Store primary key.

- Declared on the ModelAdmin as `store_path = "order__store"`, or `store_path = SUPERUSER_ONLY`.
- Otherwise found by introspection: `pk` for Store itself; else the shallowest chain of forward foreign keys
  (one-to-one included) that reaches Store, a field named `store` first and non-null chains before nullable ones
  (`store`, `order__store`, `shipment__store`...); else a many-to-many hop to Store.
- No path at all: the model belongs to no store (users, groups, django-celery-beat's schedules) and only
  superusers see it. Pausing a beat task stops it for every store, so merchants never see those.

Superusers see everything. Any other staff user sees the rows of the stores they are a member of
(StoreMembership), and only those, in lists, change/delete/history pages (others redirect to the index, as for a
missing object), search, list-filter choices, foreign-key choices in forms and inlines, the autocomplete view,
actions (Django runs them on `get_queryset().filter(pk__in=...)`) and anything else built on `get_queryset`.
Rows with a NULL store (shared carrier accounts, deliveries from unknown shops) are the operator's: superusers only.
Every change list answers a crafted query string (`?store=abc`, a NUL, the year 9999) as Django answers a bad
lookup, with the list again and `?e=1`, never a 500 (TolerantChangeListMixin).

Members of the "Merchants" group hold view/add/change/delete on every store-scoped model through
`MerchantPermissionBackend`, computed from the admin registry, so a model added later needs no permission
migration; a ModelAdmin's own `has_*_permission` overrides still restrict further. Other staff users get exactly
the Django permissions they were given (e.g. a read-only support login), always within their stores.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import TYPE_CHECKING, Any, cast

from django.apps import apps
from django.contrib import admin
from django.contrib.admin import FieldListFilter, RelatedFieldListFilter, RelatedOnlyFieldListFilter
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import get_model_from_relation
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth.backends import BaseBackend
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.db.models import Q, QuerySet

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

SUPERUSER_ONLY = "__superuser_only__"
MERCHANT_GROUP = "Merchants"
MERCHANT_ACTIONS: frozenset[str] = frozenset({"view", "add", "change", "delete"})
MAX_PATH_DEPTH = 4

# Store paths declared for models whose admin we do not write (model label -> path or SUPERUSER_ONLY).
_declared_paths: dict[str, str] = {}


def declare_store_path(model: type[models.Model] | str, path: str) -> None:
    """Fix a model's store path (or SUPERUSER_ONLY) without touching its admin class."""
    label = model if isinstance(model, str) else model._meta.label
    _declared_paths[label.lower()] = path
    store_path_for.cache_clear()


def _store_model() -> type[models.Model]:
    return apps.get_model("stores", "Store")


@cache
def store_path_for(model: type[models.Model]) -> str | None:
    """The lookup from `model` to a Store pk, or None when the model belongs to no store (superusers only)."""
    declared = _declared_paths.get(model._meta.label_lower)
    if declared is not None:
        return None if declared == SUPERUSER_ONLY else declared
    store = _store_model()
    if model is store or issubclass(model, store):
        return "pk"
    found = _forward_fk_path(model, store)
    if found is not None:
        return found
    for field in model._meta.many_to_many:
        if field.related_model is store:
            return field.name
    return None


def _forward_fk_path(model: type[models.Model], store: type[models.Model]) -> str | None:
    # Breadth first: the shallowest chain wins; within a level, a field named "store", then non-null chains.
    level: list[tuple[type[models.Model], str, bool]] = [(model, "", False)]
    seen = {model}
    for _depth in range(MAX_PATH_DEPTH):
        hits: list[tuple[bool, bool, str]] = []
        next_level: list[tuple[type[models.Model], str, bool]] = []
        for current, prefix, nullable_so_far in level:
            for field in current._meta.concrete_fields:
                if not (field.is_relation and (field.many_to_one or field.one_to_one)):
                    continue
                related = field.related_model
                if related is None or isinstance(related, str):
                    continue
                path = f"{prefix}{field.name}"
                nullable = nullable_so_far or bool(field.null)
                if related is store:
                    hits.append((field.name != "store", nullable, path))
                elif related not in seen:
                    seen.add(related)
                    next_level.append((related, f"{path}__", nullable))
        if hits:
            return sorted(hits)[0][2]
        level = next_level
    return None


def path_crosses_many(model: type[models.Model], path: str) -> bool:
    """Whether following `path` from `model` may yield several rows per object (a many-to-many hop)."""
    current = model
    for name in path.split("__"):
        if name == "pk":
            return False
        field = current._meta.get_field(name)
        if field.many_to_many or field.one_to_many:
            return True
        current = cast("type[models.Model]", field.related_model)
    return False


# --- who sees which stores -------------------------------------------------------------------------------


def store_ids_for(user: Any) -> frozenset[int] | None:
    """The ids of the stores `user` may see; None means every store (superusers). Cached on the user object."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return frozenset()
    if user.is_superuser:
        return None
    cached = getattr(user, "_oma_store_ids", None)
    if cached is None:
        membership = apps.get_model("stores", "StoreMembership")
        cached = frozenset(membership.objects.filter(user_id=user.pk).values_list("store_id", flat=True))
        user._oma_store_ids = cached
    return cached


def forget_store_ids(user: Any) -> None:
    if hasattr(user, "_oma_store_ids"):
        del user._oma_store_ids


def is_merchant(user: Any) -> bool:
    if not (user is not None and getattr(user, "is_authenticated", False) and user.is_active and user.is_staff):
        return False
    cached = getattr(user, "_oma_is_merchant", None)
    if cached is None:
        cached = user.groups.filter(name=MERCHANT_GROUP).exists()
        user._oma_is_merchant = cached
    return cached


def stores_for(user: Any) -> QuerySet:
    """The Store rows `user` may see."""
    store = _store_model()
    ids = store_ids_for(user)
    return store._default_manager.all() if ids is None else store._default_manager.filter(pk__in=ids)


def effective_store_path(model: type[models.Model]) -> str | None:
    """The path the admin uses for `model`: its registered ModelAdmin's declaration, else introspection."""
    model_admin = admin.site._registry.get(model)
    if isinstance(model_admin, StoreScopedAdminMixin):
        return model_admin.get_store_path()
    return store_path_for(model)


def scope_queryset(queryset: QuerySet, *, user: Any, path: str | object | None = ...) -> QuerySet:
    """`queryset` narrowed to the stores `user` may see (unchanged for superusers, empty for unscoped models)."""
    ids = store_ids_for(user)
    if ids is None:
        return queryset
    model = queryset.model
    if path is ...:
        path = effective_store_path(model)
    if path is None or path == SUPERUSER_ONLY:
        return queryset.none()
    return filter_by_stores(queryset, path=str(path), store_ids=ids)


def filter_by_stores(queryset: QuerySet, *, path: str, store_ids: Iterable[int]) -> QuerySet:
    ids = list(store_ids)
    if not path_crosses_many(queryset.model, path):
        return queryset.filter(**{f"{path}__in": ids})
    # A many-valued hop would repeat rows: filter by a subquery of primary keys instead.
    inner = queryset.model._base_manager.filter(**{f"{path}__in": ids}).values("pk")
    return queryset.filter(pk__in=inner)


def object_in_scope(obj: models.Model, *, user: Any, path: str | None) -> bool:
    ids = store_ids_for(user)
    if ids is None:
        return True
    if path is None or path == SUPERUSER_ONLY:
        return False
    if obj.pk is None:
        store_id = resolve_store_id(obj, path)
        return store_id is None or store_id in ids
    cache_key = (getattr(user, "pk", None), type(obj), obj.pk)
    cache = obj.__dict__.setdefault("_oma_scope_cache", {})
    if cache_key not in cache:
        cache[cache_key] = filter_by_stores(
            type(obj)._base_manager.filter(pk=obj.pk), path=path, store_ids=ids
        ).exists()
    return cache[cache_key]


def resolve_store_id(obj: models.Model, path: str) -> int | None:
    """Follow a forward path on an (unsaved) object; None when a link is not set yet."""
    if path == "pk":
        return obj.pk
    current: Any = obj
    parts = path.split("__")
    for index, name in enumerate(parts):
        if index == len(parts) - 1:
            return getattr(current, f"{name}_id", None)
        current = getattr(current, name, None)
        if current is None:
            return None
    return None


def direct_store_field(model: type[models.Model]) -> str | None:
    """The name of the model's own foreign key to Store, when its store path is one."""
    path = store_path_for(model)
    if path and "__" not in path and path != "pk":
        field = model._meta.get_field(path)
        if field.many_to_one or field.one_to_one:
            return path
    return None


# --- list filters ------------------------------------------------------------------------------------


class ScopedRelatedChoicesMixin:
    """A related-field list filter that lists only the related rows the user may see."""

    def field_choices(self, field: Any, request: Any, model_admin: Any) -> list[tuple[str, StrOrPromise]]:
        if store_ids_for(request.user) is None:
            return super().field_choices(field, request, model_admin)  # type: ignore[misc]
        other_model = get_model_from_relation(field)
        visible = scope_queryset(other_model._default_manager.all(), user=request.user)
        ordering = self.field_admin_ordering(field, request, model_admin)  # type: ignore[attr-defined]
        return field.get_choices(
            include_blank=False, ordering=ordering, limit_choices_to=Q(pk__in=visible.values("pk"))
        )


class ScopedRelatedFieldListFilter(ScopedRelatedChoicesMixin, RelatedFieldListFilter):
    pass


# Every relational list filter named by a plain field path ("store", "order__store") uses the scoped class.
FieldListFilter.register(lambda field: bool(field.remote_field), ScopedRelatedFieldListFilter, take_priority=True)


@cache
def _scoped_filter_class(filter_class: type) -> type:
    return type(f"Scoped{filter_class.__name__}", (ScopedRelatedChoicesMixin, filter_class), {})


def scoped_list_filter(entry: Any) -> Any:
    """An explicit `(field, FilterClass)` entry rewritten so that a related-field filter is scoped."""
    if isinstance(entry, (tuple, list)) and len(entry) == 2 and isinstance(entry[1], type):
        field_path, filter_class = entry
        if (
            issubclass(filter_class, RelatedFieldListFilter)
            and not issubclass(filter_class, ScopedRelatedChoicesMixin)
            # RelatedOnlyFieldListFilter already lists only what the (scoped) changelist holds.
            and not issubclass(filter_class, RelatedOnlyFieldListFilter)
        ):
            return (field_path, _scoped_filter_class(filter_class))
    return entry


# --- crafted query strings ----------------------------------------------------------------------------


class TolerantChangeListMixin:
    """A change list that answers a crafted query string as Django answers a bad lookup (the list again, with
    `?e=1`), never with a 500: a NUL character (PostgreSQL refuses it in any text), a date hierarchy at the end of
    the calendar (Django computes the day after 9999-12-31), and a filter's own `queryset()` refusing a value
    (a SimpleListFilter's int() or a field's validation). Lookups the admin does not allow still answer 400."""

    def get_filters(self, request: Any) -> Any:
        for key, values in self.filter_params.items():  # type: ignore[attr-defined]
            if "\x00" in key or any("\x00" in value for value in values):
                raise IncorrectLookupParameters(f"NUL character in {key[:40]!r}")
        try:
            return super().get_filters(request)  # type: ignore[misc]
        except (ValueError, OverflowError) as exc:
            raise IncorrectLookupParameters(exc) from exc

    def get_queryset(self, request: Any, exclude_parameters: Any = None) -> QuerySet:
        try:
            return super().get_queryset(request, exclude_parameters)  # type: ignore[misc]
        except (ValueError, OverflowError, ValidationError) as exc:
            raise IncorrectLookupParameters(exc) from exc


@cache
def tolerant_changelist_class(changelist_class: type[ChangeList]) -> type[ChangeList]:
    if issubclass(changelist_class, TolerantChangeListMixin):
        return changelist_class
    return type(f"Tolerant{changelist_class.__name__}", (TolerantChangeListMixin, changelist_class), {})


# --- the admin mixins --------------------------------------------------------------------------------


class _ScopedFormFieldsMixin:
    """Foreign-key and many-to-many choices limited to what the user may see."""

    def _scope_formfield(self, formfield: Any, db_field: Any, request: Any) -> Any:
        if formfield is None or request is None or store_ids_for(request.user) is None:
            return formfield
        queryset = getattr(formfield, "queryset", None)
        if queryset is not None:
            formfield.queryset = scope_queryset(queryset, user=request.user)
        return formfield

    def formfield_for_foreignkey(self, db_field: Any, request: Any, **kwargs: Any) -> Any:
        formfield = super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[misc]
        return self._scope_formfield(formfield, db_field, request)

    def formfield_for_manytomany(self, db_field: Any, request: Any, **kwargs: Any) -> Any:
        formfield = super().formfield_for_manytomany(db_field, request, **kwargs)  # type: ignore[misc]
        return self._scope_formfield(formfield, db_field, request)


class StoreScopedAdminMixin(_ScopedFormFieldsMixin):
    """Mixed into every ModelAdmin by OmaAdminSite.register(); see the module docstring.

    The ModelAdmin may declare `store_path`; the mixin defines no default of its own, because it comes first in
    the MRO and would hide the declaration.
    """

    # -- the path --
    def get_store_path(self) -> str | None:
        declared = getattr(self, "store_path", None)
        if declared == SUPERUSER_ONLY:
            return None
        return declared or store_path_for(self.model)  # type: ignore[attr-defined]

    def is_store_scoped(self) -> bool:
        return self.get_store_path() is not None

    def _staff_limited(self, request: Any) -> bool:
        return store_ids_for(request.user) is not None

    # -- rows --
    def get_queryset(self, request: Any) -> QuerySet:
        queryset = super().get_queryset(request)  # type: ignore[misc]
        return scope_queryset(queryset, user=request.user, path=self.get_store_path())

    def get_changelist(self, request: Any, **kwargs: Any) -> type[ChangeList]:
        return tolerant_changelist_class(super().get_changelist(request, **kwargs))  # type: ignore[misc]

    def get_search_results(self, request: Any, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        if "\x00" in search_term:
            # No text holds a NUL (PostgreSQL refuses it): the autocomplete view, unlike the list's form, sends it on.
            return queryset.none(), False
        # Re-applied after the search: a custom search that reaches outside the queryset it was given stays scoped.
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)  # type: ignore
        return scope_queryset(results, user=request.user, path=self.get_store_path()), may_have_duplicates

    # -- permissions --
    def _obj_ok(self, request: Any, obj: Any) -> bool:
        return obj is None or object_in_scope(obj, user=request.user, path=self.get_store_path())

    def has_module_permission(self, request: Any) -> bool:
        if self._staff_limited(request) and not self.is_store_scoped():
            return False
        return super().has_module_permission(request)  # type: ignore[misc]

    def has_view_permission(self, request: Any, obj: Any = None) -> bool:
        if self._staff_limited(request) and not self.is_store_scoped():
            return False
        return super().has_view_permission(request, obj) and self._obj_ok(request, obj)  # type: ignore[misc]

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        if self._staff_limited(request) and not self.is_store_scoped():
            return False
        return super().has_change_permission(request, obj) and self._obj_ok(request, obj)  # type: ignore[misc]

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        if self._staff_limited(request) and not self.is_store_scoped():
            return False
        return super().has_delete_permission(request, obj) and self._obj_ok(request, obj)  # type: ignore[misc]

    def has_add_permission(self, request: Any, *args: Any) -> bool:
        ids = store_ids_for(request.user)
        if ids is not None and (not self.is_store_scoped() or not ids):
            return False
        return super().has_add_permission(request, *args)  # type: ignore[misc]

    # -- filters, forms, inlines --
    def get_list_filter(self, request: Any) -> Any:
        return [scoped_list_filter(entry) for entry in super().get_list_filter(request)]  # type: ignore[misc]

    def get_form(self, request: Any, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form_class = super().get_form(request, obj, change=change, **kwargs)  # type: ignore[misc]
        store_field = direct_store_field(self.model)  # type: ignore[attr-defined]
        # A merchant never moves an existing row to another store. Disabled (not read-only) so that the field stays
        # in the form for an admin's own form code; a disabled field ignores whatever is posted for it. The form
        # class and its fields are built afresh for each call, so this changes nothing for other users.
        if obj is not None and store_field and self._staff_limited(request):
            field = form_class.base_fields.get(store_field)
            if field is not None:
                field.disabled = True
        return form_class

    def get_inlines(self, request: Any, obj: Any) -> Any:
        return [scoped_inline_class(inline) for inline in super().get_inlines(request, obj)]  # type: ignore[misc]

    def save_model(self, request: Any, obj: Any, form: Any, change: bool) -> None:
        path = self.get_store_path()
        ids = store_ids_for(request.user)
        if ids is not None:
            store_field = direct_store_field(self.model)  # type: ignore[attr-defined]
            if store_field and getattr(obj, f"{store_field}_id") is None and len(ids) == 1:
                setattr(obj, f"{store_field}_id", next(iter(ids)))
            if path is None or (obj.pk is None and not object_in_scope(obj, user=request.user, path=path)):
                raise PermissionDenied("not one of your stores")
        super().save_model(request, obj, form, change)  # type: ignore[misc]
        if ids is not None and path is not None:
            obj.__dict__.pop("_oma_scope_cache", None)
            if not object_in_scope(obj, user=request.user, path=path):
                # The admin's view runs in a transaction: raising here rolls the save back.
                raise PermissionDenied("not one of your stores")


class StoreScopedInlineMixin(_ScopedFormFieldsMixin):
    """Inlines: their rows and their foreign-key choices are scoped like a ModelAdmin's."""

    def get_queryset(self, request: Any) -> QuerySet:
        queryset = super().get_queryset(request)  # type: ignore[misc]
        return scope_queryset(queryset, user=request.user)


@cache
def scoped_inline_class(inline_class: type) -> type:
    if issubclass(inline_class, StoreScopedInlineMixin):
        return inline_class
    return type(
        inline_class.__name__,
        (StoreScopedInlineMixin, inline_class),
        {"__module__": inline_class.__module__, "__qualname__": inline_class.__qualname__},
    )


@cache
def scoped_admin_class(admin_class: type) -> type:
    if issubclass(admin_class, StoreScopedAdminMixin):
        return admin_class
    return type(
        admin_class.__name__,
        (StoreScopedAdminMixin, admin_class),
        {
            "__module__": admin_class.__module__,
            "__qualname__": admin_class.__qualname__,
            "__doc__": admin_class.__doc__,
        },
    )


# --- permissions of the Merchants group --------------------------------------------------------------


def model_is_store_scoped(model: type[models.Model]) -> bool:
    """Scoped as the admin sees it (the registered ModelAdmin's declared path wins over introspection)."""
    return effective_store_path(model) is not None


class MerchantPermissionBackend(BaseBackend):
    """Members of the Merchants group may view, add, change and delete rows of every store-scoped model.

    Authorisation only (no `authenticate`): ModelBackend still logs people in. The rows themselves are limited
    to the user's stores by StoreScopedAdminMixin, so this grants "everything, in your stores".
    """

    def has_perm(self, user_obj: Any, perm: str, obj: Any = None) -> bool:
        if not is_merchant(user_obj) or "." not in perm:
            return False
        app_label, codename = perm.split(".", 1)
        action, _, model_name = codename.partition("_")
        if action not in MERCHANT_ACTIONS:
            return False
        try:
            model = apps.get_model(app_label, model_name)
        except LookupError:
            return False
        return model_is_store_scoped(model)

    def has_module_perms(self, user_obj: Any, app_label: str) -> bool:
        if not is_merchant(user_obj):
            return False
        try:
            app_models = apps.get_app_config(app_label).get_models()
        except LookupError:
            return False
        return any(model_is_store_scoped(model) for model in app_models)

    def get_all_permissions(self, user_obj: Any, obj: Any = None) -> set[str]:
        if not is_merchant(user_obj) or obj is not None:
            return set()
        return {
            f"{model._meta.app_label}.{action}_{model._meta.model_name}"
            for model in apps.get_models()
            if model_is_store_scoped(model)
            for action in MERCHANT_ACTIONS
        }
