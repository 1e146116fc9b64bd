from django.contrib import admin

from oma.orders.models import GenstoreFulfillment, LineItem, Order, Refund, SyncRun


class LineItemInline(admin.TabularInline):
    model = LineItem
    extra = 0
    can_delete = False
    fields = ["line_item_id", "sku", "title", "quantity", "fulfillable_quantity", "requires_shipping", "price"]
    readonly_fields = fields


class GenstoreFulfillmentInline(admin.TabularInline):
    model = GenstoreFulfillment
    extra = 0
    can_delete = False
    fields = ["fulfill_id", "status", "shipment_status", "tracking_number", "tracking_company", "line_items"]
    readonly_fields = fields


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = [
        "order_id",
        "store",
        "source_name",
        "source_identifier",
        "financial_status",
        "fulfillment_status",
        "unified_status",
        "genstore_created_at",
    ]
    list_filter = ["store", "source_name", "financial_status", "fulfillment_status", "unified_status"]
    search_fields = ["order_id", "source_identifier", "email", "name"]
    list_select_related = ["store"]
    readonly_fields = [f.name for f in Order._meta.fields]
    inlines = [LineItemInline, GenstoreFulfillmentInline]
    date_hierarchy = "genstore_created_at"
    show_full_result_count = False


@admin.register(SyncRun)
class SyncRunAdmin(admin.ModelAdmin):
    list_display = ["store", "kind", "state", "started_at", "pages", "seen", "created", "updated", "unchanged",
                    "errors", "rate_limited"]
    list_filter = ["store", "kind", "state"]
    list_select_related = ["store"]
    readonly_fields = [f.name for f in SyncRun._meta.fields]


@admin.register(Refund)
class RefundAdmin(admin.ModelAdmin):
    list_display = ["refund_id", "order_id_text", "store", "amount", "currency", "received_at"]
    list_filter = ["store"]
    search_fields = ["refund_id", "order_id_text"]
    list_select_related = ["store"]
