"""Two tenants' worth of rows for every model the admin knows, built generically from the model definitions.

Every text field of store B's rows carries the marker "bmark" (store A's carry "amark"), so a page merchant A
sees must never contain "bmark": that one check covers list cells, filter choices, form dropdowns, inlines and
anything else rendered. The builder walks fields by type, so a model added later is covered without an edit; a
model whose constraints the generic values cannot satisfy gets an entry in OVERRIDES (and the walking test fails
with a clear message until it has one).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.apps import apps
from django.contrib.auth import get_user_model
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from oma.core.tenancy import direct_store_field, filter_by_stores, store_path_for
from oma.stores.models import Store

MARKERS = {"a": "amark", "b": "bmark", "g": "gmark"}
_counter = itertools.count(1)

# (model label, field name) -> value, or callable(world, store, tag) -> value.
OVERRIDES: dict[tuple[str, str], Any] = {
    ("tracking.ShipmentLine", "quantity"): 1,
    ("merchant.StoreBranding", "accent_colour"): "#336699",
}


class World:
    def __init__(self) -> None:
        self.store_a = Store.objects.create(
            domain="amark-a.genmystore.com", name="amark Store A", access_token="t-a", client_secret="s-a"
        )
        self.store_b = Store.objects.create(
            domain="bmark-b.genmystore.com", name="bmark Store B", access_token="t-b", client_secret="s-b"
        )
        self.objects: dict[tuple[type[models.Model], str], models.Model] = {}
        self._building: set[tuple[type[models.Model], str]] = set()

    def store(self, tag: str) -> Store:
        return {"a": self.store_a, "b": self.store_b}[tag]

    def get(self, model: type[models.Model], tag: str) -> models.Model:
        """The one row of `model` that belongs to store `tag` ("a" or "b"), or an unscoped shared row ("g")."""
        model = model._meta.concrete_model
        if model is Store and tag in ("a", "b"):
            return self.store(tag)
        key = (model, tag)
        if key not in self.objects:
            if key in self._building:
                raise RecursionError(f"foreign-key cycle through {model._meta.label}")
            self._building.add(key)
            try:
                self.objects[key] = self._build(model, tag)
            finally:
                self._building.discard(key)
        return self.objects[key]

    def another(self, model: type[models.Model], tag: str, variant: int) -> models.Model:
        """One more row of `model` in store `tag` (parents shared with get()'s row). `variant` picks other choices
        and earlier dates, so that per-store unique constraints (one active account per carrier, one digest a
        day) still hold."""
        model = model._meta.concrete_model
        try:
            with transaction.atomic():
                return self._build(model, tag, variant=variant)
        except IntegrityError:  # a unique constraint on a parent link (one export per delivery...): new parents
            return self._build(model, tag, variant=variant, fresh_parents=True)

    # -- building --
    def _build(
        self, model: type[models.Model], tag: str, variant: int = 0, fresh_parents: bool = False
    ) -> models.Model:
        scoped = tag in ("a", "b") and store_path_for(model) is not None
        values: dict[str, Any] = {}
        for field in model._meta.concrete_fields:
            if field.primary_key or getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
                continue
            override = OVERRIDES.get((model._meta.label, field.name))
            if override is not None:
                values[field.name] = override(self, self.store(tag), tag) if callable(override) else override
            elif field.is_relation:
                values[field.name] = self._related_value(model, field, tag if scoped else "g",
                                                         fresh=fresh_parents and variant)
            else:
                values[field.name] = self._plain_value(field, MARKERS[tag if scoped else "g"], variant)
        instance = model(**values)
        instance.save()
        for field in model._meta.many_to_many:
            related = field.related_model
            if store_path_for(related) is not None and scoped:
                getattr(instance, field.name).add(self.get(related, tag))
        return instance

    def _related_value(self, model: type[models.Model], field: models.Field, tag: str, fresh: int = 0) -> Any:
        related = field.related_model._meta.concrete_model
        related_scoped = store_path_for(related) is not None
        if related is Store:
            return self.store(tag) if tag in ("a", "b") else (None if field.null else self.store_a)
        if fresh and tag in ("a", "b") and related_scoped:
            return self.another(related, tag, fresh)
        if tag in ("a", "b") and related_scoped:
            try:
                return self.get(related, tag)
            except RecursionError:
                if field.null:
                    return None
                raise
        if field.null:
            return None
        return self.get(related, "g")

    def _plain_value(self, field: models.Field, marker: str, variant: int = 0) -> Any:
        n = next(_counter)
        text = f"{marker}{n}"
        if field.choices:
            values = [value for value, _label in field.flatchoices if value not in ("", None)]
            if variant and values:
                return values[variant % len(values)]
            if field.has_default() and field.get_default() in values:
                return field.get_default()
            return values[0] if values else field.get_default()
        if isinstance(field, models.BooleanField):
            return field.get_default() if field.has_default() else (None if field.null else False)
        if field.null and not isinstance(field, (models.CharField, models.TextField)):
            return None
        if isinstance(field, models.JSONField):
            return field.get_default() if field.has_default() else {}
        if isinstance(field, models.EmailField):
            return f"{text}@example.com"
        if isinstance(field, models.URLField):
            return f"https://{text}.example.com/"
        if isinstance(field, models.SlugField):
            return f"{text}-slug"[: field.max_length]
        if isinstance(field, models.GenericIPAddressField):
            return "127.0.0.1"
        if isinstance(field, (models.CharField, models.TextField)):
            default = field.get_default() if field.has_default() else ""
            if default:
                return default
            return text[: field.max_length] if field.max_length else text
        if isinstance(field, models.DateTimeField):
            return timezone.now() - timedelta(days=1 + variant)
        if isinstance(field, models.DateField):
            return timezone.now().date() - timedelta(days=variant)
        if isinstance(field, models.DurationField):
            return timedelta(days=1)
        if isinstance(field, models.DecimalField):
            return Decimal("1")
        if isinstance(field, (models.IntegerField, models.FloatField)):
            if field.has_default() and field.get_default() is not None:
                return field.get_default()
            return 1
        if isinstance(field, models.UUIDField):
            return uuid.uuid4()
        if isinstance(field, models.BinaryField):
            return b""
        if isinstance(field, models.FileField):
            return ""
        if field.has_default():
            return field.get_default()
        raise NotImplementedError(f"no generic value for {field.__class__.__name__} {field}")


def b_snapshot() -> dict[str, list[dict[str, Any]]]:
    """Every row of store B, in every model that belongs to a store: an action on B's ids must leave it equal."""
    store_b = Store.objects.get(domain="bmark-b.genmystore.com")
    snapshot = {}
    for model in apps.get_models():
        path = store_path_for(model)
        if path is None:
            continue
        rows = filter_by_stores(model._base_manager.all(), path=path, store_ids=[store_b.pk]).order_by("pk")
        snapshot[model._meta.label] = [_comparable(row) for row in rows.values()]
    return snapshot


def _comparable(row: dict[str, Any]) -> dict[str, Any]:
    return {key: bytes(value) if isinstance(value, memoryview) else value for key, value in row.items()}


def merchant(username: str, *stores: Store) -> Any:
    from oma.merchant.services import merchant_user_upsert

    return merchant_user_upsert(
        username=username, password="pw-" + username, store_domains=[store.domain for store in stores]
    ).user


def superuser() -> Any:
    return get_user_model().objects.create_superuser("root", "root@example.com", "pw-root")


def store_field_of(model: type[models.Model]) -> str | None:
    return direct_store_field(model)


Builder = Callable[[World, Store, str], Any]
