"""Channels in admin: the channels, every record they reported (and why it waits or was rejected), the external
orders they brought (with retry and cancel), CSV and order-file imports with their reports, the two upload pages
(the same services as `import_tracking` and `import_orders`), and the Amazon shipping-confirmation download.

Store scoping (a merchant sees only their stores' rows) comes from the admin site's tenancy mixin; the upload
pages are custom views, so they offer only the user's stores and channels themselves.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from oma.channels.connectors import REGISTRY
from oma.channels.csv_import import MAX_FILE_BYTES, tracking_csv_import
from oma.channels.marketplace_export import amazon_confirmation_lines, amazon_confirmation_rows
from oma.channels.models import (
    Channel,
    CsvImport,
    ExternalOrder,
    ExternalOrderLine,
    ExternalShipment,
    OrderImport,
    OrderPoll,
)
from oma.channels.order_create import external_order_cancel_request, external_order_retry
from oma.channels.order_import import channel_orders_problem, external_orders_import
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


# The Amazon confirmation download's periods (?since=): label, how far back (None: every parcel).
CONFIRMATION_PERIODS: dict[str, tuple[str, timedelta | None]] = {
    "1d": ("last 24 hours", timedelta(days=1)),
    "7d": ("last 7 days", timedelta(days=7)),
    "30d": ("last 30 days", timedelta(days=30)),
    "all": ("all", None),
}


@admin.register(Channel)
class ChannelAdmin(FormKnowsUserAdmin, admin.ModelAdmin):
    form = ChannelForm
    list_display = ["name", "store", "kind", "slug", "is_enabled", "source_names", "last_activity_at", "last_error"]
    list_filter = ["kind", "is_enabled", "store"]
    search_fields = ["name", "slug"]
    list_select_related = ["store"]
    readonly_fields = ["slug", "webhook_url", "shipping_confirmation", "last_activity_at", "last_polled_at",
                       "poll_paused_until", "last_error", "created_at", "updated_at"]
    actions = ["rotate_signing_secret", "poll_now", "retry_waiting"]

    def get_urls(self) -> list:
        confirm = path("<path:object_id>/amazon-confirm/", self.admin_site.admin_view(self.amazon_confirm_view),
                       name="channels_channel_amazon_confirm")
        return [confirm, *super().get_urls()]

    @admin.display(description="Amazon shipping confirmation")
    def shipping_confirmation(self, obj: Channel) -> str:
        if not obj.pk:
            return "—"
        url = reverse("admin:channels_channel_amazon_confirm", args=[obj.pk])
        links = format_html_join(" · ", '<a href="{}?since={}">{}</a>',
                                 ((url, key, label) for key, (label, _ago) in CONFIRMATION_PERIODS.items()))
        return format_html("{} <div class=\"help\">The flat file Amazon's Seller Central takes (Orders → Upload "
                           "order related files → shipping confirmation): one row per shipped item per parcel of "
                           "this channel's external orders, by when OMA learned of the parcel.</div>", links)

    def amazon_confirm_view(self, request: HttpRequest, object_id: str) -> StreamingHttpResponse:
        channel = self.get_object(request, object_id)  # scoped: another store's channel is not found
        if channel is None:
            raise Http404("no such channel")
        if not self.has_view_permission(request, channel):
            raise PermissionDenied
        period = CONFIRMATION_PERIODS.get(request.GET.get("since", ""), CONFIRMATION_PERIODS["7d"])
        now = timezone.now()
        since = now - period[1] if period[1] is not None else None
        response = StreamingHttpResponse(
            amazon_confirmation_lines(amazon_confirmation_rows(channel=channel, since=since)),
            content_type="text/tab-separated-values; charset=utf-8",
        )
        name = f"amazon-shipping-confirmation-{channel.slug}-{now:%Y%m%d-%H%M}.txt"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response

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


# --- external orders ---------------------------------------------------------------------------------------


class NeedsAttentionFilter(admin.SimpleListFilter):
    title = "needs attention"
    parameter_name = "attention"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "needs attention"), ("no", "nothing to settle")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ExternalOrder]) -> QuerySet[ExternalOrder]:
        if self.value() == "yes":
            return queryset.exclude(needs_attention="")
        if self.value() == "no":
            return queryset.filter(needs_attention="")
        return queryset


class ExternalOrderLineInline(admin.TabularInline):
    model = ExternalOrderLine
    fields = ["position", "external_line_id", "sku", "title", "variant_title", "quantity", "price", "tax",
              "genstore_line_item_id"]
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _entries_table(entries: Any, *, first: str) -> str:
    """A list of JSON objects (the log, the later changes) as a table: `first` (a time) then the rest."""
    if not entries:
        return "none"
    rows = []
    for entry in entries if isinstance(entries, list) else [entries]:
        if not isinstance(entry, dict):
            rows.append(("", str(entry)))
            continue
        rest = "; ".join(f"{key}: {_short(value)}" for key, value in entry.items() if key != first)
        rows.append((str(entry.get(first, "")), rest))
    return format_html("<table>{}</table>", format_html_join("", "<tr><td>{}</td><td>{}</td></tr>", rows))


def _short(value: Any, limit: int = 300) -> str:
    text = ", ".join(str(item) for item in value) if isinstance(value, list) else str(value)
    return text if len(text) <= limit else text[:limit] + "…"


@admin.register(ExternalOrder)
class ExternalOrderAdmin(admin.ModelAdmin):
    """Orders sold on other channels and their way into Genstore. Nothing here is edited by hand: the row is the
    exactly-once record of a Genstore create; the actions retry a failed create or cancel the Genstore order."""

    list_display = ["external_order_id", "channel", "store", "state", "genstore_order", "needs_attention",
                    "error", "ordered_at", "received_at"]
    list_filter = ["state", NeedsAttentionFilter, "channel", "store"]
    search_fields = ["external_order_id", "genstore_order_id"]
    list_select_related = ["store", "channel", "order"]
    inlines = [ExternalOrderLineInline]
    actions = ["retry_creating", "cancel_in_genstore"]
    show_full_result_count = False
    SHOWN_FIRST = ["external_order_id", "channel", "store", "source_name", "state", "state_reason",
                   "needs_attention", "genstore_order", "last_error", "last_error_status", "attempts",
                   "later_changes_table", "log_table"]
    HIDDEN = {"later_changes", "log", "lease_until"}

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        rest = [f.name for f in ExternalOrder._meta.fields
                if f.name not in self.SHOWN_FIRST and f.name not in self.HIDDEN and f.name != "id"]
        return [*self.SHOWN_FIRST, *rest]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return self.get_fields(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # an external order comes from its channel (a webhook, a file), never typed in

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the row is what keeps its Genstore order from being created twice

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra = {"show_save": False, "show_save_and_continue": False, "show_save_and_add_another": False,
                 **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra_context=extra)

    @admin.display(description="Genstore order", ordering="genstore_order_id")
    def genstore_order(self, obj: ExternalOrder) -> str:
        if obj.order_id is not None and obj.order is not None:
            return format_html('<a href="{}">{}</a>', reverse("admin:orders_order_change", args=[obj.order_id]),
                               obj.order.name or obj.genstore_order_id or obj.order.order_id)
        if obj.genstore_order_id:
            return f"{obj.genstore_order_id} (not mirrored yet)"
        return "—"

    @admin.display(description="error")
    def error(self, obj: ExternalOrder) -> str:
        text = obj.last_error or (obj.state_reason if obj.state == ExternalOrder.State.FAILED else "")
        return _short(text, 160) if text else ""

    @admin.display(description="changes after creation (recorded, not pushed)")
    def later_changes_table(self, obj: ExternalOrder) -> str:
        return _entries_table(obj.later_changes, first="at")

    @admin.display(description="log (newest last)")
    def log_table(self, obj: ExternalOrder) -> str:
        return _entries_table(obj.log, first="at")

    @admin.action(description="Retry creating in Genstore (failed orders)", permissions=["change"])
    def retry_creating(self, request: HttpRequest, queryset: QuerySet[ExternalOrder]) -> None:
        failed = list(queryset.filter(state=ExternalOrder.State.FAILED).values_list("pk", flat=True))
        for pk in failed:
            external_order_retry(external_order_id=pk)
        skipped = queryset.count() - len(failed)
        messages.info(request, f"{len(failed)} failed order(s) queued to be created again"
                               + (f"; {skipped} not failed, left as they are" if skipped else ""))

    @admin.action(description="Cancel in Genstore", permissions=["change"])
    def cancel_in_genstore(self, request: HttpRequest, queryset: QuerySet[ExternalOrder]) -> None:
        ids = list(queryset.exclude(state=ExternalOrder.State.CANCELLED).values_list("pk", flat=True))
        for pk in ids:
            external_order_cancel_request(external_order_id=pk)
        messages.info(request, f"{len(ids)} order(s) to cancel: those not in Genstore yet are cancelled now, the "
                               "others by the worker (an order something was shipped for is flagged instead)")


# --- CSV imports and the upload page -----------------------------------------------------------------------


class CsvUploadForm(forms.Form):
    store = forms.ModelChoiceField(queryset=Store.objects.none())
    channel = forms.ModelChoiceField(
        queryset=Channel.objects.none(), required=False,
        help_text="A CSV channel of the store; blank: the store's CSV channel (created on first use)",
    )
    file = forms.FileField(help_text="Columns: order, tracking_number, carrier, sku or line_item_id, quantity, "
                                     "shipped_at, status. Only order and tracking_number are required. A status "
                                     "of voided, void, cancelled or canceled withdraws that tracking number (its "
                                     "pushed Genstore fulfillment is cancelled); other statuses are ignored.")
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


def import_progress(obj: CsvImport | OrderImport) -> str:
    """Where an import stands: a queued file waits for a worker, then is imported, then done."""
    if obj.finished_at is not None:
        return "stopped by an error" if obj.file_error else "done"
    if obj.claimed_at is not None:
        return f"importing (a worker took it at {obj.claimed_at:%H:%M:%S} UTC)"
    return "waiting for a worker"


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
        return import_progress(obj)

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


# --- order files and their upload page ---------------------------------------------------------------------

ORDER_FORMAT_CHOICES = [
    ("auto", "recognise it by its header"),
    ("generic", "generic CSV (one row per line item)"),
    ("amazon", "Amazon order report (tab-separated flat file)"),
    ("ebay", "eBay orders report (CSV)"),
]


class StoreChannelField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.name} ({obj.store.domain})"


class OrderUploadForm(forms.Form):
    channel = StoreChannelField(
        queryset=Channel.objects.none(),
        help_text="Where the orders were sold; its first source name is the sourceName they get in Genstore",
    )
    file_format = forms.ChoiceField(label="Format", choices=ORDER_FORMAT_CHOICES, initial="auto")
    file = forms.FileField(help_text="Amazon's order report, eBay's orders report, or a CSV with the columns order, "
                                     "created_at, currency, sku, title, quantity, price (and optionally email, "
                                     "phone, variant_title, shipping_price, tax, name, address1, address2, city, "
                                     "province_code, zip, country_code)")
    dry_run = forms.BooleanField(required=False, help_text="Check every row; save nothing, create nothing")

    def __init__(self, *args: Any, stores: QuerySet[Store], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        channels = Channel.objects.filter(store__in=stores).select_related("store").order_by("store__domain", "name")
        self.fields["channel"].queryset = channels
        if channels.count() == 1:
            self.fields["channel"].initial = channels.first()

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        if upload.size > MAX_FILE_BYTES:
            raise forms.ValidationError(f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB: split it")
        return upload

    def clean_channel(self) -> Channel:
        channel: Channel = self.cleaned_data["channel"]
        problem = channel_orders_problem(channel)
        if problem:
            raise forms.ValidationError(problem)
        return channel


@admin.register(OrderImport)
class OrderImportAdmin(admin.ModelAdmin):
    list_display = ["file_name", "store", "channel", "file_format", "via", "rows", "progress", "orders_new",
                    "orders_known", "orders_changed", "orders_cancelled", "rejected_rows", "started_at"]
    list_filter = ["store", "file_format", "via"]
    search_fields = ["file_name", "file_sha256"]
    list_select_related = ["store", "channel"]
    readonly_fields = [
        "progress", "its_orders",
        *(f.name for f in OrderImport._meta.fields if f.name not in ("report", "queued_file")),
        "report_table",
    ]
    exclude = ["report", "queued_file"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[OrderImport]:
        return super().get_queryset(request).defer("queued_file")  # up to 20 MB a row: never loaded for a page

    @admin.display(description="progress")
    def progress(self, obj: OrderImport) -> str:
        return import_progress(obj)

    @admin.display(description="its orders")
    def its_orders(self, obj: OrderImport) -> str:
        url = reverse("admin:channels_externalorder_changelist") + f"?order_import__id__exact={obj.pk}"
        return format_html('<a href="{}">the external orders of this file</a>', url)

    def get_urls(self) -> list:
        upload = path("upload/", self.admin_site.admin_view(self.upload_view), name="channels_orderimport_upload")
        return [upload, *super().get_urls()]

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        # "Add" is the upload page: an import is only ever made by importing a file.
        return HttpResponseRedirect(reverse("admin:channels_orderimport_upload"))

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="rows rejected")
    def report_table(self, obj: OrderImport) -> str:
        if obj.finished_at is None:
            return "not imported yet"
        report = obj.report or {}
        if report.get("error"):
            return report["error"]
        problems = report.get("problems") or []
        if not problems:
            return "none"
        return format_html(
            "<table><tr><th>line</th><th>order</th><th>reason</th></tr>{}</table>",
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                             ((p["line"], p.get("order", ""), p["reason"]) for p in problems)),
        )

    def upload_view(self, request: HttpRequest) -> HttpResponse:
        if not (request.user.is_superuser or request.user.has_perm("channels.add_orderimport")):
            raise PermissionDenied
        stores = stores_of(request.user)
        report = None
        if request.method == "POST":
            form = OrderUploadForm(request.POST, request.FILES, stores=stores)
            if form.is_valid():
                upload, channel = form.cleaned_data["file"], form.cleaned_data["channel"]
                report = external_orders_import(
                    store=channel.store,
                    channel=channel,
                    data=upload.read(),
                    file_name=upload.name,
                    file_format=form.cleaned_data["file_format"],
                    dry_run=form.cleaned_data["dry_run"],
                    uploaded_by=request.user,
                    via="admin",
                    queue_above_rows=settings.OMA_CSV_QUEUE_ABOVE_ROWS,
                )
                if report.queued:
                    messages.success(request, f"{report.summary()}: a worker imports it now; this page shows the "
                                              "report when it is done (reload it).")
                    return HttpResponseRedirect(reverse("admin:channels_orderimport_change", args=[report.import_id]))
                form = OrderUploadForm(stores=stores, initial={"channel": channel,
                                                               "file_format": form.cleaned_data["file_format"]})
        else:
            form = OrderUploadForm(stores=stores)
        context = {
            **self.admin_site.each_context(request),
            "title": "Upload orders",
            "opts": self.model._meta,
            "form": form,
            "report": report,
            "report_problems": report.problems if report else [],
            "orders_url": (reverse("admin:channels_externalorder_changelist")
                           + f"?order_import__id__exact={report.import_id}") if report and report.import_id else "",
        }
        return TemplateResponse(request, "admin/channels/order_upload.html", context)


@admin.register(OrderPoll)
class OrderPollAdmin(admin.ModelAdmin):
    list_display = ["order", "channel", "last_polled_at", "shipments_seen"]
    list_filter = ["channel"]
    list_select_related = ["order", "channel"]
    readonly_fields = ["channel", "order", "last_polled_at", "shipments_seen"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
