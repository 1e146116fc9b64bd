from django.contrib import admin

from oma.stores.models import Store, StoreMembership


class StoreMembershipInline(admin.TabularInline):
    model = StoreMembership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Store)
class StoreAdmin(admin.ModelAdmin):
    list_display = ["domain", "name", "is_active", "api_version", "rate_limit_label", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["domain", "name"]
    # Secrets are write-only in the form: never rendered back to the page.
    exclude = ["access_token", "client_secret", "previous_client_secret"]
    readonly_fields = ["genstore_shop_id", "scopes", "fulfillment_create_path", "created_at", "updated_at"]
    inlines = [StoreMembershipInline]

    @admin.display(description="rate limit")
    def rate_limit_label(self, obj: Store) -> str:
        return obj.rate_limit_label
