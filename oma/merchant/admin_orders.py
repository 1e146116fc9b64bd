"""Orders in admin: the merchant's main screen.

The list shows each order's unified status as a badge, its channel, carriers, latest carrier event and age, in a
constant number of queries per page (one prefetch of the page's shipments; the store joined). Filters: store,
channel, unified status, carrier, stuck for more than N days, exceptions. Search: order number, source
identifier, tracking number, email. The order page adds line items, Genstore's fulfillments, and every shipment
with its tracking timeline. Actions re-read orders from Genstore, poll carriers, push to Genstore, replay the
last webhook, and export CSV (the selection, or everything the current filters match).

Tenancy (only the user's stores, everywhere) comes from the admin site: oma.core.tenancy.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.template.defaultfilters import pluralize
from django.urls import path
from django.utils import timezone
from django.utils.html import format_html
from django.utils.timesince import timesince

from oma.core.csv_cells import safe_cell
from oma.core.outbox import enqueue_on_commit
from oma.core.tenancy import scope_queryset, store_ids_for
from oma.fulfillment.models import FulfillmentPush
from oma.fulfillment.status import UnifiedStatus
from oma.fulfillment.tasks import shipments_push_enqueue
from oma.merchant.services import orders_poll_now
from oma.merchant.tasks import resync_orders
from oma.merchant.tokens import tracking_path_for
from oma.orders.models import GenstoreFulfillment, LineItem, Order, Refund, SyncRun
from tracking.models import Shipment, TrackingEvent
from tracking.numbers import normalize
from tracking.vocabulary import TERMINAL_STATUSES, Status
from webhooks.models import WebhookDelivery
from webhooks.replay import deliveries_replay

ISSUE_STATUSES: tuple[str, ...] = (Status.EXCEPTION, Status.ATTEMPT_FAILED, Status.RETURN_TO_SENDER, Status.EXPIRED)
# Travelling parcels: a long silence from these is "stuck" (delivered, cancelled, expired and returns are not).
MOVING_STATUSES_EXCLUDED: tuple[str, ...] = (*TERMINAL_STATUSES, Status.RETURN_TO_SENDER)
BADGE_COLOURS: dict[str, tuple[str, str]] = {
    "delivered": ("#e6f4ea", "#1e6b34"),
    "partially_delivered": ("#e6f4ea", "#1e6b34"),
    "in_transit": ("#e3eefb", "#1a4f8b"),
    "out_for_delivery": ("#e3eefb", "#1a4f8b"),
    "partially_shipped": ("#e3eefb", "#1a4f8b"),
    "delivery_issue": ("#fde7e6", "#a3261d"),
    "awaiting_tracking": ("#fff4e0", "#8a4b00"),
    "unfulfilled": ("#fff4e0", "#8a4b00"),
    "awaiting_payment": ("#f1f1f1", "#4a4a4a"),
    "returned": ("#f1f1f1", "#4a4a4a"),
    "cancelled": ("#f1f1f1", "#4a4a4a"),
    "refunded": ("#f1f1f1", "#4a4a4a"),
}
ACTION_LIMIT = 500  # orders per action run: bigger selections are split by the merchant (Genstore rate limits)


def unified_label(value: str) -> str:
    if value:
        try:
            return str(UnifiedStatus(value).label)
        except ValueError:
            pass
    return value.replace("_", " ") if value else "—"


def status_badge(value: str) -> str:
    background, colour = BADGE_COLOURS.get(value, ("#f1f1f1", "#4a4a4a"))
    return format_html(
        '<span class="oma-badge" style="background:{};color:{};padding:1px 8px;border-radius:10px;'
        'white-space:nowrap;font-weight:600">{}</span>',
        background, colour, unified_label(value),
    )


def short_age(since: Any, now: Any) -> str:
    if not since:
        return "—"
    seconds = max(0, int((now - since).total_seconds()))
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def public_url(request: HttpRequest | None, path_: str) -> str:
    if settings.OMA_PUBLIC_URL:
        return settings.OMA_PUBLIC_URL.rstrip("/") + path_
    return request.build_absolute_uri(path_) if request is not None else path_


# --- filters ------------------------------------------------------------------------------------------------


class UnifiedStatusFilter(admin.SimpleListFilter):
    title = "unified status"
    parameter_name = "unified_status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(value, str(label)) for value, label in UnifiedStatus.choices]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Order]) -> QuerySet[Order]:
        return queryset.filter(unified_status=self.value()) if self.value() else queryset


class ChannelFilter(admin.SimpleListFilter):
    """Genstore's sourceName: the sales channel an order came from ("" = the online store itself)."""

    title = "channel"
    parameter_name = "channel"
    ONLINE_STORE = "__online_store__"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        values = model_admin.get_queryset(request).order_by().values_list("source_name", flat=True).distinct()
        names = sorted({value for value in values})
        return [(value or self.ONLINE_STORE, value or "online store") for value in names]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Order]) -> QuerySet[Order]:
        value = self.value()
        if not value:
            return queryset
        return queryset.filter(source_name="" if value == self.ONLINE_STORE else value)


