"""Stores in admin: connect one from a form (verify, subscribe webhooks, start the backfill); branding and alert
settings on the store's page. Secrets are write-only: never rendered back to a page."""

from __future__ import annotations

import logging
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.defaultfilters import pluralize
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils.html import format_html

from oma.core.outbound import merchant_base_url_error
from oma.core.outbox import enqueue_on_commit
from oma.core.tenancy import forget_store_ids, store_ids_for
from oma.genstore.client import GENSTORE_API_HOSTS
from oma.genstore.errors import GenstoreError
from oma.merchant.models import AlertPolicy, StoreBranding
from oma.merchant.services import branding_set_logo
from oma.orders.models import SyncRun
from oma.orders.tasks import sweep_store
from oma.stores.domains import store_domain_normalize, store_domain_problem
from oma.stores.models import Store, StoreMembership
from oma.stores.services import StoreConnectRefused, store_connect
from oma.stores.subscriptions import webhook_subscriptions_register

logger = logging.getLogger(__name__)


def default_webhook_address(request: HttpRequest | None) -> str:
    try:
        route = reverse("webhooks:genstore")
    except NoReverseMatch:
        return ""
    if settings.OMA_PUBLIC_URL:
        return settings.OMA_PUBLIC_URL.rstrip("/") + route
    return request.build_absolute_uri(route) if request is not None else ""


def enqueue_backfill(store: Store, kind: str = SyncRun.Kind.FULL) -> None:
    """Start a sweep once the surrounding transaction commits (the task must find the store)."""
    enqueue_on_commit(sweep_store, store.pk, kind)


def _start_sweeps(request: HttpRequest, queryset: QuerySet[Store], kind: str, label: str) -> None:
    stores = list(queryset.filter(is_active=True))
    for store in stores:
        enqueue_backfill(store, kind)
    messages.info(request, f"{label} sweep started for {len(stores)} store{pluralize(len(stores))}.")


class StoreConnectForm(forms.Form):
    domain = forms.CharField(max_length=255, help_text="e.g. shop1.genmystore.com")
    access_token = forms.CharField(widget=forms.PasswordInput(render_value=False), help_text="Admin API token")
    client_secret = forms.CharField(
        widget=forms.PasswordInput(render_value=False), help_text="The app's client secret: signs the webhooks"
    )
    name = forms.CharField(max_length=255, required=False, help_text="Blank: the shop name Genstore reports")
    api_base_url = forms.URLField(
        required=False, assume_scheme="https", help_text="Advanced: the part before /api/{version}/ (sandboxes)"
    )
    register_webhooks = forms.BooleanField(initial=True, required=False, label="Subscribe to Genstore's webhooks")
    webhook_address = forms.URLField(
        required=False, assume_scheme="https", help_text="Where Genstore sends webhooks (https)"
    )
    start_backfill = forms.BooleanField(initial=True, required=False, label="Import the store's orders now")

    def __init__(self, *args: Any, user: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_api_base_url(self) -> str:
        # Genstore's own hosts, or the operator's OMA_MERCHANT_API_HOSTS; superusers any well-formed URL.
        url = self.cleaned_data.get("api_base_url") or ""
        error = merchant_base_url_error(url, user=self.user, own_hosts=GENSTORE_API_HOSTS)
        if error:
            raise forms.ValidationError(error)
        return url

    def clean_domain(self) -> str:
        # store_connect checks it too; here the merchant sees the reason on the field, before any request.
        domain = store_domain_normalize(self.cleaned_data["domain"])
        problem = store_domain_problem(domain)
        if problem:
            raise forms.ValidationError(problem)
        return domain

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("register_webhooks") and not cleaned.get("webhook_address"):
            self.add_error("webhook_address", "Needed to subscribe to webhooks")
        return cleaned


class StoreBrandingForm(forms.ModelForm):
    logo_upload = forms.FileField(
        required=False, label="Logo", help_text="PNG, JPEG, GIF or WebP, at most 256 KB; shown on the tracking page"
    )
    remove_logo = forms.BooleanField(required=False)

    class Meta:
        model = StoreBranding
        fields = ["display_name", "accent_colour", "support_email", "support_url"]
        widgets = {"accent_colour": forms.TextInput(attrs={"type": "color"})}

    def clean_logo_upload(self) -> bytes | None:
        upload = self.cleaned_data.get("logo_upload")
        if not upload:
            return None
        data = upload.read(256 * 1024 + 1)
        probe = StoreBranding()
        try:
            branding_set_logo(branding=probe, data=data)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return data

    def has_changed(self) -> bool:
        return super().has_changed() or bool(self.files) or bool(self.data.get(self.add_prefix("remove_logo")))

    def save(self, commit: bool = True) -> StoreBranding:
        branding = super().save(commit=False)
        data = self.cleaned_data.get("logo_upload")
        if data:
            branding_set_logo(branding=branding, data=data)
        elif self.cleaned_data.get("remove_logo"):
            branding_set_logo(branding=branding, data=b"")
        if commit:
            branding.save()
        return branding


class StoreBrandingInline(admin.StackedInline):
    model = StoreBranding
    form = StoreBrandingForm
    can_delete = False
    extra = 1  # shown ready to fill when the store has none yet (an untouched form saves nothing)
    max_num = 1
    fields = ["display_name", "accent_colour", "current_logo", "logo_upload", "remove_logo", "support_email",
              "support_url"]
    readonly_fields = ["current_logo"]

    @admin.display(description="current logo")
    def current_logo(self, obj: StoreBranding) -> str:
        if not obj or not obj.logo_sha256:
            return "—"
        url = reverse("track:logo", args=[obj.store_id, obj.logo_sha256[:16]])
        return format_html('<img src="{}" alt="logo" style="max-height:48px;max-width:200px">', url)


class AlertPolicyInline(admin.StackedInline):
    model = AlertPolicy
    can_delete = False
    extra = 1
    max_num = 1
    fields = ["is_enabled", "recipients", "not_picked_up_after_days", "stuck_after_days", "late_after_days",
              "include_exceptions", "send_hour_utc"]


class StoreMembershipInline(admin.TabularInline):
    model = StoreMembership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Store)
