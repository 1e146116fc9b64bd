"""Admin: the webhook delivery log (filters, raw payload, replay) and the customer data exports (download)."""

from __future__ import annotations

import json
import re
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.auth import get_permission_codename
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.defaultfilters import pluralize
from django.urls import path, reverse
from django.utils.html import format_html

from oma.core.topic_handlers import handled_topics
from oma.genstore.topics import WEBHOOK_TOPICS
from oma.stores.models import Store
from webhooks.models import CustomerDataExport, WebhookDelivery
from webhooks.replay import deliveries_replay


def _visible_store_ids(request: HttpRequest) -> QuerySet[Store, int] | None:
    """None for superusers (everything); otherwise the stores the staff user is a member of."""
    user = request.user
    if user.is_superuser:
        return None
    if not user.is_authenticated:  # the admin lets no anonymous user in; nothing is visible to one
        return Store.objects.none().values_list("pk", flat=True)
    return Store.objects.filter(memberships__user=user).values_list("pk", flat=True)


class StoreScopedAdmin(admin.ModelAdmin):
    """Staff see only their own stores' rows (superusers see all); nothing here is added or edited by hand."""

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        stores = _visible_store_ids(request)
        return queryset if stores is None else queryset.filter(store__in=stores)

    def get_field_queryset(self, db: Any, db_field: Any, request: HttpRequest) -> QuerySet | None:
        queryset = super().get_field_queryset(db, db_field, request)
        stores = _visible_store_ids(request)
        if db_field.name == "store" and stores is not None:
            return (queryset if queryset is not None else Store.objects.all()).filter(pk__in=stores)
        return queryset

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser


# ASCII digits that fit a bigint: int() would take '²', '١٢' or ' 7', and raise past 4300 digits.
STORE_ID = re.compile(r"[0-9]{1,18}")


class VisibleStoreFilter(admin.SimpleListFilter):
    """The store filter lists only the stores the user may see."""

    title = "store"
    parameter_name = "store"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        stores = Store.objects.all()
        visible = _visible_store_ids(request)
        if visible is not None:
            stores = stores.filter(pk__in=visible)
        return [(str(store.pk), str(store)) for store in stores.only("pk", "domain", "name")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if not value:
            return queryset
        if not STORE_ID.fullmatch(value):
            # A crafted ?store=: Django's answer to a bad lookup (the list again, with ?e=1), never a 500.
            raise IncorrectLookupParameters(f"store {value[:20]!r} is not a store id")
        return queryset.filter(store_id=int(value))  # within the user's stores already (get_queryset)


class TopicFilter(admin.SimpleListFilter):
    title = "topic"
    parameter_name = "topic"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        # The topics OMA processes (a DISTINCT over a long log would scan it); ignored ones: filter by state.
        return [(topic, topic) for topic in sorted(set(WEBHOOK_TOPICS) | set(handled_topics()))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(topic=self.value()) if self.value() else queryset


_DELIVERY_FIELDS: tuple[str, ...] = (
    "store", "shop_domain", "topic", "state", "outcome", "last_error", "attempts", "replay_count",
    "dispatch_count", "received_at", "processed_at", "next_dispatch_at", "lease_expires_at", "webhook_id",
    "dedupe_key", "resource_id", "redacted_at", "headers_pretty", "payload",
)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(StoreScopedAdmin):
    list_display = ["received_at", "shop_domain", "topic", "state", "attempts", "resource_id", "outcome_or_error"]
    list_filter = [VisibleStoreFilter, TopicFilter, "state"]
    search_fields = ["=resource_id", "=webhook_id"]  # exact: an order id or a delivery id, found by index
    date_hierarchy = "received_at"
    show_full_result_count = False
    actions = ["replay"]
    fields = _DELIVERY_FIELDS
    readonly_fields = _DELIVERY_FIELDS

    @admin.display(description="outcome / error")
    def outcome_or_error(self, obj: WebhookDelivery) -> str:
        text = obj.last_error if obj.state in (WebhookDelivery.State.FAILED, WebhookDelivery.State.RETRYING) else ""
        return (text or obj.outcome)[:120]

    @admin.display(description="headers")
    def headers_pretty(self, obj: WebhookDelivery) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.headers, indent=2, sort_keys=True))

    @admin.display(description="raw payload")
    def payload(self, obj: WebhookDelivery) -> str:
        try:
            text = json.dumps(json.loads(obj.body), indent=2, ensure_ascii=False)
        except (ValueError, RecursionError):
            text = obj.body
        return format_html('<pre style="white-space: pre-wrap; max-height: 40em; overflow: auto">{}</pre>', text)

    def has_replay_permission(self, request: HttpRequest) -> bool:
        """Replaying processes deliveries again (orders re-read, pushes queued): the change permission on deliveries,
        although no delivery is ever edited by hand. The rows replayed are the user's stores' (get_queryset)."""
        codename = get_permission_codename("change", self.opts)
        return request.user.has_perm(f"{self.opts.app_label}.{codename}")

    @admin.action(description="Replay (process again)", permissions=["replay"])
    def replay(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        count = deliveries_replay(deliveries=queryset)
        skipped = queryset.count() - count
        message = f"{count} deliver{pluralize(count, 'y,ies')} queued for processing again."
        if skipped:
            message += f" {skipped} skipped (ignored topics, in progress, or erased stores)."
        self.message_user(request, message, messages.SUCCESS if count else messages.WARNING)


_EXPORT_FIELDS: tuple[str, ...] = (
    "store", "customer_id", "orders_requested", "orders_found", "created_at", "delivery", "download_link"
)


@admin.register(CustomerDataExport)
class CustomerDataExportAdmin(StoreScopedAdmin):
    list_display = ["created_at", "store", "customer_id", "orders_found", "download_link"]
    list_filter = [VisibleStoreFilter]
    search_fields = ["customer_id"]
    list_select_related = ["store"]
    fields = _EXPORT_FIELDS
    readonly_fields = _EXPORT_FIELDS

    def get_urls(self) -> list:
        download = self.admin_site.admin_view(self.download_view)
        return [
            path("<int:pk>/download/", download, name="webhooks_customerdataexport_download"),
            *super().get_urls(),
        ]

    @admin.display(description="download")
    def download_link(self, obj: CustomerDataExport) -> str:
        url = reverse("admin:webhooks_customerdataexport_download", args=[obj.pk])
        return format_html('<a href="{}">JSON</a>', url)

    def download_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        export = get_object_or_404(self.get_queryset(request), pk=pk)
        response = JsonResponse(export.data, json_dumps_params={"indent": 2, "ensure_ascii": False})
        label = re.sub(r"[^A-Za-z0-9_-]", "", export.customer_id)[:40] or str(export.pk)
        filename = f"customer-{label}-{export.created_at:%Y%m%d}.json"
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response
