"""OMA's admin site: every ModelAdmin registered on it is tenant-scoped (oma.core.tenancy).

`admin.site` and `@admin.register` resolve to this site (oma.merchant.admin_apps.OmaAdminConfig), so each app's
admin.py stays plain Django and still cannot leak another store's rows. It lives in oma.merchant, above the apps
it shows, because its index links the merchant dashboard.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin import ModelAdmin
from django.urls import URLPattern, URLResolver, path

from oma.core.tenancy import SUPERUSER_ONLY, declare_store_path, scoped_admin_class, store_ids_for

# Periodic tasks run for every store at once: pausing or editing one is the operator's call, never a merchant's.
for _label in (
    "django_celery_beat.PeriodicTask",
    "django_celery_beat.IntervalSchedule",
    "django_celery_beat.CrontabSchedule",
    "django_celery_beat.SolarSchedule",
    "django_celery_beat.ClockedSchedule",
):
    declare_store_path(_label, SUPERUSER_ONLY)


class OmaAdminSite(admin.AdminSite):
    site_header = "OMA"
    site_title = "OMA"
    index_title = "Orders, shipments and stores"
    index_template = "admin/oma_index.html"

    def register(self, model_or_iterable: Any, admin_class: type[ModelAdmin] | None = None, **options: Any) -> None:
        super().register(model_or_iterable, scoped_admin_class(admin_class or ModelAdmin), **options)

    def get_urls(self) -> list[URLResolver | URLPattern]:
        # why: the dashboard imports app admins that register on this site; at module load it re-enters admin.site
        from oma.merchant.dashboard import dashboard_view

        return [
            path("dashboard/", self.admin_view(dashboard_view), name="dashboard"),
            *super().get_urls(),
        ]

    def each_context(self, request: Any) -> dict[str, Any]:
        context = super().each_context(request)
        ids = store_ids_for(request.user) if getattr(request, "user", None) is not None else frozenset()
        context["oma_sees_all_stores"] = ids is None
        context["oma_has_stores"] = ids is None or bool(ids)
        return context
