"""Customer notifications: what each store emails its customers, the log of every email (one row per shipment and
milestone, written before the email is sent) and the orders whose customer unsubscribed."""

from __future__ import annotations

from datetime import datetime

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from oma.notifications.milestones import MILESTONES, Milestone
from oma.orders.models import Order
from oma.stores.models import Store
from tracking.models import Shipment


class StoreNotificationSettings(models.Model):
    """One store's customer emails: off until the merchant turns them on, then one switch per milestone.

    `active_since` (milestone -> ISO time) is when each milestone was last switched on with the store's emails on:
    only milestones a shipment reaches after that are emailed, so turning emails on never mails a backlog.
    It is kept by oma.notifications.services.notification_settings_save."""

    store = models.OneToOneField(Store, on_delete=models.CASCADE, related_name="notification_settings")
    is_enabled = models.BooleanField(
        "email customers", default=False,
        help_text="Email each customer when their parcel reaches the milestones ticked below (only milestones "
        "reached from now on: no backlog is sent).",
    )
    notify_in_transit = models.BooleanField(Milestone.IN_TRANSIT.label, default=True)
    notify_out_for_delivery = models.BooleanField(Milestone.OUT_FOR_DELIVERY.label, default=True)
    notify_available_for_pickup = models.BooleanField(Milestone.AVAILABLE_FOR_PICKUP.label, default=True)
    notify_attempt_failed = models.BooleanField(Milestone.ATTEMPT_FAILED.label, default=True)
    notify_delivered = models.BooleanField(Milestone.DELIVERED.label, default=True)
    notify_exception = models.BooleanField(Milestone.EXCEPTION.label, default=True)
    language = models.CharField(
        max_length=16, default="en",
        help_text="Language of the emails (Genstore's orders carry no customer locale). English is shipped; "
        "other languages need a translation (locale/<lang>/LC_MESSAGES/django.po) or your own templates.",
    )
    reply_to = models.EmailField(blank=True, help_text="Where customers' replies go; blank: the tracking page's "
                                 "support email, if set")
    active_since = models.JSONField(default=dict, blank=True, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "customer email settings"
        verbose_name_plural = "customer email settings"

    def __str__(self) -> str:
        return f"customer emails of {self.store}"

    def wants(self, milestone: str) -> bool:
        """The store emails this milestone (its emails on and the milestone ticked)."""
        return self.is_enabled and bool(getattr(self, f"notify_{milestone}", False))

    def active_since_times(self) -> dict[str, datetime]:
        """milestone -> since when it is emailed (the milestones on only)."""
        found: dict[str, datetime] = {}
        for milestone, value in (self.active_since or {}).items():
            moment = parse_datetime(value) if isinstance(value, str) else None
            if milestone in MILESTONES and moment is not None and self.wants(milestone):
                found[milestone] = moment
        return found


class ShipmentNotification(models.Model):
    """One email about one milestone of one shipment: the row exists before the email is sent (unique per shipment
    and milestone), so a milestone is emailed at most once.

    `sending` is committed before the email is handed to the mail server and `sent` after. A worker that dies in
    between leaves the row `sending`: it is never sent again (at most once), and admin shows it as "may not have
    been sent" once it is older than SENDING_UNCONFIRMED_AFTER (oma.notifications.services)."""

    class State(models.TextChoices):
        DUE = "due", "to send"
        SENDING = "sending", "sending (unconfirmed)"
        SENT = "sent", "sent"
        FAILED = "failed", "failed (gave up)"
        SKIPPED_NO_EMAIL = "skipped_no_email", "skipped: no customer email"
        SKIPPED_UNSUBSCRIBED = "skipped_unsubscribed", "skipped: customer unsubscribed"
        SKIPPED_NO_PUBLIC_URL = "skipped_no_public_url", "skipped: OMA_PUBLIC_URL not set"
        SKIPPED_DISABLED = "skipped_disabled", "skipped: emails turned off"
        SKIPPED_STALE = "skipped_stale", "skipped: too late to be news"

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="shipment_notifications")
    shipment = models.ForeignKey(Shipment, on_delete=models.CASCADE, related_name="notifications")
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="shipment_notifications")
    milestone = models.CharField(max_length=32, choices=Milestone.choices)
    state = models.CharField(max_length=32, choices=State.choices, default=State.DUE)
    reached_at = models.DateTimeField(help_text="When the shipment reached the milestone")
    due_at = models.DateTimeField(default=timezone.now, help_text="When the next attempt may start")
    attempts = models.PositiveSmallIntegerField(default=0)
    sending_started_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    language = models.CharField(max_length=16, blank=True)
    subject = models.CharField(max_length=255, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "customer email"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["shipment", "milestone"], name="shipment_notification_once"),
        ]
        indexes = [
            models.Index(fields=["due_at"], condition=Q(state="due"), name="shipment_notification_due"),
            models.Index(fields=["store", "-created_at"], name="shipment_notification_log"),
        ]

    def __str__(self) -> str:
        return f"{self.get_milestone_display()} email for {self.shipment_id}"


class OrderUnsubscribe(models.Model):
    """The customer of this order asked for no more emails about it (the link in every email)."""

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="order_unsubscribes")
    order = models.OneToOneField(Order, on_delete=models.CASCADE, related_name="notification_unsubscribe")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "unsubscribed order"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"no emails for {self.order}"
