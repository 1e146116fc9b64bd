"""Admin for what the merchant tools record: the alert digests sent and the learned transit times.

The merchant's screens over the apps below live here too, registered by importing them: orders
(admin_orders.py: unified status, shipments, pushes, replays) and stores (admin_stores.py: connect, backfill,
branding and alert settings on the store's page)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from oma.merchant import admin_orders, admin_stores  # noqa: F401  (importing them registers them)
from oma.merchant.models import AlertDigest, TransitTimeStat


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(AlertDigest)
class AlertDigestAdmin(ReadOnlyAdmin):
    list_display = ["digest_date", "store", "subject", "sent_at", "attempts"]
    list_filter = ["store", "digest_date"]
    list_select_related = ["store"]
    search_fields = ["subject"]
    date_hierarchy = "digest_date"
    readonly_fields = ["store", "digest_date", "period_start", "period_end", "recipients", "counts", "subject",
                       "body", "created_at", "sent_at", "attempts", "last_error"]


@admin.register(TransitTimeStat)
class TransitTimeStatAdmin(ReadOnlyAdmin):
    list_display = ["store", "carrier", "destination_label", "sample_size", "p50_days", "p90_days", "on_time",
                    "computed_at"]
    list_filter = ["store", "carrier"]
    list_select_related = ["store"]
    search_fields = ["carrier", "destination"]

    @admin.display(description="destination", ordering="destination")
    def destination_label(self, obj: TransitTimeStat) -> str:
        return obj.destination or "all"

    @admin.display(description="on time")
    def on_time(self, obj: TransitTimeStat) -> str:
        return "—" if obj.on_time_rate is None else f"{obj.on_time_rate:.0%}"
