"""Shipments, their tracking events, and the carrier accounts used to poll them.

A `Shipment` is one tracking number of one store. `next_poll_at` is the whole polling schedule: the beat
dispatcher takes rows whose time has come, so long waits live here and never in the broker. A NULL
`next_poll_at` means "never poll again" (terminal status, expired, or cancelled).
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from oma.core.crypto import EncryptedTextField
from oma.stores.models import Store


class CarrierCode(models.TextChoices):
    """The tracking APIs OMA talks to (17TRACK covers every other carrier)."""

    UPS = "ups", "UPS"
    FEDEX = "fedex", "FedEx"
    USPS = "usps", "USPS"
    DHL = "dhl", "DHL"
    SEVENTEENTRACK = "17track", "17TRACK"


class CarrierAccount(models.Model):
    """Credentials for one carrier API, for one store or shared by all stores (store NULL).

    A store's own account wins over the shared one for the same carrier. Secrets and the cached OAuth token are
    encrypted at rest. `backoff_until` is set when the carrier fails (outage, auth): polls skip the account until
    then, and its shipments simply stay due.
    """

    carrier = models.CharField(max_length=16, choices=CarrierCode.choices)
    store = models.ForeignKey(
        Store, null=True, blank=True, on_delete=models.CASCADE, related_name="carrier_accounts",
        help_text="Blank: shared by every store that has no account of its own for this carrier.",
    )
    label = models.CharField(max_length=255, blank=True)
    client_id = EncryptedTextField(blank=True, default="")
    client_secret = EncryptedTextField(blank=True, default="")
    api_key = EncryptedTextField(blank=True, default="")
    base_url = models.URLField(
        blank=True, help_text="Stands where the carrier's host would (e.g. https://onlinetools.ups.com); blank: default"
    )
    rate_limit_requests = models.PositiveIntegerField(
        null=True, blank=True, help_text="Override of the carrier's published limit: this many requests…"
    )
    rate_limit_per_seconds = models.FloatField(null=True, blank=True, help_text="…per this many seconds")
    oauth_token = EncryptedTextField(blank=True, default="", editable=False)
    oauth_token_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    is_active = models.BooleanField(default=True)
    backoff_until = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["carrier", "store_id", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["store", "carrier"],
                condition=Q(is_active=True, store__isnull=False),
                name="carrier_account_one_active_per_store",
            ),
            models.UniqueConstraint(
                fields=["carrier"],
                condition=Q(is_active=True, store__isnull=True),
                name="carrier_account_one_active_shared",
            ),
            models.CheckConstraint(
                condition=Q(rate_limit_requests__isnull=True) | Q(rate_limit_per_seconds__gt=0),
                name="carrier_account_rate_limit_complete",
            ),
        ]

    def __str__(self) -> str:
        owner = self.store.domain if self.store_id and self.store else "shared"
        return f"{self.get_carrier_display()} ({self.label or owner})"

    @property
    def has_credentials(self) -> bool:
        return bool(self.api_key or (self.client_id and self.client_secret))


class Shipment(models.Model):
    """One tracking number of one store, with its current normalized status and polling schedule."""

    class Source(models.TextChoices):
        CSV = "csv", "CSV import"
        WEBHOOK = "webhook", "channel webhook"
        CONNECTOR = "connector", "connector"
        MANUAL = "manual", "manual"
        GENSTORE = "genstore", "Genstore fulfillment"

    # Indexes are what an import pays for on every row, so none is kept twice: the store's lookups use the unique
    # (store, tracking_number) and the (store, status) index, whose first column is the store.
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="shipments", db_index=False)
    order = models.ForeignKey(
        "orders.Order", null=True, blank=True, on_delete=models.SET_NULL, related_name="shipments"
    )
    tracking_number = models.CharField(max_length=64, help_text="Normalized: upper case, no spaces or dashes")
    carrier = models.CharField(max_length=32, blank=True, help_text="Carrier code (detected or given)")
    carrier_format = models.CharField(max_length=64, blank=True, help_text="The number format detection matched")
    carrier_valid = models.BooleanField(null=True, blank=True, help_text="Check digit valid (None: no check digit)")
    carrier_candidates = models.JSONField(default=list, blank=True, help_text="Every candidate detection found")
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.MANUAL)
    status = models.CharField(max_length=32, default="pending")  # indexed with the store (shipment_store_status)
    substatus = models.CharField(max_length=32, blank=True)
    raw_code = models.CharField(max_length=64, blank=True)
    raw_text = models.CharField(max_length=512, blank=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    last_event_at = models.DateTimeField(null=True, blank=True)
    estimated_delivery_date = models.DateField(null=True, blank=True)
    estimated_delivery_at = models.DateTimeField(null=True, blank=True, help_text="When the carrier gives a time")
    delivered_at = models.DateTimeField(null=True, blank=True)
    signed_by = models.CharField(max_length=255, blank=True)
    tracking_url = models.URLField(max_length=1024, blank=True)
    # Polling state.
    next_poll_at = models.DateTimeField(null=True, blank=True, help_text="Blank: never polled again")
    last_polled_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    carrier_account = models.ForeignKey(
        CarrierAccount, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The account that answered the last poll",
    )
    # 17TRACK answers only for numbers registered with the account asking; re-register when the account changes.
    registered_with = models.ForeignKey(
        CarrierAccount, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    # A dispatcher's claim: a lease so that two dispatchers never poll the same shipment at once.
    poll_claimed_until = models.DateTimeField(null=True, blank=True, editable=False)
    poll_claim_token = models.CharField(max_length=32, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # One parcel, one row per store: the same number on two orders of a store is a data error, refused.
            models.UniqueConstraint(fields=["store", "tracking_number"], name="shipment_unique_number_per_store"),
            models.CheckConstraint(condition=~Q(tracking_number=""), name="shipment_tracking_number_not_blank"),
        ]
        indexes = [
            models.Index(fields=["next_poll_at"], condition=Q(next_poll_at__isnull=False), name="shipment_due"),
            models.Index(fields=["store", "status"], name="shipment_store_status"),
            models.Index(fields=["tracking_number"], name="shipment_number"),
        ]

    def __str__(self) -> str:
        return f"{self.tracking_number} ({self.carrier or 'carrier unknown'}, {self.status})"


class ShipmentLine(models.Model):
    """Which order lines (and how many of each) travel in a shipment: what a fulfillment push sends."""

    # No index of its own: shipment_line_unique starts with it.
    shipment = models.ForeignKey(Shipment, on_delete=models.CASCADE, related_name="lines", db_index=False)
    line_item = models.ForeignKey("orders.LineItem", on_delete=models.CASCADE, related_name="shipment_lines")
    quantity = models.PositiveIntegerField()

    class Meta:
        ordering = ["shipment", "id"]
        constraints = [
            models.UniqueConstraint(fields=["shipment", "line_item"], name="shipment_line_unique"),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="shipment_line_quantity_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} × {self.line_item}"


class TrackingEvent(models.Model):
    """One carrier scan. `key` = SHA-256 of (occurred_at UTC, raw code, raw text, location): stored once."""

    shipment = models.ForeignKey(Shipment, on_delete=models.CASCADE, related_name="events")
    occurred_at = models.DateTimeField()
    status = models.CharField(max_length=32)
    substatus = models.CharField(max_length=32, blank=True)
    raw_code = models.CharField(max_length=64, blank=True)
    raw_text = models.CharField(max_length=1024, blank=True)
    location = models.CharField(max_length=255, blank=True)
    key = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["shipment", "key"], name="tracking_event_unique_per_shipment")]
        indexes = [models.Index(fields=["shipment", "-occurred_at"], name="tracking_event_timeline")]

    def __str__(self) -> str:
        return f"{self.occurred_at:%Y-%m-%d %H:%M} {self.status} {self.raw_text}"
