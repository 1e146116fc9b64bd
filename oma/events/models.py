"""Outbound events: who subscribed, what was sent, and what the detectors last saw.

* `EventSubscription`: one receiver of a store (URL, `whsec_` secret, the event types it wants).
* `Event`: one thing that happened (type, payload, the `webhook-id` every delivery of it carries).
* `EventDelivery`: that event owed to one subscription, and the log of getting it there (state, attempts, when
  the next attempt is due, the last status and error). Written in the transaction that records the event, so a
  delivery is never lost and never exists for a change that was rolled back.
* `OpenAlert`: an `alert.*` raised for an object and not cleared yet: a second failure of the same push, order,
  channel or account while it is open is a retry, not news.
* `EventWatch`, `ShipmentSnapshot`, `OrderSnapshot`: what a store's shipments and orders looked like when last
  compared (only for stores with a subscription to those events): a difference is an event.
"""

from __future__ import annotations

from datetime import date

from django.db import models
from django.db.models import Q

from oma.core.crypto import EncryptedTextField
from oma.orders.models import Order
from oma.stores.models import Store
from tracking.models import Shipment

# A shipment without an estimated delivery date is stored with this date, so that "no date" compares as equal.
NO_DATE = date(1970, 1, 1)


class EventSubscription(models.Model):
    """One receiver of one store's events, signed the Standard Webhooks way with its own secret."""

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="event_subscriptions")
    description = models.CharField(max_length=255, blank=True, help_text="What receives these events (for you)")
    url = models.URLField(max_length=1024, help_text="Where OMA POSTs each event (https, a public address)")
    secret = EncryptedTextField(default="", help_text="whsec_… : the receiver checks webhook-signature with it")
    event_types = models.JSONField(
        default=list, help_text='e.g. ["alert.*", "shipment.updated", "order.status_changed"]'
    )
    is_enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["store", "pk"]

    def __str__(self) -> str:
        return self.description or self.url


class Event(models.Model):
    """One event of one store; `msg_id` is the `webhook-id` of all its deliveries (a receiver's idempotency key)."""

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="events")
    msg_id = models.CharField(max_length=64, unique=True)
    event_type = models.CharField(max_length=64)
    payload = models.JSONField(default=dict, help_text="The body's `data`")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["created_at"], name="event_created")]

    def __str__(self) -> str:
        return f"{self.event_type} {self.msg_id}"


class EventDelivery(models.Model):
    """One event owed to one subscription, and the log of its attempts."""

    class State(models.TextChoices):
        PENDING = "pending", "pending"
        DELIVERED = "delivered", "delivered"
        FAILED = "failed", "failed"

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="event_deliveries")
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    subscription = models.ForeignKey(EventSubscription, on_delete=models.CASCADE, related_name="deliveries")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="A pending delivery waits until then")
    # The outbox's clock (oma.core.outbox.dispatch_due): when beat publishes the delivery task for it again.
    dispatch_at = models.DateTimeField(null=True, blank=True, editable=False)
    # A worker sending it holds it until then; a worker that died gives it back when this passes.
    claimed_until = models.DateTimeField(null=True, blank=True, editable=False)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_status = models.PositiveIntegerField(null=True, blank=True, help_text="The receiver's last HTTP status")
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "event deliveries"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["event", "subscription"], name="event_delivery_once_per_subscription"),
        ]
        indexes = [
            models.Index(fields=["dispatch_at"], condition=Q(state="pending"), name="event_delivery_due"),
            models.Index(fields=["store", "-created_at"], name="event_delivery_store"),
            models.Index(fields=["subscription", "-created_at"], name="event_delivery_subscription"),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} to {self.subscription_id} ({self.state})"


class OpenAlert(models.Model):
    """An alert raised for one object (a failed push, a failed external order, a channel or a carrier account) and
    not cleared yet; cleared when the object recovers, so the next failure is news again."""

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=32)
    object_id = models.BigIntegerField()
    raised_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "object_id"], name="open_alert_once")]

    def __str__(self) -> str:
        return f"{self.kind} {self.object_id}"


class EventWatch(models.Model):
    """A store whose shipments (or orders) are compared with their snapshots: from `baseline_at`, every
    difference is an event. Exists while the store has a subscription to that kind of event."""

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=16)  # "shipments" | "orders"
    baseline_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "event watches"
        constraints = [models.UniqueConstraint(fields=["store", "kind"], name="event_watch_once")]

    def __str__(self) -> str:
        return f"{self.kind} of store {self.store_id}"


class ShipmentSnapshot(models.Model):
    """A shipment's watched values as last compared (and sent)."""

    shipment = models.OneToOneField(Shipment, on_delete=models.CASCADE, related_name="+")
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="+")
    tracking_number = models.CharField(max_length=64)
    carrier = models.CharField(max_length=32, blank=True)
    status = models.CharField(max_length=32, blank=True)
    substatus = models.CharField(max_length=32, blank=True)
    estimated_delivery_date = models.DateField(default=NO_DATE)

    def __str__(self) -> str:
        return f"{self.tracking_number}: {self.status}"


class OrderSnapshot(models.Model):
    """An order's unified status as last compared (and sent)."""

    order = models.OneToOneField(Order, on_delete=models.CASCADE, related_name="+")
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=32, blank=True)

    def __str__(self) -> str:
        return f"order {self.order_id}: {self.status}"