class CarrierFilter(admin.SimpleListFilter):
    title = "carrier"
    parameter_name = "carrier"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        carriers = (
            scope_queryset(Shipment.objects.exclude(carrier=""), user=request.user)
            .order_by().values_list("carrier", flat=True).distinct()
        )
        return [(carrier, carrier.upper() if len(carrier) <= 5 else carrier) for carrier in sorted(carriers)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Order]) -> QuerySet[Order]:
        if not self.value():
            return queryset
        return queryset.filter(Exists(Shipment.objects.filter(order=OuterRef("pk"), carrier=self.value())))


def stuck_shipments(days: int, now: Any) -> QuerySet[Shipment]:
    """Parcels still travelling whose carrier has said nothing new for `days` days."""
    return (
        Shipment.objects.exclude(status__in=MOVING_STATUSES_EXCLUDED)
        .alias(quiet_since=Coalesce("last_event_at", "created_at"))
        .filter(quiet_since__lt=now - timedelta(days=days))
    )


class StuckFilter(admin.SimpleListFilter):
    """A parcel still on its way with no new carrier scan for more than N days (any N through the URL)."""

    title = "stuck for more than"
    parameter_name = "stuck_days"
    CHOICES = (2, 3, 5, 7, 14, 30)

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(days), f"{days} days") for days in self.CHOICES]

    def days(self) -> int | None:
        try:
            days = int(self.value() or "")
        except ValueError:
            return None
        return days if 0 < days <= 3650 else None

    def queryset(self, request: HttpRequest, queryset: QuerySet[Order]) -> QuerySet[Order]:
        days = self.days()
        if days is None:
            return queryset
        stuck = stuck_shipments(days, timezone.now()).filter(order=OuterRef("pk"))
        return queryset.filter(Exists(stuck))


class ExceptionFilter(admin.SimpleListFilter):
    title = "exceptions"
    parameter_name = "exception"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("any", "any exception"),
            ("carrier", "carrier exception"),
            ("push", "push to Genstore failed"),
            ("data", "data Genstore sent did not parse"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Order]) -> QuerySet[Order]:
        value = self.value()
        if not value:
            return queryset
        carrier = Exists(Shipment.objects.filter(order=OuterRef("pk"), status__in=ISSUE_STATUSES))
        push = _failed_push_exists()
        data = ~Q(parse_problems=[])
        conditions = {"carrier": carrier, "push": push, "data": data}
        if value == "any":
            return queryset.filter(Q(carrier) | Q(data) | Q(push))
        condition = conditions.get(value)
        return queryset if condition is None else queryset.filter(condition)


def _failed_push_exists() -> Exists:
    return Exists(FulfillmentPush.objects.filter(order=OuterRef("pk"), state=FulfillmentPush.State.FAILED))


# --- inlines ------------------------------------------------------------------------------------------------


class LineItemInline(admin.TabularInline):
    model = LineItem
    extra = 0
    can_delete = False
    readonly_fields = ("line_item_id", "sku", "title", "variant_title", "quantity", "fulfillable_quantity",
                       "requires_shipping", "price")
    fields = readonly_fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class GenstoreFulfillmentInline(admin.TabularInline):
    model = GenstoreFulfillment
    extra = 0
    can_delete = False
    verbose_name_plural = "fulfillments in Genstore"
    readonly_fields = ("fulfill_id", "status", "shipment_status", "tracking_number", "tracking_company", "line_items")
    fields = readonly_fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- the order admin ----------------------------------------------------------------------------------------


