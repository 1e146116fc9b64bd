"""Outbound events in admin: a store's subscriptions (the secret shown once, a test event, a new secret) and the
delivery log (every attempt's outcome, "send again"). Store scoping comes from the admin site's tenancy mixin."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from oma.core.outbound import FormKnowsUserAdmin
from oma.events import types
from oma.events.models import EventDelivery, EventSubscription
from oma.events.services import (
    body_of,
    deliveries_send_again,
    subscription_create,
    subscription_event_types_error,
    subscription_rotate_secret,
    subscription_url_error,
    subscriptions_send_test,
)


class EventSubscriptionForm(forms.ModelForm):
    user: Any = None  # set by the admin: who may point events at which URL
    url = forms.URLField(max_length=1024, assume_scheme="https",
                         help_text="Where OMA POSTs each event (https, a public address)")
    event_types = forms.MultipleChoiceField(
        choices=list(types.SUBSCRIBABLE.items()), widget=forms.CheckboxSelectMultiple,
        help_text="alert.* takes every alert, including those added later",
    )

    class Meta:
        model = EventSubscription
        fields = ["store", "description", "url", "event_types", "is_enabled"]

    def clean_url(self) -> str:
        url: str = self.cleaned_data.get("url") or ""
        problem = subscription_url_error(url, user=self.user)
        if problem:
            raise forms.ValidationError(problem)
        return url

    def clean_event_types(self) -> list[str]:
        chosen = list(self.cleaned_data.get("event_types") or [])
        problem = subscription_event_types_error(chosen)
        if problem:
            raise forms.ValidationError(problem)
        return chosen


@admin.register(EventSubscription)
class EventSubscriptionAdmin(FormKnowsUserAdmin, admin.ModelAdmin):
    form = EventSubscriptionForm
    list_display = ["__str__", "store", "url", "event_types", "is_enabled", "delivery_log"]
    list_filter = ["is_enabled", "store"]
    search_fields = ["description", "url"]
    list_select_related = ["store"]
    readonly_fields = ["signing", "delivery_log", "created_at", "updated_at"]
    actions = ["send_test_event", "rotate_secret"]

    def get_fields(self, request: HttpRequest, obj: EventSubscription | None = None) -> Any:
        fields = ["store", "description", "url", "event_types", "is_enabled"]
        return fields + (list(self.readonly_fields) if obj else [])

    @admin.display(description="signing")
    def signing(self, obj: EventSubscription) -> str:
        return (
            "Standard Webhooks (standardwebhooks.com): headers webhook-id, webhook-timestamp and webhook-signature "
            "(v1, HMAC-SHA256 keyed with the secret). The secret was shown once when this subscription was made; "
            "the action 'New signing secret' shows a new one. Failed deliveries are retried for about 8 hours."
        )

    @admin.display(description="deliveries")
    def delivery_log(self, obj: EventSubscription) -> str:
        if not obj.pk:
            return "—"
        url = reverse("admin:events_eventdelivery_changelist") + f"?subscription__id__exact={obj.pk}"
        return format_html('<a href="{}">delivery log</a>', url)

    def save_model(self, request: HttpRequest, obj: EventSubscription, form: forms.ModelForm, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        data = form.cleaned_data
        created = subscription_create(store=data["store"], url=data["url"], event_types=data["event_types"],
                                      description=data.get("description") or "", is_enabled=data["is_enabled"])
        obj.pk = created.pk
        messages.warning(request, f"Signing secret of this subscription (shown once, give it to the receiver): "
                                  f"{created.secret}")

    @admin.action(description="Send a test event", permissions=["change"])
    def send_test_event(self, request: HttpRequest, queryset: QuerySet[EventSubscription]) -> None:
        count = subscriptions_send_test(subscriptions=queryset)
        messages.info(request, f"{count} test event(s) queued: see the delivery log")

    @admin.action(description="New signing secret (the old one stops working at once)", permissions=["change"])
    def rotate_secret(self, request: HttpRequest, queryset: QuerySet[EventSubscription]) -> None:
        for subscription in queryset:
            secret = subscription_rotate_secret(subscription=subscription)
            messages.warning(request, f"New signing secret of {subscription} (shown once): {secret}")


class EventTypeFilter(admin.SimpleListFilter):
    """Fixed choices: a filter on the related Event's values would list every store's (Django reads them unscoped)."""

    title = "event type"
    parameter_name = "event_type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        names = [*types.ALERT_TYPES, types.SHIPMENT_UPDATED, types.ORDER_STATUS_CHANGED, types.TEST]
        return [(name, name) for name in names]

    def queryset(self, request: HttpRequest, queryset: QuerySet[EventDelivery]) -> QuerySet[EventDelivery]:
        value = self.value()
        return queryset.filter(event__event_type=value) if value else queryset


@admin.register(EventDelivery)
class EventDeliveryAdmin(admin.ModelAdmin):
    """The delivery log: read only; "send again" starts a failed (or any) delivery over."""

    list_display = ["created_at", "event_type", "store", "subscription", "state", "attempts", "last_status",
                    "next_attempt_at", "delivered_at", "short_error"]
    list_filter = ["state", EventTypeFilter, "store", "subscription"]
    search_fields = ["event__msg_id"]
    list_select_related = ["event", "store", "subscription"]
    readonly_fields = ("store", "subscription", "event_type", "msg_id", "state", "attempts", "next_attempt_at",
                       "last_attempt_at", "delivered_at", "last_status", "last_error", "created_at", "body")
    fields = readonly_fields
    actions = ["send_again"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="event type", ordering="event__event_type")
    def event_type(self, obj: EventDelivery) -> str:
        return obj.event.event_type

    @admin.display(description="webhook-id")
    def msg_id(self, obj: EventDelivery) -> str:
        return obj.event.msg_id

    @admin.display(description="error")
    def short_error(self, obj: EventDelivery) -> str:
        return obj.last_error if len(obj.last_error) <= 80 else obj.last_error[:80] + "…"

    @admin.display(description="body sent")
    def body(self, obj: EventDelivery) -> str:
        text = json.dumps(json.loads(body_of(obj.event)), indent=2, ensure_ascii=False)
        return format_html("<pre>{}</pre>", text)

    @admin.action(description="Send again", permissions=["change"])
    def send_again(self, request: HttpRequest, queryset: QuerySet[EventDelivery]) -> None:
        count = deliveries_send_again(deliveries=queryset)
        messages.info(request, f"{count} deliver(ies) queued again")
