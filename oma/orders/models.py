from __future__ import annotations

from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from oma.stores.models import Store


class Order(models.Model):
    """OMA's mirror of one Genstore order. `genstore_updated_at` decides which version wins."""

    # No index of its own: the unique (store, order_id) index and the composite indexes below lead with the store.
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="orders", db_index=False)
    order_id = models.CharField(max_length=64, help_text="Genstore orderId (used in paths, shown to people)")
    genstore_id = models.CharField(max_length=64, blank=True)
    name = models.CharField(max_length=64, blank=True)
    source_name = models.CharField(max_length=64, blank=True)
    source_identifier = models.CharField(max_length=128, blank=True)
    financial_status = models.CharField(max_length=32, blank=True)
    fulfillment_status = models.CharField(max_length=32, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    cancel_reason = models.CharField(max_length=255, blank=True)
    genstore_created_at = models.DateTimeField(null=True, blank=True)
    genstore_updated_at = models.DateTimeField(null=True, blank=True)
    email = models.CharField(max_length=254, blank=True)
    total_price = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    subtotal_price = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=8, blank=True)
    raw = models.JSONField(default=dict, blank=True)
    # SHA-256 of the canonical raw JSON: a re-read of the same version is "unchanged" without a field diff.
    payload_hash = models.CharField(max_length=64, blank=True)
    parse_problems = models.JSONField(default=list, blank=True)
    unified_status = models.CharField(max_length=32, blank=True)
    unified_status_reason = models.CharField(max_length=255, blank=True)
    # Set by customers/redact: every later version of the order is stored without the customer's personal data too.
    personal_data_erased_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-genstore_created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["store", "order_id"], name="order_unique_per_store")]
        # Plain btree indexes (db_index=True would add a second, LIKE-prefix one per text column, which no query
        # uses): every index is written for each of the hundred thousand orders a sweep may insert.
        indexes = [
            models.Index(fields=["store", "source_identifier"], name="order_store_source_ident"),
            # Tracking rows keyed by the order's name (#1001: what merchants and ShipStation export) find it here.
            models.Index(fields=["store", "name"], name="order_store_name"),
            models.Index(fields=["store", "-genstore_updated_at"], name="order_store_updated"),
            models.Index(fields=["source_name"], name="order_source_name"),
            models.Index(fields=["unified_status"], name="order_unified_status"),
        ]

    def __str__(self) -> str:
        return self.name or self.order_id

    @property
    def is_cancelled(self) -> bool:
        return self.cancelled_at is not None


class LineItem(models.Model):
    # Indexed by the unique (order, line_item_id) index.
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="line_items", db_index=False)
    line_item_id = models.CharField(max_length=64)
    product_id = models.CharField(max_length=64, blank=True)
    variant_id = models.CharField(max_length=64, blank=True)
    sku = models.CharField(max_length=128, blank=True)
    title = models.CharField(max_length=512, blank=True)
    variant_title = models.CharField(max_length=512, blank=True)
    quantity = models.IntegerField(default=0)
    fulfillable_quantity = models.IntegerField(null=True, blank=True)
    fulfillment_status = models.CharField(max_length=32, blank=True)
    requires_shipping = models.BooleanField(null=True, blank=True)
    price = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    grams = models.IntegerField(null=True, blank=True)

    class Meta:
        ordering = ["order", "id"]
        constraints = [models.UniqueConstraint(fields=["order", "line_item_id"], name="line_item_unique_per_order")]
        indexes = [models.Index(fields=["sku"], name="line_item_sku")]

    def __str__(self) -> str:
        return f"{self.quantity} × {self.title or self.sku or self.line_item_id}"


class GenstoreFulfillment(models.Model):
    """A mirror of a fulfillment as Genstore holds it (read from order details, or written by our pushes)."""

    # Indexed by the unique (store, fulfill_id) index.
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="genstore_fulfillments", db_index=False)
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="genstore_fulfillments")
    fulfill_id = models.CharField(max_length=64)
    status = models.CharField(max_length=32, blank=True)
    shipment_status = models.CharField(max_length=32, blank=True)
    tracking_number = models.CharField(max_length=128, blank=True)
    tracking_company = models.CharField(max_length=128, blank=True)
    tracking_url = models.URLField(max_length=1024, blank=True)
    line_items = models.JSONField(default=list, blank=True, help_text='[{"id": "...", "quantity": n}]')
    genstore_created_at = models.DateTimeField(null=True, blank=True)
    genstore_updated_at = models.DateTimeField(null=True, blank=True)
    last_synced_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "Genstore fulfillment"
        ordering = ["order", "genstore_created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["store", "fulfill_id"], name="genstore_fulfillment_unique_per_store")
        ]
        indexes = [models.Index(fields=["tracking_number"], name="genstore_fulfillment_tracking")]

    def __str__(self) -> str:
        return f"{self.fulfill_id} ({self.tracking_number or 'no tracking'})"


class Refund(models.Model):
    """A refund Genstore reported (refunds/create webhook or order details)."""

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="refunds")
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="refunds", null=True, blank=True)
    order_id_text = models.CharField(max_length=64, help_text="Genstore orderId (kept before the order is mirrored)")
    refund_id = models.CharField(max_length=64)
    amount = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=8, blank=True)
    genstore_created_at = models.DateTimeField(null=True, blank=True)
    raw = models.JSONField(default=dict, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at"]
        constraints = [models.UniqueConstraint(fields=["store", "refund_id"], name="refund_unique_per_store")]

    def __str__(self) -> str:
        return f"refund {self.refund_id} of {self.order_id_text}"


class SyncRun(models.Model):
    """One order sweep: what it read and what it had to change."""

    class Kind(models.TextChoices):
        FULL = "full", "full"
        INCREMENTAL = "incremental", "incremental"

    class State(models.TextChoices):
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"
        SKIPPED = "skipped", "skipped (another sweep was running)"

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="sync_runs")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    state = models.CharField(max_length=16, choices=State.choices, default=State.RUNNING)
    updated_at_min = models.DateTimeField(null=True, blank=True, help_text="updatedAtMin sent (incremental)")
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    pages = models.PositiveIntegerField(default=0)
    seen = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0, help_text="fields left empty because they did not parse")
    error_message = models.TextField(blank=True)
    rate_limited = models.PositiveIntegerField(default=0, help_text="429 answers seen")

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["store", "kind", "state", "-started_at"], name="syncrun_lookup")]
        constraints = [
            models.CheckConstraint(
                condition=Q(finished_at__isnull=True) | Q(finished_at__gte=F("started_at")),
                name="syncrun_finish_after_start",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} sweep of {self.store} at {self.started_at:%Y-%m-%d %H:%M}"

    @property
    def changed(self) -> int:
        """Orders the sweep had to create or update: what the webhooks missed (drift)."""
        return self.created + self.updated

    @property
    def duration_seconds(self) -> float | None:
        if not self.finished_at:
            return None
        return (self.finished_at - self.started_at).total_seconds()
