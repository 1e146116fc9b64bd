"""Fulfillment pushes in admin (what was pushed, why one failed or was skipped, push again), the reconciliation
page (where OMA, the carrier and Genstore disagree, with a button that queues the missing pushes and the cancels of
voided labels' fulfillments), and the kept results of past reconciliations (nightly and the command's).

Store scoping of the push list comes from the admin site's tenancy mixin; the reconciliation page is a custom
view, so it offers only the user's stores itself. The page reads OMA's database only: it never waits on Genstore.
Reading takes the view permission on pushes; pushing (the action, the page's button) takes the change permission.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.defaultfilters import pluralize
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from oma.core.tenancy import stores_for
from oma.fulfillment.models import FulfillmentPush, ReconcileRun
from oma.fulfillment.reconciliation import FINDING_TITLES, Finding, store_reconcile
from oma.fulfillment.tasks import push_retry, reconcile_fix_enqueue
from oma.stores.models import Store


def stores_of(user: Any) -> QuerySet[Store]:
    """The stores a user may act for (all for superusers; their memberships otherwise)."""
    return stores_for(user)


@admin.register(FulfillmentPush)
class FulfillmentPushAdmin(admin.ModelAdmin):
    list_display = [
        "shipment_number",
        "order_link",
        "store",
        "state",
        "shipment_status",
        "held_back_shipment_status",
        "fulfill_id",
        "attempts",
        "problem",
        "updated_at",
    ]
    list_filter = ["state", "store", "shipment_status", "adopted"]
    search_fields = ["tracking_number", "source_tracking_number", "order__order_id", "fulfill_id", "last_error"]
    list_select_related = ["store", "order"]
    readonly_fields = [
        "key", "store", "order", "shipment", "state", "state_reason", "attempts", "last_error", "last_error_status",
        "queued_at", "last_attempt_at", "next_attempt_at", "succeeded_at", "create_sent_at", "cancel_sent_at",
        "cancelled_at", "fulfill_id", "adopted",
        "tracking_number", "tracking_company", "tracking_url", "shipment_status", "notify_customer", "line_items",
        "held_back_shipment_status", "source_tracking_number", "source_carrier", "source_status",
        "source_substatus", "source_tracking_url", "steps", "created_at", "updated_at",
    ]
    fieldsets = [
        (None, {"fields": ["store", "order", "shipment", "state", "state_reason", "last_error", "last_error_status"]}),
        ("Pushed to Genstore", {"fields": [
            "fulfill_id", "adopted", "tracking_number", "tracking_company", "tracking_url", "shipment_status",
            "held_back_shipment_status", "notify_customer", "line_items",
        ]}),
        ("Attempts", {"fields": [
            "attempts", "queued_at", "last_attempt_at", "next_attempt_at", "create_sent_at", "succeeded_at",
            "cancel_sent_at", "cancelled_at", "steps",
        ]}),
        ("Worked from (the shipment at the last attempt)", {"classes": ["collapse"], "fields": [
            "source_tracking_number", "source_carrier", "source_status", "source_substatus", "source_tracking_url",
            "key", "created_at", "updated_at",
        ]}),
    ]
    actions = ["push_again"]
    show_full_result_count = False
    change_list_template = "admin/fulfillment/fulfillmentpush/change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # rows are the push's own record; "push again" is the way to act on them

    def has_push_permission(self, request: HttpRequest) -> bool:
        """Pushing (again, or the reconciliation's fix) changes Genstore: it takes the change permission on pushes,
        although no push row is ever edited by hand. The rows acted on are the user's stores' (get_queryset)."""
        codename = get_permission_codename("change", self.opts)
        return request.user.has_perm(f"{self.opts.app_label}.{codename}")

    @admin.display(description="tracking number", ordering="tracking_number")
    def shipment_number(self, obj: FulfillmentPush) -> str:
        return obj.tracking_number or obj.source_tracking_number or "—"

    @admin.display(description="order", ordering="order__order_id")
    def order_link(self, obj: FulfillmentPush) -> str:
        url = reverse("admin:orders_order_change", args=[obj.order_id])
        return format_html('<a href="{}">{}</a>', url, obj.order.order_id)

    @admin.display(description="why not pushed")
    def problem(self, obj: FulfillmentPush) -> str:
        if obj.state in (FulfillmentPush.State.FAILED, FulfillmentPush.State.SKIPPED, FulfillmentPush.State.PENDING):
            return obj.state_reason or obj.last_error or ""
        return ""

    @admin.display(description="steps (newest last)")
    def steps(self, obj: FulfillmentPush) -> str:
        if not obj.log:
            return "—"
        return format_html(
            "<table>{}</table>",
            format_html_join("", "<tr><td>{}</td><td>{}</td></tr>", ((e["at"], e["message"]) for e in obj.log)),
        )

    @admin.action(description="Push again now (re-checks Genstore)", permissions=["push"])
    def push_again(self, request: HttpRequest, queryset: QuerySet[FulfillmentPush]) -> None:
        queued = push_retry(push_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"{queued} push{pluralize(queued, 'es')} queued.", messages.SUCCESS)

    def get_urls(self) -> list:
        view = self.admin_site.admin_view(self.reconcile_view)
        return [path("reconcile/", view, name="fulfillment_reconcile"), *super().get_urls()]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra = {"reconcile_url": reverse("admin:fulfillment_reconcile"), **(extra_context or {})}
        return super().changelist_view(request, extra_context=extra)

    def reconcile_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        can_push = self.has_push_permission(request)
        if request.method == "POST" and not can_push:
            raise PermissionDenied  # the report is for viewers; queueing its pushes is acting
        stores = list(stores_of(request.user).order_by("domain"))
        chosen = None
        wanted = request.POST.get("store") or request.GET.get("store")
        if wanted:
            chosen = next((store for store in stores if str(store.pk) == str(wanted)), None)
            if chosen is None:
                raise PermissionDenied  # not one of the user's stores (or no such store): same answer
        elif len(stores) == 1:
            chosen = stores[0]
        report = store_reconcile(store=chosen, refresh=False) if chosen is not None else None
        last_run = (
            ReconcileRun.objects.filter(store=chosen).order_by("-started_at", "-pk").first() if chosen else None
        )
        if request.method == "POST" and report is not None and chosen is not None:
            queued = reconcile_fix_enqueue(disagreements=report.fixable)
            self.message_user(
                request,
                f"{queued} push{pluralize(queued, 'es')} queued for {chosen}; reload in a minute to see what is left.",
                messages.SUCCESS,
            )
            return HttpResponseRedirect(f"{reverse('admin:fulfillment_reconcile')}?store={chosen.pk}")
        sections = []
        if report is not None:
            for kind in Finding:
                rows = [d for d in report.disagreements if d.kind == kind]
                sections.append(
                    {"kind": str(kind), "title": FINDING_TITLES[kind], "rows": rows[:500], "total": len(rows)}
                )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Reconciliation",
            "stores": stores,
            "chosen": chosen,
            "report": report,
            "sections": sections,
            "fixable": len(report.fixable) if report else 0,
            "last_run": last_run,
            "runs_url": reverse("admin:fulfillment_reconcilerun_changelist"),
            "can_push": can_push,
        }
        return TemplateResponse(request, "admin/fulfillment/reconcile.html", context)


@admin.register(ReconcileRun)
class ReconcileRunAdmin(admin.ModelAdmin):
    """What each reconciliation found (read only): the nightly beat run and the `reconcile` command's."""

    list_display = ["started_at", "store", "trigger", "findings", "found", "refreshed", "finished_at", "error"]
    list_filter = ["trigger", "store", "refreshed"]
    list_select_related = ["store"]
    readonly_fields = [
        "store", "trigger", "started_at", "finished_at", "findings", "found", "shipments_checked",
        "fulfillments_checked", "refreshed", "refresh_error", "error",
    ]
    exclude = ["counts"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="found")
    def found(self, obj: ReconcileRun) -> str:
        return ", ".join(f"{count} {kind}" for kind, count in sorted(obj.counts.items())) or "nothing"