class StoreAdmin(admin.ModelAdmin):
    list_display = ["domain", "name", "is_active", "api_version", "rate_limit_label", "last_sweep", "created_at"]
    list_filter = ["is_active", "branded_tracking_link"]
    search_fields = ["domain", "name"]
    # Secrets are write-only: changed through "Connect a store" again, never rendered back.
    exclude = ["access_token", "client_secret", "previous_client_secret"]
    readonly_fields = ["domain", "genstore_shop_id", "scopes", "fulfillment_create_path", "created_at", "updated_at"]
    actions = ["register_webhooks", "start_full_backfill", "start_incremental_sweep"]

    def get_readonly_fields(self, request: HttpRequest, obj: Store | None = None) -> list[str]:
        readonly = list(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:
            readonly.append("api_base_url")  # changed through the connect form, which checks the host
        return readonly

    def get_inlines(self, request: HttpRequest, obj: Store | None) -> list[type]:
        inlines: list[type] = [StoreBrandingInline, AlertPolicyInline]
        if request.user.is_superuser:
            inlines.append(StoreMembershipInline)  # who may see a store is the operator's decision
        return inlines

    def get_queryset(self, request: HttpRequest) -> QuerySet[Store]:
        last = SyncRun.objects.filter(store=OuterRef("pk")).order_by("-started_at")
        return (
            super()
            .get_queryset(request)
            .annotate(last_sweep_at=Subquery(last.values("started_at")[:1]), last_sweep_state=Subquery(
                last.values("state")[:1]))
        )

    def save_model(self, request: HttpRequest, obj: Store, form: forms.ModelForm, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if obj.branded_tracking_link and not settings.OMA_PUBLIC_URL:
            messages.warning(request, "The branded tracking link needs OMA_PUBLIC_URL (OMA's public address): until "
                             "it is set, pushes keep sending the carrier's link.")

    def has_delete_permission(self, request: HttpRequest, obj: Store | None = None) -> bool:
        # Deleting a store erases its whole mirror: an operator's decision (merchants deactivate instead).
        return request.user.is_superuser and super().has_delete_permission(request, obj)

    @admin.display(description="rate limit")
    def rate_limit_label(self, obj: Store) -> str:
        return obj.rate_limit_label

    @admin.display(description="last sweep", ordering="last_sweep_at")
    def last_sweep(self, obj: Store) -> str:
        started = getattr(obj, "last_sweep_at", None)  # annotated by get_queryset
        if not started:
            return "never"
        return f"{started:%Y-%m-%d %H:%M} ({getattr(obj, 'last_sweep_state', '')})"

    # --- connecting ------------------------------------------------------------------------------------------

    def get_urls(self) -> list:
        return [
            path("connect/", self.admin_site.admin_view(self.connect_view), name="stores_store_connect"),
            *super().get_urls(),
        ]

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None) -> HttpResponse:
        # A store is added by connecting it: the token is verified before anything is saved.
        return HttpResponseRedirect(reverse("admin:stores_store_connect"))

    def connect_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_add_permission(request) and not request.user.is_superuser:
            raise PermissionDenied
        if request.method == "POST":
            form = StoreConnectForm(request.POST, user=request.user)
            if form.is_valid():
                store = self._connect(request, form)
                if store is not None:
                    return HttpResponseRedirect(reverse("admin:stores_store_change", args=[store.pk]))
        else:
            form = StoreConnectForm(initial={"webhook_address": default_webhook_address(request)}, user=request.user)
        context = {
            **self.admin_site.each_context(request),
            "title": "Connect a Genstore store",
            "form": form,
            "opts": self.model._meta,
            "has_view_permission": self.has_view_permission(request),
        }
        return TemplateResponse(request, "admin/stores/store/connect.html", context)

    def _connect(self, request: HttpRequest, form: StoreConnectForm) -> Store | None:
        user = request.user
        if isinstance(user, AnonymousUser):  # admin_view lets only staff in
            raise PermissionDenied
        data = form.cleaned_data
        domain = data["domain"]
        ids = store_ids_for(user)
        existing = Store.objects.filter(domain=domain).first()
        if existing is not None and ids is not None and existing.pk not in ids:
            # Reconnecting would replace another account's token: only the operator may do that.
            form.add_error("domain", "This store is already connected to OMA by another account; ask your operator.")
            return None
        try:
            with transaction.atomic():
                result = store_connect(
                    domain=domain,
                    access_token=data["access_token"],
                    client_secret=data["client_secret"],
                    api_base_url=data.get("api_base_url") or "",
                    name=data.get("name") or "",
                    verify=True,
                )
                store = result.store
                if ids is not None:
                    StoreMembership.objects.get_or_create(user=user, store=store)
                    forget_store_ids(user)
                AlertPolicy.objects.get_or_create(store=store, defaults={"recipients": user.email or ""})
                if data.get("start_backfill"):
                    enqueue_backfill(store)
        except StoreConnectRefused as exc:
            form.add_error("domain", str(exc))
            return None
        except GenstoreError as exc:
            if exc.status is None:  # refused by OMA or unreachable: no answer from Genstore
                form.add_error(None, f"Could not call the store's API: {exc}")
            else:
                form.add_error(None, f"Genstore did not accept these credentials: {exc}")
            return None
        except OSError as exc:  # DNS, refused connection... before Genstore could answer
            form.add_error(None, f"Could not reach the store's API: {exc}")
            return None
        verb = "connected" if result.created else "reconnected"
        messages.success(request, f"{store} {verb}: Genstore accepted the token ({result.verified_shop_name}).")
        if data.get("start_backfill"):
            messages.info(request, "A full import of the store's orders has started.")
        if data.get("register_webhooks"):
            self._register_webhooks(request, store, data["webhook_address"])
        return store

    def _register_webhooks(self, request: HttpRequest, store: Store, address: str) -> bool:
        try:
            registered = webhook_subscriptions_register(store=store, address=address)
        except (GenstoreError, ValueError, OSError) as exc:
            messages.warning(request, f"{store}: subscribing to webhooks failed ({exc}); the sweeps still run. "
                                      "Try again with the 'Subscribe to webhooks' action.")
            return False
        messages.success(request, f"{store}: webhooks subscribed at {address} "
                                  f"({len(registered.created)} new, {len(registered.existing)} already there).")
        return True

    # --- actions ----------------------------------------------------------------------------------------

    @admin.action(description="Subscribe to Genstore's webhooks", permissions=["change"])
    def register_webhooks(self, request: HttpRequest, queryset: QuerySet[Store]) -> None:
        address = default_webhook_address(request)
        if not address:
            messages.error(request, "No webhook address: set OMA_PUBLIC_URL.")
            return
        for store in queryset:
            self._register_webhooks(request, store, address)

    @admin.action(description="Re-import every order (full sweep)", permissions=["change"])
    def start_full_backfill(self, request: HttpRequest, queryset: QuerySet[Store]) -> None:
        _start_sweeps(request, queryset, SyncRun.Kind.FULL, "Full")

    @admin.action(description="Fetch recent changes now (incremental sweep)", permissions=["change"])
    def start_incremental_sweep(self, request: HttpRequest, queryset: QuerySet[Store]) -> None:
        _start_sweeps(request, queryset, SyncRun.Kind.INCREMENTAL, "Incremental")
