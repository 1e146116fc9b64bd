"""What a merchant sets for their customers and themselves: tracking-page branding, alert thresholds; and what
OMA learns and sends: transit-time statistics (estimated delivery) and the alert digests it emailed."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from oma.stores.models import Store

HEX_COLOUR = RegexValidator(r"^#[0-9a-fA-F]{6}$", "A colour like #2f5d8a")


class StoreBranding(models.Model):
    """How the customer tracking page presents one store. The logo lives in the database: no file storage, no
    external asset, and a page never depends on another host."""

    store = models.OneToOneField(Store, on_delete=models.CASCADE, related_name="branding")
    display_name = models.CharField(max_length=120, blank=True, help_text="Blank: the store's name")
    accent_colour = models.CharField(max_length=7, default="#2f5d8a", validators=[HEX_COLOUR])
    logo = models.BinaryField(blank=True, default=b"", editable=False)
    logo_content_type = models.CharField(max_length=32, blank=True, editable=False)
    logo_sha256 = models.CharField(max_length=64, blank=True, editable=False)
    support_email = models.EmailField(blank=True, help_text="Shown to customers as 'Questions? Write to …'")
    support_url = models.URLField(blank=True, help_text="Your help or contact page")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "tracking page branding"
        verbose_name_plural = "tracking page branding"

    def __str__(self) -> str:
        return f"branding of {self.store}"


class AlertPolicy(models.Model):
    """The thresholds of one store's alert digest (one email a day, only when there is something to say)."""

    store = models.OneToOneField(Store, on_delete=models.CASCADE, related_name="alert_policy")
    is_enabled = models.BooleanField(default=True)
    recipients = models.TextField(blank=True, help_text="Email addresses, one per line or comma-separated")
    not_picked_up_after_days = models.PositiveIntegerField(
        default=3, validators=[MinValueValidator(1), MaxValueValidator(60)],
        help_text="A label with no carrier scan after this many days is reported",
    )
    stuck_after_days = models.PositiveIntegerField(
        default=5, validators=[MinValueValidator(1), MaxValueValidator(60)],
        help_text="A moving parcel with no new carrier scan for this many days is reported as stuck",
    )
    late_after_days = models.PositiveIntegerField(
        default=1, validators=[MaxValueValidator(30)],
        help_text="A parcel this many days past its estimated delivery is reported as late",
    )
    include_exceptions = models.BooleanField(default=True, help_text="Report new delivery exceptions")
    send_hour_utc = models.PositiveSmallIntegerField(
        default=7, validators=[MaxValueValidator(23)], help_text="The digest goes out once a day from this hour (UTC)"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "alert settings"
        verbose_name_plural = "alert settings"

    def __str__(self) -> str:
        return f"alerts of {self.store}"

    @property
    def recipient_list(self) -> list[str]:
        raw = self.recipients.replace(";", ",").replace("\n", ",")
        return [address.strip() for address in raw.split(",") if address.strip()]


class AlertDigest(models.Model):
    """One day's digest of one store: written before it is sent, so a second run the same day sends nothing."""

    class State(models.TextChoices):
        PENDING = "pending", "to send"
        SENT = "sent", "sent"
        NOTHING = "nothing", "nothing to report (not sent)"
        FAILED = "failed", "failed (gave up)"

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="alert_digests")
    digest_date = models.DateField()
    period_start = models.DateTimeField(help_text="New exceptions are those since this time")
    period_end = models.DateTimeField()
    recipients = models.JSONField(default=list, blank=True)
    counts = models.JSONField(default=dict, blank=True)
    subject = models.CharField(max_length=255)
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    sent_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-digest_date", "-id"]
        constraints = [models.UniqueConstraint(fields=["store", "digest_date"], name="alert_digest_one_per_day")]

    def __str__(self) -> str:
        return f"{self.store} digest of {self.digest_date}"


class TransitTimeStat(models.Model):
    """Learned door-to-door time of one store's delivered shipments for a carrier and destination country
    (destination "" = every destination), in days from the first carrier scan (or from when OMA learned of the
    parcel) to delivery. Recomputed nightly."""

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="transit_time_stats")
    carrier = models.CharField(max_length=32)
    destination = models.CharField(max_length=64, blank=True, help_text="Country; blank: all destinations")
    sample_size = models.PositiveIntegerField()
    p10_days = models.FloatField()
    p40_days = models.FloatField()
    p50_days = models.FloatField()
    p60_days = models.FloatField()
    p90_days = models.FloatField()
    on_time_rate = models.FloatField(
        null=True, blank=True, help_text="Share delivered by the carrier's own estimate, where it gave one"
    )
    with_carrier_estimate = models.PositiveIntegerField(default=0)
    computed_at = models.DateTimeField()

    class Meta:
        verbose_name = "transit time"
        verbose_name_plural = "transit times"
        ordering = ["store", "carrier", "destination"]
        constraints = [
            models.UniqueConstraint(fields=["store", "carrier", "destination"], name="transit_stat_unique_lane")
        ]

    def __str__(self) -> str:
        return f"{self.carrier} → {self.destination or 'anywhere'}: median {self.p50_days:.1f} d (n={self.sample_size})"
