"""The delivery log (also the outbox of webhook processing) and the customer data exports it produces."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from oma.stores.models import Store


class WebhookDelivery(models.Model):
    """One authentic webhook as Genstore sent it, and where its processing stands.

    The row is the outbox: `next_dispatch_at` says when the dispatcher should hand it to the broker again if it is
    still unfinished by then (a broker outage, a lost message, a dead worker); finished rows have it empty.
    """

    class State(models.TextChoices):
        RECEIVED = "received", "received (processing enqueued)"
        PROCESSING = "processing", "processing"
        PROCESSED = "processed", "processed"
        RETRYING = "retrying", "retrying (an attempt failed)"
        FAILED = "failed", "failed (gave up; replayable)"
        IGNORED = "ignored", "ignored (topic not handled)"

    UNFINISHED_STATES = (State.RECEIVED, State.PROCESSING, State.RETRYING)

    # SET_NULL: a shop/redact keeps its own delivery as the record that the shop was erased. No index of its own:
    # the unique (store, dedupe_key) index serves lookups by store, and every delivery would pay for a second one.
    store = models.ForeignKey(
        Store, null=True, blank=True, on_delete=models.SET_NULL, related_name="webhook_deliveries", db_index=False
    )
    shop_domain = models.CharField(max_length=255, help_text="X-Genstore-Shop-Domain as received")
    topic = models.CharField(max_length=64)
    webhook_id = models.CharField(max_length=255, blank=True, help_text="X-Genstore-Webhook-Id, when sent")
    dedupe_key = models.CharField(
        max_length=255, help_text="the webhook id, else the topic and SHA-256 of the body: one row per delivery"
    )
    # The webhook id is not signed: whoever holds a signed body can resend it under a new id. So a store accepts
    # a topic and body once while the delivery is retained (unique with the store). Computed at receipt and kept
    # through redaction; empty (NULL) where no such rule applies (channel deliveries, whose ids are signed).
    content_sha256 = models.CharField(
        max_length=64, null=True, blank=True, editable=False,
        help_text="SHA-256 of the topic, a newline and the body as received: one delivery per store while retained",
    )
    resource_id = models.CharField(
        max_length=64, blank=True, help_text="the orderId the delivery is about (orders/*, refunds/create)"
    )
    body = models.TextField(help_text="the raw request body (personal data erased after a customers/redact)")
    headers = models.JSONField(default=dict, blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    state = models.CharField(max_length=16, choices=State.choices, default=State.RECEIVED)
    attempts = models.PositiveIntegerField(default=0, help_text="processing attempts since receipt or last replay")
    next_dispatch_at = models.DateTimeField(
        null=True, blank=True, help_text="when the outbox re-enqueues it if still unfinished"
    )
    lease_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="processing: the attempt is presumed dead after this; retrying: not before"
    )
    # Stamped by each claim; the "processed" mark only lands for the claim that did the work.
    claim_token = models.CharField(max_length=32, blank=True, editable=False)
    dispatch_count = models.PositiveIntegerField(default=0, help_text="times the outbox had to enqueue it")
    replay_count = models.PositiveIntegerField(default=0)
    processed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=255, blank=True, help_text="what processing did")
    last_error = models.TextField(blank=True)
    redacted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["store", "dedupe_key"], name="webhook_delivery_unique_per_store"),
            models.UniqueConstraint(
                fields=["store", "content_sha256"], name="webhook_delivery_content_once_per_store"
            ),
        ]
        indexes = [
            models.Index(fields=["received_at"], name="webhook_delivery_received"),
            models.Index(fields=["state", "-received_at"], name="webhook_delivery_state"),
            # Admin search by order id, and erasing a customer's deliveries (then also filtered by store).
            models.Index(fields=["resource_id"], name="webhook_delivery_resource"),
            # The dispatcher scans only unfinished rows: the partial index stays small however long the log.
            models.Index(
                fields=["next_dispatch_at"],
                name="webhook_delivery_outbox",
                condition=Q(next_dispatch_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.topic} from {self.shop_domain} at {self.received_at:%Y-%m-%d %H:%M:%S}"

    @property
    def is_handled(self) -> bool:
        return self.state != self.State.IGNORED


class CustomerDataExport(models.Model):
    """What OMA holds on one customer, produced for a customers/data_request; downloadable in admin."""

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="customer_data_exports")
    delivery = models.ForeignKey(
        WebhookDelivery, null=True, blank=True, on_delete=models.SET_NULL, related_name="customer_data_exports"
    )
    customer_id = models.CharField(max_length=64, blank=True)
    orders_requested = models.JSONField(default=list, blank=True)
    orders_found = models.PositiveIntegerField(default=0)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # A replayed data_request refreshes its export instead of adding a second one.
            models.UniqueConstraint(
                fields=["delivery"], name="customer_data_export_one_per_delivery", condition=Q(delivery__isnull=False)
            )
        ]

    def __str__(self) -> str:
        return f"data of customer {self.customer_id or '?'} at {self.store_id}"
