"""External channels: the platforms a store's orders were sold or shipped on, and every shipment they reported.

`ExternalShipment` keeps each reported shipment whatever becomes of it: waiting for its order to be mirrored,
matched to an order and handed to the tracking engine, rejected with the reason, or withdrawn (voided label).
Nothing a platform sends is dropped; an operator sees each record and why it is where it is.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from oma.channels.connectors import REGISTRY
from oma.core.crypto import EncryptedTextField
from oma.orders.models import Order
from oma.stores.models import Store


def connector_kind_choices() -> list[tuple[str, str]]:
    # A callable, so that a new connector module adds its kind without a migration.
    return [(kind, connector.label) for kind, connector in REGISTRY.items()]


class Channel(models.Model):
    """One external platform of one store: a CSV drop, a platform pushing webhooks, or an API OMA polls."""

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="channels")
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=120, unique=True, help_text="Used in the webhook URL")
    kind = models.CharField(max_length=32, choices=connector_kind_choices)
    source_names = models.JSONField(
        default=list, blank=True, help_text='Genstore sourceName values this channel covers, e.g. ["amazon"]'
    )
    base_url = models.URLField(blank=True, help_text="API base URL; blank: the platform's default")
    api_key = EncryptedTextField(blank=True, default="")
    api_secret = EncryptedTextField(blank=True, default="")
    # Standard Webhooks secret: "whsec_" + base64 of random bytes. The previous one is still accepted until its
    # expiry, so a platform can switch over after a rotation without a failed delivery.
    signing_secret = EncryptedTextField(blank=True, default="")
    previous_signing_secret = EncryptedTextField(blank=True, default="")
    previous_signing_secret_expires_at = models.DateTimeField(null=True, blank=True)
    is_enabled = models.BooleanField(default=True)
    last_activity_at = models.DateTimeField(null=True, blank=True, help_text="Last record received or poll made")
    last_polled_at = models.DateTimeField(null=True, blank=True)
    poll_paused_until = models.DateTimeField(
        null=True, blank=True, help_text="Rate limited or failing: polls wait until then"
    )
    # One poll of a channel at a time (a redelivered task finds the lease taken and skips).
    poll_lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["store", "name"]
        constraints = [models.UniqueConstraint(fields=["store", "name"], name="channel_unique_name_per_store")]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class ExternalShipment(models.Model):
    """One shipment as a platform reported it, and what OMA made of it."""

    class State(models.TextChoices):
        UNMATCHED = "unmatched", "waiting for its order"
        MATCHED = "matched", "matched"
        REJECTED = "rejected", "rejected"
        WITHDRAWN = "withdrawn", "withdrawn (voided)"

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="external_shipments")
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="external_shipments")
    external_order_id = models.CharField(max_length=128, help_text="The order as the platform names it")
    external_id = models.CharField(max_length=128, blank=True, help_text="The platform's id for the shipment")
    tracking_number = models.CharField(max_length=64)
    carrier = models.CharField(max_length=32, blank=True)
    lines = models.JSONField(
        default=list, blank=True, help_text='[{"lineItemId"|"sku", "quantity"?}]; empty: the whole order'
    )
    shipped_at = models.DateTimeField(null=True, blank=True)
    reported_status = models.CharField(max_length=64, blank=True)
    voided = models.BooleanField(default=False)
    state = models.CharField(max_length=16, choices=State.choices, default=State.UNMATCHED)
    problem = models.TextField(blank=True, help_text="Why it was rejected")
    order = models.ForeignKey(
        Order, null=True, blank=True, on_delete=models.SET_NULL, related_name="external_shipments"
    )
    shipment = models.ForeignKey(
        "tracking.Shipment", null=True, blank=True, on_delete=models.SET_NULL, related_name="external_shipments"
    )
    # What the matching allotted: [{"lineItem": pk, "lineItemId": "...", "quantity": n}] (history for people).
    allotted_lines = models.JSONField(default=list, blank=True)
    # Same platform, same report -> same key: a record is stored once however often it is sent.
    dedupe_key = models.CharField(max_length=64)
    source_ref = models.CharField(max_length=255, blank=True, help_text="Where it came from (file line, delivery)")
    csv_import = models.ForeignKey(
        "CsvImport", null=True, blank=True, on_delete=models.SET_NULL, related_name="records"
    )
    # The signed webhook it came in (the Genstore receiver's delivery log holds channel deliveries too).
    delivery = models.ForeignKey(
        "webhooks.WebhookDelivery", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    raw = models.JSONField(default=dict, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    matched_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["channel", "dedupe_key"], name="external_shipment_unique_per_channel"),
        ]
        indexes = [
            # The "an order arrived: who was waiting for it?" lookup.
            models.Index(
                fields=["store", "external_order_id"],
                condition=Q(state="unmatched"),
                name="external_shipment_waiting",
            ),
            models.Index(fields=["channel", "external_id"], name="external_shipment_ext_id"),
            models.Index(fields=["order"], name="external_shipment_order"),
        ]

    def __str__(self) -> str:
        return f"{self.tracking_number} for {self.external_order_id} ({self.state})"


class CsvImport(models.Model):
    """One uploaded tracking CSV and its report (the rejected rows keep their values: nothing is lost)."""

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="csv_imports")
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="csv_imports")
    file_name = models.CharField(max_length=255)
    file_sha256 = models.CharField(max_length=64)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    via = models.CharField(max_length=16, default="command", help_text="admin or command")
    rows = models.PositiveIntegerField(default=0)
    shipments_created = models.PositiveIntegerField(default=0)
    lines_added = models.PositiveIntegerField(default=0, help_text="Rows that added items to an existing shipment")
    already_imported = models.PositiveIntegerField(default=0)
    waiting = models.PositiveIntegerField(default=0, help_text="Rows kept until their order is mirrored")
    rejected = models.PositiveIntegerField(default=0)
    file_error = models.TextField(blank=True, help_text="Set when the file as a whole could not be read")
    report = models.JSONField(default=dict, blank=True)
    # A big upload waits here for a worker (the admin queues it instead of importing inside the request); emptied
    # once the import has run.
    queued_file = models.BinaryField(null=True, blank=True, editable=False)
    # When a worker took the queued file; another may take it over only once that attempt must have ended.
    claimed_at = models.DateTimeField(null=True, blank=True, editable=False)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"{self.file_name} ({self.started_at:%Y-%m-%d %H:%M})"


class OrderPoll(models.Model):
    """When a polling channel last asked its platform about one order (the poll takes the longest-unasked first)."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="order_polls")
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="channel_polls")
    last_polled_at = models.DateTimeField()
    shipments_seen = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["channel", "order"], name="order_poll_unique")]

    def __str__(self) -> str:
        return f"{self.channel} / {self.order}"
