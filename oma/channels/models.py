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
    # No index of its own: external_shipment_unique_per_channel starts with it (every index is paid for on every
    # row an import writes).
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="external_shipments",
                                db_index=False)
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
        verbose_name = "CSV import"  # Django's default reads "csv import"
        verbose_name_plural = "CSV imports"

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


class ExternalOrder(models.Model):
    """One order sold on another channel, and OMA's work to bring it into Genstore exactly once.

    Written (state `pending`) before anything is sent to Genstore, keyed by (channel, external order id), so a
    second delivery, a re-import or a redelivered task finds it and creates nothing. `create_sent_at` is set just
    before `POST /orders` leaves: a row with it set and no Genstore order id must read back before writing again.
    """

    class State(models.TextChoices):
        PENDING = "pending", "pending"
        CREATING = "creating", "creating"
        CREATED = "created", "created"
        ADOPTED = "adopted", "adopted (already in Genstore)"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="external_orders")
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="external_orders")
    external_order_id = models.CharField(max_length=128, help_text="The order as the channel names it")
    source_name = models.CharField(max_length=64, help_text="sourceName written to Genstore (the channel's first)")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    state_reason = models.CharField(max_length=512, blank=True, help_text="Why it waits, failed or was adopted")
    # What the channel said (the latest input is in `raw`; `content` is what creation used or will use).
    ordered_at = models.DateTimeField(help_text="The order's time on its channel")
    currency = models.CharField(max_length=8)
    email = models.CharField(max_length=254, blank=True)
    phone = models.CharField(max_length=64, blank=True)
    customer_name = models.CharField(max_length=255, blank=True)
    shipping_address = models.JSONField(null=True, blank=True)
    billing_address = models.JSONField(null=True, blank=True)
    shipping_price = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    total_tax = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    financial_status = models.CharField(max_length=32, blank=True)
    note = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)
    channel_cancelled_at = models.DateTimeField(null=True, blank=True, help_text="cancelledAt from the channel")
    content = models.JSONField(default=dict, blank=True, help_text="The order as received (ExternalOrderInput)")
    content_sha256 = models.CharField(max_length=64)
    # Changes that arrived after the Genstore order was created: recorded and shown, never pushed.
    later_changes = models.JSONField(default=list, blank=True)
    # Genstore's side.
    genstore_order_id = models.CharField(max_length=64, blank=True, db_index=True)
    order = models.ForeignKey(
        Order, null=True, blank=True, on_delete=models.SET_NULL, related_name="external_order_rows"
    )
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, help_text="Genstore's own message when it gave one")
    last_error_status = models.PositiveIntegerField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="A pending create waits until then")
    queued_at = models.DateTimeField(null=True, blank=True, help_text="When a create task was last enqueued")
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    create_sent_at = models.DateTimeField(null=True, blank=True)
    created_in_genstore_at = models.DateTimeField(null=True, blank=True)
    # A cancel is owed (the channel's cancelledAt arrived, or the merchant asked) until the Genstore order is cancelled
    # or the row is flagged (`needs_attention`): the drain works it like a create.
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancel_sent_at = models.DateTimeField(null=True, blank=True)
    cancelled_in_genstore_at = models.DateTimeField(null=True, blank=True)
    needs_attention = models.CharField(
        max_length=512, blank=True, help_text="Something only the merchant can settle (e.g. cancelled after shipping)"
    )
    # Where it came from.
    source_ref = models.CharField(max_length=255, blank=True)
    order_import = models.ForeignKey(
        "OrderImport", null=True, blank=True, on_delete=models.SET_NULL, related_name="orders"
    )
    delivery = models.ForeignKey(
        "webhooks.WebhookDelivery", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    raw = models.JSONField(default=dict, blank=True)
    personal_data_erased_at = models.DateTimeField(null=True, blank=True, editable=False)
    log = models.JSONField(default=list, blank=True, help_text="The last steps, newest last")
    # Who works on the row, where PostgreSQL's advisory lock is not available (SQLite): a lease until then.
    lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    received_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["channel", "external_order_id"], name="external_order_unique_per_channel"),
            models.CheckConstraint(
                condition=~Q(state__in=["created", "adopted"]) | ~Q(genstore_order_id=""),
                name="external_order_created_has_order_id",
            ),
        ]
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="external_order_due"),
            models.Index(fields=["store", "state"], name="external_order_store_state"),
            models.Index(fields=["store", "source_name", "external_order_id"], name="external_order_identity"),
        ]

    def __str__(self) -> str:
        return f"{self.source_name} order {self.external_order_id} ({self.state})"

    @property
    def lock_id(self) -> int:
        """A signed 64-bit number for PostgreSQL's advisory lock (its own range: pushes use sha256 keys)."""
        return self.lock_id_of(self.pk)

    @staticmethod
    def lock_id_of(pk: int) -> int:
        return -(1 << 62) + pk


