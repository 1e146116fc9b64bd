from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from oma.core.crypto import EncryptedTextField
from oma.stores.domains import store_api_base_url


class Store(models.Model):
    """A connected Genstore store. Token and secrets are encrypted at rest (OMA_ENCRYPTION_KEYS)."""

    domain = models.CharField(max_length=255, unique=True, help_text="e.g. shop1.genmystore.com")
    name = models.CharField(max_length=255, blank=True)
    api_base_url = models.URLField(
        blank=True, help_text="The part before /api/{version}/; blank means https://{domain}"
    )
    api_version = models.CharField(max_length=16, default="202412")
    access_token = EncryptedTextField()
    client_secret = EncryptedTextField()
    previous_client_secret = EncryptedTextField(
        blank=True, default="", help_text="Still accepted on webhooks while a secret rotation completes."
    )
    # Genstore's bucket for this store. Both blank (the default): learned from the store's answers, shared by every
    # worker (oma.genstore.bucket). Both set: pinned to these figures, nothing learned.
    rate_limit_capacity = models.PositiveIntegerField(
        null=True, blank=True, help_text="Pins the Genstore bucket (with the refill); blank: learned from Genstore"
    )
    rate_limit_refill_per_second = models.FloatField(
        null=True, blank=True, help_text="Tokens a second (with the capacity); blank: learned from Genstore"
    )
    is_active = models.BooleanField(default=True, help_text="Inactive stores are not swept, polled or pushed.")
    scopes = models.JSONField(default=list, blank=True)
    genstore_shop_id = models.CharField(max_length=64, blank=True)
    carrier_priority = models.JSONField(
        default=list, blank=True, help_text='Carrier codes preferred when a number fits several, e.g. ["ups", "usps"]'
    )
    notify_customer = models.BooleanField(default=False, help_text="Ask Genstore to email the customer on pushes")
    # On for stores connected from now on; stores connected before it existed keep the carrier's link (migration
    # 0005) until their merchant turns it on: their customers' order pages change only when the merchant decides.
    branded_tracking_link = models.BooleanField(
        "branded tracking link",
        default=True,
        db_default=True,
        help_text="Push OMA's tracking page (/track/…, on OMA_PUBLIC_URL) as the fulfillment's tracking link instead "
        "of the carrier's page; the page still links to the carrier. Pushed fulfillments get it on their next push.",
    )
    # Genstore documents both POST /fulfillments and POST /fulfillment; the client remembers which one answers.
    fulfillment_create_path = models.CharField(max_length=32, blank=True)
    # One sweep per store at a time: a lease in the database, taken with a conditional UPDATE.
    sweep_lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    sweep_lease_token = models.CharField(max_length=64, blank=True, editable=False)
    # The store's fulfillment push drain (oma.fulfillment): when one was last queued (no second is queued before it
    # starts), and the lease of the one running (one drain per store at a time).
    push_drain_queued_at = models.DateTimeField(null=True, blank=True, editable=False)
    push_drain_until = models.DateTimeField(null=True, blank=True, editable=False)
    # db_default: rows inserted by code that predates a column (a rolling deploy, a migration test) still fit.
    push_drain_token = models.CharField(max_length=64, blank=True, default="", db_default="", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["domain"]
        constraints = [
            models.CheckConstraint(
                condition=Q(rate_limit_capacity__isnull=True, rate_limit_refill_per_second__isnull=True)
                | Q(rate_limit_capacity__gte=1, rate_limit_refill_per_second__gt=0),
                name="store_rate_limit_pinned_whole",
                violation_error_message="Pin the rate limit with both a capacity and a refill above 0, or leave both "
                "blank to learn them from Genstore.",
            ),
        ]

    def __str__(self) -> str:
        return self.name or self.domain

    @property
    def handle(self) -> str:
        return self.domain.split(".", 1)[0]

    @property
    def resolved_api_base_url(self) -> str:
        """The base URL set, or https://{domain}; InvalidStoreDomain (a ValueError) for a domain that is not one
        OMA connects (a row saved before domains were checked), never an address on another host."""
        return (self.api_base_url or store_api_base_url(self.domain)).rstrip("/")

    @property
    def rate_limit_pinned(self) -> bool:
        return self.rate_limit_capacity is not None and self.rate_limit_refill_per_second is not None

    @property
    def rate_limit_label(self) -> str:
        if self.rate_limit_capacity is None or self.rate_limit_refill_per_second is None:
            return "learned"
        return f"{self.rate_limit_capacity}/{self.rate_limit_refill_per_second:g} (pinned)"


class StoreMembership(models.Model):
    """Which staff users may see which stores (tenancy in admin)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="store_memberships")
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="memberships")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "store"], name="store_membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} @ {self.store}"
