"""Admin for customer emails: each store's settings (merchant-editable), the log of every email with the ones a
stopped worker left unconfirmed, the unsubscribed orders, and a preview of every template with sample data.

Registered on OMA's tenant-scoped site (oma.merchant.admin_site): a merchant sees their stores' rows only."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from oma.core.tenancy import stores_for
from oma.notifications.messages import email_previews
from oma.notifications.milestones import MILESTONES
from oma.notifications.models import OrderUnsubscribe, ShipmentNotification, StoreNotificationSettings
from oma.notifications.services import (
    notification_settings_save,
    notification_unconfirmed,
    notifications_send_again,
)
from oma.notifications.tasks import send_due_enqueue
from oma.stores.models import Store

State = ShipmentNotification.State
MILESTONE_FIELDS: tuple[str, ...] = tuple(f"notify_{milestone}" for milestone in MILESTONES)


def _preview_url(store_id: int | None = None) -> str:
    url = reverse("admin:notifications_shipmentnotification_preview")
    return f"{url}?store={store_id}" if store_id else url


class StoreNotificationSettingsForm(forms.ModelForm):
    language = forms.ChoiceField(choices=settings.LANGUAGES, initial="en",
                                 help_text=StoreNotificationSettings._meta.get_field("language").help_text)

    class Meta:
        model = StoreNotificationSettings
        fields = ["store", "is_enabled", *MILESTONE_FIELDS, "language", "reply_to"]


@admin.register(StoreNotificationSettings)
class StoreNotificationSettingsAdmin(admin.ModelAdmin):
    form = StoreNotificationSettingsForm
    list_display = ["store", "is_enabled", "milestones_on", "language", "updated_at"]
    list_filter = ["is_enabled"]
    list_select_related = ["store"]
    readonly_fields = ["emailed_since", "preview_link"]
    fieldsets = [
        (None, {"fields": ["store", "is_enabled"]}),
        ("Milestones", {"fields": MILESTONE_FIELDS}),
        ("Emails", {"fields": ["language", "reply_to", "preview_link", "emailed_since"]}),
    ]

    @admin.display(description="milestones emailed")
    def milestones_on(self, obj: StoreNotificationSettings) -> str:
        on = [field.removeprefix("notify_") for field in MILESTONE_FIELDS if getattr(obj, field)]
        return ", ".join(on) if obj.is_enabled and on else "—"

    @admin.display(description="emailed since")
    def emailed_since(self, obj: StoreNotificationSettings) -> str:
        times = obj.active_since_times() if obj.pk else {}
        return "; ".join(f"{milestone}: {moment:%Y-%m-%d %H:%M} UTC" for milestone, moment in times.items()) or "—"

    @admin.display(description="templates")
    def preview_link(self, obj: StoreNotificationSettings) -> str:
        return format_html('<a href="{}">Preview every email with sample data</a>', _preview_url(obj.store_id))

    def save_model(self, request: HttpRequest, obj: StoreNotificationSettings, form: Any, change: bool) -> None:
        notification_settings_save(settings_row=obj)


@admin.register(ShipmentNotification)
class ShipmentNotificationAdmin(admin.ModelAdmin):
    """The log: read-only, one row per shipment and milestone. "Send again" is the merchant's call for emails that
    failed, were never confirmed or lacked OMA_PUBLIC_URL."""

    change_list_template = "admin/notifications/shipmentnotification/change_list.html"
    list_display = ["created_at", "store", "order", "shipment", "milestone", "state_label", "attempts", "sent_at"]
    list_filter = ["state", "milestone", "store"]
    list_select_related = ["store", "order", "shipment"]
    search_fields = ["order__name", "order__order_id", "shipment__tracking_number", "subject"]
    date_hierarchy = "created_at"
    actions = ["send_again"]
    readonly_fields = ("store", "shipment", "order", "milestone", "state_label", "reached_at", "created_at",
                       "due_at", "attempts", "sending_started_at", "sent_at", "language", "subject", "last_error")
    fields = readonly_fields

    @admin.display(description="state", ordering="state")
    def state_label(self, obj: ShipmentNotification) -> str:
        if notification_unconfirmed(obj):
            return "may not have been sent (the worker stopped while sending)"
        return obj.get_state_display()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A deleted row would let the same milestone be emailed again.
        return False

    @admin.action(description="Send again (failed, unconfirmed or lacking OMA_PUBLIC_URL)", permissions=["change"])
    def send_again(self, request: HttpRequest, queryset: QuerySet[ShipmentNotification]) -> None:
        count = notifications_send_again(notification_ids=list(queryset.values_list("pk", flat=True)))
        if count:
            send_due_enqueue(rows=count)
        self.message_user(request, f"{count} email(s) queued to be sent again; other rows were left as they were.",
                          messages.SUCCESS if count else messages.WARNING)

    def get_urls(self) -> list[URLPattern]:
        preview = path(
            "preview/", self.admin_site.admin_view(self.preview_view), name="notifications_shipmentnotification_preview"
        )
        return [preview, *super().get_urls()]

    def preview_view(self, request: HttpRequest) -> HttpResponse:
        """Every milestone's email for one of the user's stores, rendered with sample data, its language and the
        templates that store would get (a merchant's override included)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        stores = list(stores_for(request.user).order_by("domain"))
        chosen: Store | None = next((s for s in stores if str(s.pk) == request.GET.get("store", "")), None)
        chosen = chosen or (stores[0] if stores else None)
        previews = []
        if chosen is not None:
            settings_row = StoreNotificationSettings.objects.filter(store=chosen).first()
            language = settings_row.language if settings_row else "en"
            previews = email_previews(store=chosen, language=language)
        context = {
            **self.admin_site.each_context(request),
            "title": "Customer email previews",
            "opts": self.model._meta,
            "stores": stores,
            "chosen": chosen,
            "previews": previews,
            "public_url_missing": not settings.OMA_PUBLIC_URL,
        }
        return TemplateResponse(request, "admin/notifications/preview.html", context)


@admin.register(OrderUnsubscribe)
class OrderUnsubscribeAdmin(admin.ModelAdmin):
    """Orders whose customer used the unsubscribe link. Deleting a row subscribes the order again."""

    list_display = ["order", "store", "created_at"]
    list_filter = ["store"]
    list_select_related = ["order", "store"]
    search_fields = ["order__name", "order__order_id"]
    readonly_fields = ("order", "store", "created_at")
    fields = readonly_fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