class ExternalOrderLine(models.Model):
    """One line of an external order, with the channel's own line id (Amazon's order-item-id)."""

    external_order = models.ForeignKey(ExternalOrder, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveIntegerField()
    external_line_id = models.CharField(max_length=128, blank=True)
    sku = models.CharField(max_length=128)
    title = models.CharField(max_length=512)
    variant_title = models.CharField(max_length=512, blank=True)
    quantity = models.PositiveIntegerField()
    price = models.DecimalField(max_digits=14, decimal_places=2, help_text="Unit price")
    tax = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    # The Genstore line item it became, once the order exists (matched by position, then SKU).
    genstore_line_item_id = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["external_order", "position"]
        constraints = [
            models.UniqueConstraint(fields=["external_order", "position"], name="external_order_line_position"),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.sku}"


class ExternalOrderDrain(models.Model):
    """One of the store's drains of external-order work (creates and cancels in Genstore): `slot` of
    OMA_EXTERNAL_ORDER_DRAINS, each working its own share of the rows (pk % drains == slot), one at a time per slot,
    and what the last one did. PostgreSQL holds a drain with an advisory lock (dropped with a killed worker's
    connection); other databases with the lease here."""

    # The most drains a store may have at once (the lock ids leave room for this many per store).
    SLOTS_MAX = 64

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="+")
    slot = models.PositiveSmallIntegerField(default=0)
    lease_until = models.DateTimeField(null=True, blank=True)
    last_started_at = models.DateTimeField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True)
    last_outcome = models.CharField(max_length=512, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["store", "slot"], name="external_order_drain_store_slot")]

    def __str__(self) -> str:
        return f"external-order drain {self.slot} of store {self.store_id}"

    @classmethod
    def lock_id_of(cls, store_id: int, slot: int = 0) -> int:
        """The lock of the store's drain `slot`: below the external orders' range (-2**62 + pk), apart from every
        row's and every other drain's."""
        return -(1 << 62) - store_id * cls.SLOTS_MAX - slot


class OrderImport(models.Model):
    """One uploaded order file (generic CSV, Amazon flat file, eBay CSV) and its report."""

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="order_imports")
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="order_imports")
    file_name = models.CharField(max_length=255)
    file_sha256 = models.CharField(max_length=64)
    file_format = models.CharField(max_length=16, blank=True, help_text="generic, amazon or ebay")
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    via = models.CharField(max_length=16, default="command", help_text="admin or command")
    rows = models.PositiveIntegerField(default=0)
    orders_new = models.PositiveIntegerField(default=0)
    orders_known = models.PositiveIntegerField(default=0, help_text="Already received, unchanged")
    orders_changed = models.PositiveIntegerField(default=0)
    orders_cancelled = models.PositiveIntegerField(default=0)
    rejected_rows = models.PositiveIntegerField(default=0)
    file_error = models.TextField(blank=True, help_text="Set when the file as a whole could not be read")
    report = models.JSONField(default=dict, blank=True)
    queued_file = models.BinaryField(null=True, blank=True, editable=False)
    claimed_at = models.DateTimeField(null=True, blank=True, editable=False)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"{self.file_name} ({self.started_at:%Y-%m-%d %H:%M})"
