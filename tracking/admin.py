"""Admin: shipments with their event timeline, and carrier accounts (secrets are write-only)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.defaultfilters import pluralize
from django.utils import timezone

from oma.core.outbound import FormKnowsUserAdmin, hosts_of, merchant_base_url_error
from tracking.carriers.registry import get_spec
from tracking.models import CarrierAccount, Shipment, ShipmentLine, TrackingEvent
from tracking.numbers import normalize
from tracking.services import OAUTH_CARRIERS, shipment_add
from tracking.vocabulary import TERMINAL_STATUSES


class TrackingEventInline(admin.TabularInline):
    model = TrackingEvent
    extra = 0
    can_delete = False
    ordering = ["-occurred_at", "-id"]
    fields = ["occurred_at", "status", "substatus", "raw_code", "raw_text", "location"]
    readonly_fields = fields
    verbose_name = "event"
    verbose_name_plural = "timeline (newest first)"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ShipmentLineInline(admin.TabularInline):
    model = ShipmentLine
    extra = 0
    can_delete = False
    fields = ["line_item", "quantity"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ShipmentAddForm(forms.ModelForm):
    class Meta:
        model = Shipment
        fields = ["store", "order", "tracking_number", "carrier"]
        help_texts = {"carrier": "Leave blank to detect it from the number."}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        number = normalize(cleaned.get("tracking_number") or "")
        if not number:
            raise forms.ValidationError({"tracking_number": "Enter a tracking number."})
        cleaned["tracking_number"] = number
        self.instance.tracking_number = number  # so that the unique check sees the normalized number
        store, order = cleaned.get("store"), cleaned.get("order")
        if store is not None and order is not None and order.store_id != store.pk:
            raise forms.ValidationError({"order": "This order belongs to another store."})
        return cleaned


@admin.register(Shipment)
class ShipmentAdmin(admin.ModelAdmin):
    list_display = [
        "tracking_number",
        "carrier",
        "status",
        "substatus",
        "store",
        "order",
        "last_event_at",
        "estimated_delivery_date",
        "next_poll_at",
        "source",
    ]
    list_filter = ["status", "carrier", "source", "store"]
    search_fields = ["tracking_number", "order__order_id", "order__name"]
    list_select_related = ["store", "order"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    inlines = [ShipmentLineInline, TrackingEventInline]
    actions = ["poll_now", "stop_tracking"]
    fieldsets = [
        (None, {"fields": ["store", "order", "tracking_number", "tracking_url", "source"]}),
        ("Status", {"fields": [
            "status", "substatus", "raw_code", "raw_text", "status_changed_at", "last_event_at",
            "estimated_delivery_date", "estimated_delivery_at", "delivered_at", "signed_by",
        ]}),
        ("Carrier", {"fields": [
            "carrier", "carrier_format", "carrier_valid", "carrier_candidates", "carrier_account",
        ]}),
        ("Polling", {"fields": ["next_poll_at", "last_polled_at", "consecutive_failures", "last_error"]}),
        ("Record", {"fields": ["created_at", "updated_at"]}),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: Shipment | None = None) -> list[str]:
        if obj is None:
            return []
        # Carrier data is the carriers' word: the timeline and status are never edited by hand.
        return [field for fieldset in self.fieldsets for field in fieldset[1]["fields"]]

    def get_fieldsets(self, request: HttpRequest, obj: Shipment | None = None) -> Any:
        if obj is None:
            return [(None, {"fields": ShipmentAddForm.Meta.fields})]
        return self.fieldsets

    def get_form(self, request: HttpRequest, obj: Shipment | None = None, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = ShipmentAddForm
        return super().get_form(request, obj, **kwargs)

    def get_inlines(self, request: HttpRequest, obj: Shipment | None = None) -> list:
        return self.inlines if obj is not None else []

    def save_model(self, request: HttpRequest, obj: Shipment, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        # Added by hand: the same path as every channel (normalization, detection, idempotency, first poll now).
        saved = shipment_add(
            store=obj.store, tracking_number=obj.tracking_number, carrier=obj.carrier or None,
            order=obj.order, source=Shipment.Source.MANUAL,
        )
        obj.pk = saved.pk
        obj.refresh_from_db()

    @admin.action(description="Poll the carrier at the next dispatch (within a minute)", permissions=["change"])
    def poll_now(self, request: HttpRequest, queryset: QuerySet[Shipment]) -> None:
        updated = queryset.exclude(status__in=TERMINAL_STATUSES).update(
            next_poll_at=timezone.now(), consecutive_failures=0, updated_at=timezone.now()
        )
        self.message_user(request, f"{updated} shipment{pluralize(updated)} will be polled within a minute.")

    @admin.action(description="Stop tracking (never poll again)", permissions=["change"])
    def stop_tracking(self, request: HttpRequest, queryset: QuerySet[Shipment]) -> None:
        updated = queryset.update(next_poll_at=None, updated_at=timezone.now())
        self.message_user(request, f"{updated} shipment{pluralize(updated)} will not be polled again.")


SECRET_FIELDS = ("client_id", "client_secret", "api_key")


class CarrierAccountForm(forms.ModelForm):
    """Secrets are write-only: the form never shows them, and a blank field keeps the stored value. A merchant
    may point the account only at the carrier's own hosts (see oma.core.outbound); `user` is set by the admin."""

    user: Any = None

    client_id = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False))
    client_secret = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False))
    api_key = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False))

    class Meta:
        model = CarrierAccount
        fields = [
            "carrier", "store", "label", "client_id", "client_secret", "api_key", "base_url",
            "rate_limit_requests", "rate_limit_per_seconds", "is_active",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in SECRET_FIELDS:
            stored = bool(self.instance.pk and getattr(self.instance, name))
            self.fields[name].help_text = "Stored (leave blank to keep it)." if stored else "Not set."
            self.initial[name] = ""

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        for name in SECRET_FIELDS:
            if not cleaned.get(name) and self.instance.pk:
                cleaned[name] = getattr(self.instance, name) or ""
        carrier = cleaned.get("carrier")
        if carrier in OAUTH_CARRIERS and not (cleaned.get("client_id") and cleaned.get("client_secret")):
            raise forms.ValidationError("This carrier uses OAuth: give a client id and a client secret.")
        if carrier and carrier not in OAUTH_CARRIERS and not cleaned.get("api_key"):
            raise forms.ValidationError("This carrier uses an API key.")
        if bool(cleaned.get("rate_limit_requests")) != bool(cleaned.get("rate_limit_per_seconds")):
            raise forms.ValidationError("A rate limit override needs both the requests and the seconds.")
        if carrier and cleaned.get("base_url"):
            spec = get_spec(carrier)
            error = merchant_base_url_error(cleaned["base_url"], user=self.user,
                                            own_hosts=hosts_of([spec.default_base_url, *spec.test_base_urls]))
            if error:
                self.add_error("base_url", error)
        return cleaned


@admin.register(CarrierAccount)
class CarrierAccountAdmin(FormKnowsUserAdmin, admin.ModelAdmin):
    form = CarrierAccountForm
    list_display = [
        "carrier", "store", "label", "base_url", "rate_limit", "is_active", "has_credentials",
        "backoff_until", "consecutive_failures", "last_success_at",
    ]
    list_filter = ["carrier", "is_active", "store"]
    list_select_related = ["store"]
    readonly_fields = [
        "backoff_until", "consecutive_failures", "last_error", "last_success_at", "last_failure_at",
        "created_at", "updated_at",
    ]
    actions = ["clear_backoff"]

    @admin.display(description="rate limit")
    def rate_limit(self, account: CarrierAccount) -> str:
        if account.rate_limit_requests and account.rate_limit_per_seconds:
            return f"{account.rate_limit_requests}/{account.rate_limit_per_seconds:g}s"
        return "published default"

    @admin.display(boolean=True, description="credentials")
    def has_credentials(self, account: CarrierAccount) -> bool:
        return account.has_credentials

    @admin.action(
        description="Clear the backoff (poll with this account at the next dispatch)", permissions=["change"]
    )
    def clear_backoff(self, request: HttpRequest, queryset: QuerySet[CarrierAccount]) -> None:
        updated = queryset.update(backoff_until=None, consecutive_failures=0, updated_at=timezone.now())
        self.message_user(request, f"{updated} account{pluralize(updated)} cleared.")
