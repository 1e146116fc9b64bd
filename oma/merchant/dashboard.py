"""The merchant dashboard (/admin/dashboard/): orders per unified status and channel, parcels that need
attention, external orders per state, delivery times per carrier, webhook and sweep health, each store's last
reconciliation; for the user's stores only.

Every figure is one aggregate query (the late-parcel scan is bounded), so the page costs the same whatever the
number of orders. Charts are inline SVG rendered here (oma.merchant.charts).
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.db.models import Count, OuterRef, Q, Subquery
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from oma.channels.models import ExternalOrder
from oma.core.tenancy import stores_for
from oma.fulfillment.models import ReconcileRun
from oma.fulfillment.reconciliation import FINDING_TITLES, Finding
from oma.merchant.admin_orders import BADGE_COLOURS, unified_label
from oma.merchant.charts import Bar, bar_chart
from oma.merchant.selectors import (
    delivery_times_per_carrier,
    exception_shipments,
    late_shipments,
    not_picked_up_shipments,
    orders_per_channel,
    orders_per_unified_status,
    stuck_shipments,
    thresholds_by_store,
    webhook_health,
)
from oma.stores.models import Store

ATTENTION_ROWS = 15
DELIVERY_WINDOW_DAYS = 90


def _orders_url(**params: Any) -> str:
    return reverse("admin:orders_order_changelist") + ("?" + urlencode(params) if params else "")


def _external_orders_url(**params: Any) -> str:
    return reverse("admin:channels_externalorder_changelist") + ("?" + urlencode(params) if params else "")


def external_order_figures(*, store_ids: list[int], store_param: dict[str, Any]) -> dict[str, Any]:
    """External orders per state, and those the merchant must settle, in one aggregate query."""
    states = list(ExternalOrder.State)
    counts = ExternalOrder.objects.filter(store_id__in=store_ids).aggregate(
        **{state.value: Count("pk", filter=Q(state=state.value)) for state in states},
        needs_attention=Count("pk", filter=~Q(needs_attention="")),
    )
    return {
        "states": [
            (state.value, state.label, counts[state.value],
             _external_orders_url(state__exact=state.value, **store_param))
            for state in states
        ],
        "total": sum(counts[state.value] for state in states),
        "failed": counts[ExternalOrder.State.FAILED.value],
        "needs_attention": counts["needs_attention"],
        "needs_attention_url": _external_orders_url(attention="yes", **store_param),
    }


def last_reconciliations(*, stores: list[Store]) -> list[dict[str, Any]]:
    """Each store's latest reconciliation (nightly or the command's): when, its counts per kind, the page to act on
    it. Two queries whatever the history's length."""
    latest = ReconcileRun.objects.filter(store=OuterRef("pk")).order_by("-started_at", "-pk").values("pk")[:1]
    run_ids: dict[int, int | None] = dict(
        Store.objects.filter(pk__in=[store.pk for store in stores])
        .annotate(last_run=Subquery(latest)).values_list("pk", "last_run")
    )
    runs = ReconcileRun.objects.in_bulk([pk for pk in run_ids.values() if pk is not None])
    page = reverse("admin:fulfillment_reconcile")
    rows = []
    for store in stores:
        run = runs.get(run_ids.get(store.pk) or 0)
        counts = run.counts if run is not None else {}
        rows.append({
            "store": store,
            "run": run,
            "kinds": [(FINDING_TITLES[kind], counts[kind]) for kind in Finding if counts.get(kind)],
            "url": f"{page}?{urlencode({'store': store.pk})}",
        })
    return rows


def dashboard_view(request: HttpRequest) -> HttpResponse:
    stores = list(stores_for(request.user).order_by("domain"))
    chosen = request.GET.get("store", "")
    selected = [store for store in stores if str(store.pk) == chosen] or stores
    store_ids = [store.pk for store in selected]
    store_param = {"store__id__exact": selected[0].pk} if len(selected) == 1 and len(stores) > 1 else {}
    now = timezone.now()
    thresholds = thresholds_by_store(store_ids)

    status_rows = orders_per_unified_status(store_ids=store_ids)
    status_chart = bar_chart(
        [Bar(unified_label(status), count, BADGE_COLOURS.get(status, ("", "#777"))[1],
             url=_orders_url(unified_status=status, **store_param)) for status, count in status_rows],
        title="Orders per unified status",
    )
    channel_rows = orders_per_channel(store_ids=store_ids)
    channel_chart = bar_chart(
        [Bar(name or "online store", count, "#5b7fa6",
             url=_orders_url(channel=name or "__online_store__", **store_param)) for name, count in channel_rows],
        title="Orders per channel",
    )
    carriers = delivery_times_per_carrier(store_ids=store_ids, since=now - timedelta(days=DELIVERY_WINDOW_DAYS))
    delivery_chart = bar_chart(
        list(itertools.chain.from_iterable(
            (Bar(f"{figure.carrier.upper()} median", round(figure.median_days, 1), "#5b8a5b",
                 display=f"{figure.median_days:.1f} d"),
             Bar(f"{figure.carrier.upper()} p90", round(figure.p90_days, 1), "#9ab59a",
                 display=f"{figure.p90_days:.1f} d"))
            for figure in carriers[:8]
        )),
        title=f"Delivery time per carrier, last {DELIVERY_WINDOW_DAYS} days (days)",
    )
    exceptions = exception_shipments(store_ids=store_ids)
    not_picked_up = not_picked_up_shipments(store_ids=store_ids, now=now, thresholds=thresholds)
    stuck = stuck_shipments(store_ids=store_ids, now=now, thresholds=thresholds)
    late = list(itertools.islice(late_shipments(store_ids=store_ids, now=now, thresholds=thresholds), 500))
    context = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        "stores": stores,
        "selected_store": selected[0] if len(selected) == 1 else None,
        "status_rows": [(status, unified_label(status), count) for status, count in status_rows],
        "status_chart": status_chart,
        "channel_rows": channel_rows,
        "channel_chart": channel_chart,
        "orders_total": sum(count for _, count in status_rows),
        "carriers": carriers,
        "delivery_chart": delivery_chart,
        "delivery_window_days": DELIVERY_WINDOW_DAYS,
        "exceptions": list(exceptions[:ATTENTION_ROWS]),
        "exceptions_count": exceptions.count(),
        "not_picked_up": list(not_picked_up[:ATTENTION_ROWS]),
        "not_picked_up_count": not_picked_up.count(),
        "stuck": list(stuck[:ATTENTION_ROWS]),
        "stuck_count": stuck.count(),
        "late": late[:ATTENTION_ROWS],
        "late_count": len(late),
        "late_capped": len(late) >= 500,
        "health": webhook_health(store_ids=store_ids, now=now),
        "external_orders": external_order_figures(store_ids=store_ids, store_param=store_param),
        "reconciliations": last_reconciliations(stores=selected),
        "exceptions_url": _orders_url(exception="carrier", **store_param),
        "stuck_url": _orders_url(stuck_days=min((t.stuck_after_days for t in thresholds.values()), default=5),
                                 **store_param),
        "now": now,
    }
    return TemplateResponse(request, "admin/merchant/dashboard.html", context)