def _admin_shipments(order: Order) -> list[Shipment]:
    """The order's shipments, newest event first, as OrderAdmin.get_queryset prefetched them (to_attr)."""
    shipments: list[Shipment] = vars(order)["admin_shipments"]
    return shipments


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["order_label", "store", "channel", "status_badge", "carriers", "last_event", "age", "total"]
    list_display_links = ["order_label"]
    list_filter = ["store", ChannelFilter, UnifiedStatusFilter, CarrierFilter, StuckFilter, ExceptionFilter]
    search_fields = ["order_id"]  # see get_search_results: exact identifiers, tracking numbers, email
    search_help_text = "Order number, channel order id, tracking number or customer email"
    list_select_related = ["store"]
    list_per_page = 50
    show_full_result_count = False
    date_hierarchy = "genstore_created_at"
    ordering = ["-genstore_created_at", "-id"]
    actions = ["resync_from_genstore", "poll_carriers_now", "push_to_genstore_now", "replay_last_webhook",
               "export_csv"]
    inlines = [LineItemInline, GenstoreFulfillmentInline]
    change_form_template = "admin/orders/order/change_form.html"
    change_list_template = "admin/orders/order/change_list.html"
    fieldsets = [
        (None, {"fields": [("order_id", "name"), "store", "status_with_reason", ("financial_status",
                                                                                  "fulfillment_status"),
                           ("cancelled_at", "cancel_reason"), "email", ("total_price", "currency"),
                           "customer_tracking_link"]}),
        ("Channel", {"fields": [("source_name", "source_identifier")]}),
        ("Sync", {"fields": [("genstore_created_at", "genstore_updated_at"), "last_synced_at", "genstore_id",
                             "parse_problems"]}),
        ("Genstore's JSON", {"classes": ["collapse"], "fields": ["raw_pretty"]}),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: Order | None = None) -> list[str]:
        # A mirror of Genstore: nothing is edited here (a re-sync is the way to correct it).
        return [f.name for f in Order._meta.fields] + ["status_with_reason", "customer_tracking_link", "raw_pretty"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return request.user.is_superuser and super().has_delete_permission(request, obj)

    def get_list_display(self, request: HttpRequest) -> list[str | Callable[[Any], str | bool]]:
        columns = list(super().get_list_display(request))
        ids = store_ids_for(request.user)
        if ids is not None and len(ids) <= 1:
            columns.remove("store")  # one store: the column says nothing
        return columns

    def get_queryset(self, request: HttpRequest) -> QuerySet[Order]:
        return super().get_queryset(request).prefetch_related(
            Prefetch(
                "shipments",
                queryset=Shipment.objects.only(
                    "pk", "order_id", "store_id", "carrier", "status", "substatus", "last_event_at", "created_at",
                    "tracking_number",
                ).order_by("-last_event_at", "-pk"),
                to_attr="admin_shipments",
            )
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Order], search_term: str
    ) -> tuple[QuerySet[Order], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        number = term.lstrip("#").strip()
        tracking = normalize(term)
        condition = (
            Q(order_id=number) | Q(name=term) | Q(name=f"#{number}") | Q(genstore_id=number)
            | Q(source_identifier=term) | Q(email__iexact=term)
            | Q(order_id__startswith=number) | Q(source_identifier__startswith=term)
        )
        if "@" in term:
            condition |= Q(email__istartswith=term)
        if tracking:
            condition |= Q(Exists(Shipment.objects.filter(order=OuterRef("pk"), tracking_number=tracking)))
            condition |= Q(Exists(GenstoreFulfillment.objects.filter(
                order=OuterRef("pk"), tracking_number__in={term, tracking})))
        return queryset.filter(condition), False

    # -- columns --
    @admin.display(description="order", ordering="genstore_created_at")
    def order_label(self, obj: Order) -> str:
        return obj.name or f"#{obj.order_id}"

    @admin.display(description="channel", ordering="source_name")
    def channel(self, obj: Order) -> str:
        return obj.source_name or "online store"

    @admin.display(description="status", ordering="unified_status")
    def status_badge(self, obj: Order) -> str:
        return status_badge(obj.unified_status)

    @admin.display(description="carrier")
    def carriers(self, obj: Order) -> str:
        names = sorted({shipment.carrier.upper() for shipment in _admin_shipments(obj) if shipment.carrier})
        return ", ".join(names) or "—"

    @admin.display(description="last carrier event")
    def last_event(self, obj: Order) -> str:
        latest = next((s for s in _admin_shipments(obj) if s.last_event_at), None)
        if latest is None or latest.last_event_at is None:
            return "—"
        return f"{latest.status.replace('_', ' ')}, {timesince(latest.last_event_at).split(',')[0]} ago"

    @admin.display(description="age", ordering="genstore_created_at")
    def age(self, obj: Order) -> str:
        return short_age(obj.genstore_created_at, timezone.now())

    @admin.display(description="total", ordering="total_price")
    def total(self, obj: Order) -> str:
        return f"{obj.total_price} {obj.currency}".strip() if obj.total_price is not None else "—"

    # -- the order page --
    @admin.display(description="unified status")
    def status_with_reason(self, obj: Order) -> str:
        return format_html("{} <span class='help'>{}</span>", status_badge(obj.unified_status),
                           obj.unified_status_reason)

    @admin.display(description="customer tracking page")
    def customer_tracking_link(self, obj: Order) -> str:
        if not obj.pk:
            return "—"
        url = tracking_path_for(obj)
        return format_html('<a href="{}" target="_blank" rel="noreferrer">{}</a> (a permanent link for your '
                           'emails)', url, url)

    @admin.display(description="raw")
    def raw_pretty(self, obj: Order) -> str:
        return format_html('<pre style="white-space:pre-wrap;max-height:40em;overflow:auto">{}</pre>',
                           json.dumps(obj.raw, indent=2, sort_keys=True, default=str))

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict | None = None) -> HttpResponse:
        extra = dict(extra_context or {})
        extra.update(show_save=False, show_save_and_continue=False, show_save_and_add_another=False,
                     show_delete=self.has_delete_permission(request))
        order = self.get_object(request, object_id)
        if order is not None:
            extra["order_shipments"] = self.shipments_with_timeline(order)
            extra["tracking_page_url"] = tracking_path_for(order)
        return super().change_view(request, object_id, form_url, extra)

    @staticmethod
    def shipments_with_timeline(order: Order) -> list[Shipment]:
        return list(
            Shipment.objects.filter(order=order).order_by("created_at", "pk").prefetch_related(
                Prefetch("events", queryset=TrackingEvent.objects.order_by("-occurred_at", "-pk"),
                         to_attr="timeline"),
                "lines__line_item",
            )
        )

    # -- actions --
    def _capped(self, request: HttpRequest, queryset: QuerySet[Order]) -> list[tuple[int, int]]:
        rows = list(queryset.order_by().values_list("pk", "store_id")[: ACTION_LIMIT + 1])
        if len(rows) > ACTION_LIMIT:
            messages.warning(request, f"Only the first {ACTION_LIMIT} orders were taken; run it again for the rest.")
            rows = rows[:ACTION_LIMIT]
        return rows

    @admin.action(description="Re-sync from Genstore (read the orders again)", permissions=["change"])
    def resync_from_genstore(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        by_store: dict[int, list[int]] = {}
        for pk, store_id in self._capped(request, queryset):
            by_store.setdefault(store_id, []).append(pk)
        for store_id, pks in by_store.items():
            enqueue_on_commit(resync_orders, store_id, pks)
        total = sum(len(pks) for pks in by_store.values())
        if total:
            messages.info(request, f"{total} order{pluralize(total)} will be read again from Genstore in a moment.")

    @admin.action(description="Poll the carriers now", permissions=["change"])
    def poll_carriers_now(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        rows = self._capped(request, queryset)
        count = orders_poll_now(order_pks=[pk for pk, _ in rows], store_ids=sorted({s for _, s in rows}))
        messages.info(request, f"{count} shipment{pluralize(count)} will be polled within a minute." if count
                      else "No shipment still travelling among these orders.")

    @admin.action(description="Push tracking to Genstore now", permissions=["change"])
    def push_to_genstore_now(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        rows = self._capped(request, queryset)
        shipment_ids = list(
            Shipment.objects.filter(order_id__in=[pk for pk, _ in rows], store_id__in={s for _, s in rows})
            .values_list("pk", flat=True)
        )
        count = shipments_push_enqueue(shipment_ids=shipment_ids, force=True)
        messages.info(request, f"{count} shipment{pluralize(count)} queued for a push to Genstore." if count
                      else "These orders have no shipments to push.")

    @admin.action(description="Replay the last webhook of each order", permissions=["change"])
    def replay_last_webhook(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        rows = list(queryset.order_by().values_list("store_id", "order_id")[:ACTION_LIMIT])
        if not rows:
            return
        wanted = Q()
        for store_id, order_id in rows:
            wanted |= Q(store_id=store_id, resource_id=order_id)
        latest: dict[tuple[int, str], int] = {}
        for pk, store_id, resource_id in (
            WebhookDelivery.objects.filter(wanted).order_by("received_at", "pk").values_list("pk", "store_id",
                                                                                          "resource_id")
        ):
            latest[(store_id, resource_id)] = pk
        count = deliveries_replay(deliveries=WebhookDelivery.objects.filter(pk__in=latest.values()))
        missing = len(rows) - len(latest)
        messages.info(request, f"{count} webhook deliver{pluralize(count, 'y,ies')} queued for processing again "
                               f"({missing} order{pluralize(missing)} had none).")

    @admin.action(description="Export to CSV", permissions=["view"])
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Order]) -> StreamingHttpResponse:
        return csv_response(request, queryset, filename="orders.csv")

    def get_urls(self) -> list:
        return [
            path("export/", self.admin_site.admin_view(self.export_view), name="orders_order_export"),
            *super().get_urls(),
        ]

    def export_view(self, request: HttpRequest) -> StreamingHttpResponse:
        """Everything the changelist's current filters and search match, as CSV."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        changelist = self.get_changelist_instance(request)
        return csv_response(request, changelist.get_queryset(request), filename="orders.csv")


CSV_COLUMNS = [
    "store", "order_id", "name", "created_at", "channel", "source_identifier", "email", "financial_status",
    "fulfillment_status", "unified_status", "total", "currency", "tracking_numbers", "carriers",
    "shipment_statuses", "last_event_at", "tracking_page",
]


class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_rows(request: HttpRequest | None, queryset: QuerySet[Order]) -> Iterator[list[str]]:
    yield CSV_COLUMNS
    orders: Iterable[Order] = (
        queryset.select_related("store").order_by("store_id", "-genstore_created_at", "-pk")
        .prefetch_related(Prefetch("shipments", queryset=Shipment.objects.order_by("created_at", "pk"),
                                   to_attr="csv_shipments"))
        .iterator(chunk_size=1000)
    )
    for order in orders:
        shipments: list[Shipment] = vars(order)["csv_shipments"]  # prefetched above (to_attr)
        last = max((s.last_event_at for s in shipments if s.last_event_at), default=None)
        yield [safe_cell(value) for value in (
            order.store.domain, order.order_id, order.name,
            order.genstore_created_at.isoformat() if order.genstore_created_at else "",
            order.source_name, order.source_identifier, order.email, order.financial_status,
            order.fulfillment_status, order.unified_status,
            "" if order.total_price is None else order.total_price, order.currency,
            " ".join(s.tracking_number for s in shipments), " ".join(sorted({s.carrier for s in shipments})),
            " ".join(s.status for s in shipments), last.isoformat() if last else "",
            public_url(request, tracking_path_for(order)),
        )]


def csv_response(request: HttpRequest, queryset: QuerySet[Order], *, filename: str) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())
    response = StreamingHttpResponse((writer.writerow(row) for row in csv_rows(request, queryset)),
                                     content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


# --- sweeps and refunds -------------------------------------------------------------------------------------


@admin.register(SyncRun)
class SyncRunAdmin(admin.ModelAdmin):
    list_display = ["started_at", "store", "kind", "state", "duration", "pages", "seen", "created", "updated",
                    "drift", "unchanged", "errors", "rate_limited"]
    list_filter = ["store", "kind", "state"]
    list_select_related = ["store"]
    date_hierarchy = "started_at"
    readonly_fields = [f.name for f in SyncRun._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: SyncRun | None = None) -> bool:
        return False

    @admin.display(description="duration")
    def duration(self, obj: SyncRun) -> str:
        seconds = obj.duration_seconds
        return "—" if seconds is None else f"{seconds:.0f} s"

    @admin.display(description="drift (webhooks missed)")
    def drift(self, obj: SyncRun) -> str:
        return format_html("<strong>{}</strong>", obj.changed) if obj.changed else "0"


@admin.register(Refund)
class RefundAdmin(admin.ModelAdmin):
    list_display = ["refund_id", "order_id_text", "store", "amount", "currency", "received_at"]
    list_filter = ["store"]
    search_fields = ["refund_id", "order_id_text"]
    list_select_related = ["store"]
    readonly_fields = [f.name for f in Refund._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

