"""Channels in admin: the channels, every record they reported (and why it waits or was rejected), CSV imports
with their reports, and the CSV upload page (the same service as `import_tracking`).

Store scoping (a merchant sees only their stores' rows) comes from the admin site's tenancy mixin; the upload
page is a custom view, so it offers only the user's stores itself.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from oma.channels.connectors import REGISTRY
from oma.channels.csv_import import MAX_FILE_BYTES, tracking_csv_import
from oma.channels.models import Channel, CsvImport, ExternalShipment, OrderPoll
from oma.channels.services import (
    ChannelInvalid,
    channel_create,
    channel_rotate_signing_secret,
    external_shipment_rematch,
)
from oma.channels.tasks import poll_channel
from oma.core.outbound import FormKnowsUserAdmin, hosts_of, merchant_base_url_error
from oma.core.tenancy import stores_for
from oma.stores.models import Store


def stores_of(user: Any) -> QuerySet[Store]:
    """The stores a user may act for (all for superusers; their memberships otherwise)."""
    return stores_for(user)


# --- channels ----------------------------------------------------------------------------------------------


class ChannelForm(forms.ModelForm):
    user: Any = None  # set by the admin: a merchant may point a channel only at its platform's own host
    # Secrets are write-only: never rendered back; blank keeps the stored value.
    api_key = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False),
                              help_text="ShipStation API key; leave blank to keep the current one")
    api_secret = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False),
                                 help_text="ShipStation API secret; leave blank to keep the current one")
    source_names_text = forms.CharField(
        required=False, label="Source names",
        help_text="Genstore sourceName values this channel covers, comma-separated (e.g. amazon, ebay)",
    )

    class Meta:
        model = Channel
        fields = ["store", "name", "kind", "base_url", "is_enabled"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["source_names_text"].initial = ", ".join(self.instance.source_names or [])
        if self.instance.pk:
            self.fields["kind"].disabled = True
            self.fields["store"].disabled = True

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        data["source_names"] = [n.strip() for n in data.get("source_names_text", "").split(",") if n.strip()]
        connector = REGISTRY.get(data.get("kind") or self.instance.kind)
        if connector is not None:
            probe = Channel(kind=connector.kind, api_key=data.get("api_key") or self.instance.api_key,
                            api_secret=data.get("api_secret") or self.instance.api_secret)
            for problem in connector.check_settings(probe):
                self.add_error(None, problem)
        if connector is not None and data.get("base_url"):
            error = merchant_base_url_error(data["base_url"], user=self.user,
                                            own_hosts=hosts_of([connector.default_base_url]))
            if error:
                self.add_error("base_url", error)
        store, name = data.get("store"), data.get("name")
        if store and name and Channel.objects.filter(store=store, name=name.strip()).exclude(
            pk=self.instance.pk
        ).exists():
            self.add_error("name", f"{store} already has a channel named {name!r}")
        return data


@admin.register(Channel)
class ChannelAdmin(FormKnowsUserAdmin, admin.ModelAdmin):
    form = ChannelForm
    list_display = ["name", "store", "kind", "slug", "is_enabled", "source_names", "last_activity_at", "last_error"]
    list_filter = ["kind", "is_enabled", "store"]
    search_fields = ["name", "slug"]
    list_select_related = ["store"]
    readonly_fields = ["slug", "webhook_url", "last_activity_at", "last_polled_at", "poll_paused_until",
                       "last_error", "created_at", "updated_at"]
    actions = ["rotate_signing_secret", "poll_now", "retry_waiting"]

    def get_fields(self, request: HttpRequest, obj: Channel | None = None) -> list[str]:
        fields = ["store", "name", "kind", "source_names_text", "base_url", "api_key", "api_secret", "is_enabled"]
        return fields + (self.readonly_fields if obj else [])

    @admin.display(description="webhook URL")
    def webhook_url(self, obj: Channel) -> str:
        connector = REGISTRY.get(obj.kind)
        if not obj.pk or connector is None or not connector.accepts_webhooks:
            return "—"
        return reverse("channels:webhook", kwargs={"slug": obj.slug}) + "  (signing secret: use the action "\
            "'Rotate signing secret' to see a new one)"

    def save_model(self, request: HttpRequest, obj: Channel, form: ChannelForm, change: bool) -> None:
        data = form.cleaned_data
        if not change:
            try:
                created = channel_create(
                    store=data["store"], kind=data["kind"], name=data["name"], source_names=data["source_names"],
                    base_url=data.get("base_url") or "", api_key=data.get("api_key") or "",
                    api_secret=data.get("api_secret") or "",
                )
            except (ChannelInvalid, ValueError) as exc:  # checked by the form already; a race at most
                raise PermissionDenied(str(exc)) from exc
            obj.pk = created.pk
            obj.slug = created.slug
            if created.signing_secret:
                messages.warning(
                    request,
                    f"Signing secret of {created.slug} (shown once, give it to the platform): "
                    f"{created.signing_secret}",
                )
            return
        obj.source_names = data["source_names"]
        if data.get("api_key"):
            obj.api_key = data["api_key"]
        if data.get("api_secret"):
            obj.api_secret = data["api_secret"]
        super().save_model(request, obj, form, change)

    @admin.action(description="Rotate signing secret (the old one keeps working 24 h)", permissions=["change"])
    def rotate_signing_secret(self, request: HttpRequest, queryset: QuerySet[Channel]) -> None:
        for channel in queryset:
            try:
                secret = channel_rotate_signing_secret(channel=channel)
            except ChannelInvalid as exc:
                messages.error(request, str(exc))
                continue
            messages.warning(request, f"New signing secret of {channel.slug} (shown once): {secret}")

    @admin.action(description="Poll now (ShipStation)", permissions=["change"])
    def poll_now(self, request: HttpRequest, queryset: QuerySet[Channel]) -> None:
        polled = [c for c in queryset if REGISTRY.get(c.kind) is not None and REGISTRY[c.kind].polls]
        for channel in polled:
            poll_channel.delay(channel.pk)
        messages.info(request, f"{len(polled)} channel poll(s) enqueued")

    @admin.action(description="Match their waiting records again", permissions=["change"])
    def retry_waiting(self, request: HttpRequest, queryset: QuerySet[Channel]) -> None:
        ids = ExternalShipment.objects.filter(
            channel__in=queryset, state=ExternalShipment.State.UNMATCHED
        ).values_list("pk", flat=True)
        outcomes = [external_shipment_rematch(record_id=pk).outcome for pk in ids]
        messages.info(request, f"{len(outcomes)} waiting record(s) tried: {outcomes.count('created')} matched")


# --- records -----------------------------------------------------------------------------------------------


@admin.register(ExternalShipment)
class ExternalShipmentAdmin(admin.ModelAdmin):
    list_display = ["tracking_number", "external_order_id", "channel", "state", "order", "problem",
                    "source_ref", "received_at"]
    list_filter = ["state", "channel__kind", "channel"]
    search_fields = ["tracking_number", "external_order_id", "external_id"]
    list_select_related = ["channel", "order"]
    readonly_fields = [f.name for f in ExternalShipment._meta.fields]
    actions = ["match_again"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Try matching again (waiting and rejected records)", permissions=["change"])
    def match_again(self, request: HttpRequest, queryset: QuerySet[ExternalShipment]) -> None:
        outcomes = [
            external_shipment_rematch(record_id=pk, include_rejected=True).outcome
            for pk in queryset.values_list("pk", flat=True)
        ]
        summary = ", ".join(f"{outcomes.count(o)} {o}" for o in sorted(set(outcomes))) or "nothing to do"
        messages.info(request, f"matching again: {summary}")


# --- CSV imports and the upload page -----------------------------------------------------------------------


class CsvUploadForm(forms.Form):
    store = forms.ModelChoiceField(queryset=Store.objects.none())
    channel = forms.ModelChoiceField(
        queryset=Channel.objects.none(), required=False,
        help_text="A CSV channel of the store; blank: the store's CSV channel (created on first use)",
    )
    file = forms.FileField(help_text="Columns: order, tracking_number, carrier, sku or line_item_id, quantity, "
                                     "shipped_at. Only order and tracking_number are required.")
    dry_run = forms.BooleanField(required=False, help_text="Check every row against the orders; save nothing")

    def __init__(self, *args: Any, stores: QuerySet[Store], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["store"].queryset = stores
        self.fields["channel"].queryset = Channel.objects.filter(store__in=stores, kind="csv")
        if stores.count() == 1:
            self.fields["store"].initial = stores.first()

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        if upload.size > MAX_FILE_BYTES:
            raise forms.ValidationError(f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB: split it")
        return upload

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        channel, store = data.get("channel"), data.get("store")
        if channel is not None and store is not None and channel.store_id != store.pk:
            self.add_error("channel", f"channel {channel.name!r} belongs to another store")
        return data


@admin.register(CsvImport)
class CsvImportAdmin(admin.ModelAdmin):
    list_display = ["file_name", "store", "channel", "via", "rows", "progress", "shipments_created",
                    "already_imported", "waiting", "rejected", "started_at"]
    list_filter = ["store", "via"]
    search_fields = ["file_name", "file_sha256"]
    list_select_related = ["store", "channel"]
    readonly_fields = [
        "progress", *(f.name for f in CsvImport._meta.fields if f.name not in ("report", "queued_file")),
        "report_table",
    ]
    exclude = ["report", "queued_file"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[CsvImport]:
        return super().get_queryset(request).defer("queued_file")  # up to 20 MB a row: never loaded for a page

    @admin.display(description="progress")
    def progress(self, obj: CsvImport) -> str:
        if obj.finished_at is not None:
            return "stopped by an error" if obj.file_error else "done"
        if obj.claimed_at is not None:
            return f"importing (a worker took it at {obj.claimed_at:%H:%M:%S} UTC)"
        return "waiting for a worker"

    def get_urls(self) -> list:
        upload = path("upload/", self.admin_site.admin_view(self.upload_view), name="channels_csvimport_upload")
        return [upload, *super().get_urls()]

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        # "Add" is the upload page: an import is only ever made by importing a file.
        return HttpResponseRedirect(reverse("admin:channels_csvimport_upload"))

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="rows that did not become tracking")
    def report_table(self, obj: CsvImport) -> str:
        if obj.finished_at is None:
            return "not imported yet"
        report = obj.report or {}
        if report.get("error"):
            return report["error"]
        problems = report.get("problems") or []
        if not problems:
            return "none"
        return format_html(
            "<table><tr><th>line</th><th>outcome</th><th>reason</th></tr>{}</table>",
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                             ((p["line"], p["outcome"], p["reason"]) for p in problems)),
        )

    def upload_view(self, request: HttpRequest) -> HttpResponse:
        if not (request.user.is_superuser or request.user.has_perm("channels.add_csvimport")):
            raise PermissionDenied
        stores = stores_of(request.user)
        report = None
        if request.method == "POST":
            form = CsvUploadForm(request.POST, request.FILES, stores=stores)
            if form.is_valid():
                upload = form.cleaned_data["file"]
                report = tracking_csv_import(
                    store=form.cleaned_data["store"],
                    data=upload.read(),
                    file_name=upload.name,
                    channel=form.cleaned_data["channel"],
                    uploaded_by=request.user,
                    via="admin",
                    dry_run=form.cleaned_data["dry_run"],
                    queue_above_rows=settings.OMA_CSV_QUEUE_ABOVE_ROWS,
                )
                if report.queued:
                    messages.success(request, f"{report.summary()}: a worker imports it now; this page shows the "
                                              "report when it is done (reload it).")
                    return HttpResponseRedirect(reverse("admin:channels_csvimport_change", args=[report.import_id]))
                form = CsvUploadForm(stores=stores, initial={"store": form.cleaned_data["store"]})
        else:
            form = CsvUploadForm(stores=stores)
        context = {
            **self.admin_site.each_context(request),
            "title": "Import tracking CSV",
            "opts": self.model._meta,
            "form": form,
            "report": report,
            "report_problems": report.problems if report else [],
        }
        return TemplateResponse(request, "admin/channels/csv_upload.html", context)


@admin.register(OrderPoll)
class OrderPollAdmin(admin.ModelAdmin):
    list_display = ["order", "channel", "last_polled_at", "shipments_seen"]
    list_filter = ["channel"]
    list_select_related = ["order", "channel"]
    readonly_fields = ["channel", "order", "last_polled_at", "shipments_seen"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
