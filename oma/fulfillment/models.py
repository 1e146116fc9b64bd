"""FulfillmentPush: OMA's record of the Genstore fulfillment it owes one shipment.

Genstore has no idempotency key, so this row is ours: written (state `pending`) before anything is sent, keyed
by a hash of store, order and shipment, and holding the fulfillment id once Genstore has one. One row per shipment
for its whole life: creation first, then `update_tracking` whenever the number, the carrier or the mapped
`shipmentStatus` moves forward.

States: `pending` (something to send; `next_attempt_at` says when) -> `in_progress` (a worker holds the push's
lock and is talking to Genstore) -> `succeeded` (Genstore holds what the row says was pushed) | `failed` (Genstore
refused, e.g. 422; `last_error` carries its message; not retried until the shipment changes or someone retries)
| `skipped` (nothing may be pushed: cancelled/refunded/voided order, no item needs shipping...; `state_reason`
says why) | `cancelled` (the channel voided the label after OMA pushed it: OMA cancelled the Genstore fulfillment,
`cancelled_at` says when Genstore confirmed it). A row `in_progress` whose worker died is taken over by the next
run, which reads before it writes (a create: the order's fulfillments; a cancel: the fulfillment's status).

`ReconcileRun`: the result of one reconciliation of a store (the nightly beat run or the `reconcile` command),
counts per kind of finding; the last RECONCILE_RUNS_KEPT per store are kept.
"""

from __future__ import annotations

import hashlib

from django.db import models
from django.db.models import Q

from oma.orders.models import Order
from oma.stores.models import Store

LOG_LIMIT = 30


class FulfillmentPush(models.Model):
    class State(models.TextChoices):
        PENDING = "pending", "pending"
        IN_PROGRESS = "in_progress", "in progress"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"
        SKIPPED = "skipped", "skipped"
        CANCELLED = "cancelled", "cancelled (label voided)"

    # Unique through fpush_key_unique rather than unique=True: on PostgreSQL unique=True adds a second index for
    # LIKE queries nobody makes, and every push intent an import writes pays for each index.
    key = models.CharField(max_length=64, help_text="sha256(store | orderId | shipment)")
    # No index of its own: fpush_store_state starts with it.
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="fulfillment_pushes", db_index=False)
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="fulfillment_pushes")
    shipment = models.ForeignKey(
        "tracking.Shipment", null=True, blank=True, on_delete=models.SET_NULL, related_name="fulfillment_pushes"
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    state_reason = models.CharField(max_length=512, blank=True, help_text="Why skipped, failed or waiting")
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, help_text="Genstore's own message when it gave one")
    last_error_status = models.PositiveIntegerField(null=True, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True, help_text="When a push task was last enqueued")
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="A pending push waits until then")
    succeeded_at = models.DateTimeField(null=True, blank=True)
    # Set just before POST /fulfillments is sent: a row with this set and no fulfill_id must read before writing.
    create_sent_at = models.DateTimeField(null=True, blank=True)
    # Set just before PUT /fulfillments/{id}/cancel is sent: a later attempt reads the fulfillment back first.
    cancel_sent_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(
        null=True, blank=True, help_text="When Genstore confirmed the fulfillment cancelled (the label was voided)"
    )
    fulfill_id = models.CharField(max_length=64, blank=True, help_text="Genstore fulfillId")  # fpush_fulfill_id
    adopted = models.BooleanField(
        default=False, help_text="The fulfillment already existed in Genstore with this tracking number"
    )
    # What Genstore was last told (after a success these are what it holds).
    tracking_number = models.CharField(max_length=128, blank=True)
    tracking_company = models.CharField(max_length=128, blank=True)
    tracking_url = models.URLField(max_length=1024, blank=True)
    shipment_status = models.CharField(max_length=32, blank=True, help_text="shipmentStatus pushed")
    notify_customer = models.BooleanField(default=False)
    line_items = models.JSONField(default=list, blank=True, help_text='[{"id": "...", "quantity": n}]')
    held_back_shipment_status = models.CharField(
        max_length=32, blank=True, help_text="A later carrier status that would have moved Genstore backwards"
    )
    # The shipment values the last run worked from: a shipment that no longer matches them needs a push.
    source_tracking_number = models.CharField(max_length=64, blank=True)
    source_carrier = models.CharField(max_length=32, blank=True)
    source_status = models.CharField(max_length=32, blank=True)
    source_substatus = models.CharField(max_length=32, blank=True)
    source_tracking_url = models.URLField(max_length=1024, blank=True)
    log = models.JSONField(default=list, blank=True, help_text=f"The last {LOG_LIMIT} steps, newest last")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "fulfillment pushes"
        ordering = ["-updated_at", "-id"]
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="fpush_due"),
            models.Index(fields=["store", "state"], name="fpush_store_state"),
            models.Index(fields=["fulfill_id"], name="fpush_fulfill_id"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["key"], name="fpush_key_unique"),
            models.CheckConstraint(condition=~Q(key=""), name="fpush_key_not_blank"),
            models.CheckConstraint(
                condition=~Q(state="succeeded") | ~Q(fulfill_id=""), name="fpush_succeeded_has_fulfillment"
            ),
            models.CheckConstraint(
                condition=~Q(state="cancelled") | ~Q(fulfill_id=""), name="fpush_cancelled_has_fulfillment"
            ),
        ]

    def __str__(self) -> str:
        number = self.tracking_number or self.source_tracking_number or "?"
        return f"push of {number} to order {self.order_id} ({self.state})"

    @staticmethod
    def key_for(*, store_id: int, order_id: str, shipment_id: int) -> str:
        return hashlib.sha256(f"{store_id}|{order_id}|{shipment_id}".encode()).hexdigest()

    @property
    def lock_id(self) -> int:
        """A signed 64-bit number for PostgreSQL's advisory lock, derived from the key."""
        return int.from_bytes(bytes.fromhex(self.key[:16]), "big", signed=True)


# Runs kept per store (a nightly run a day: a month of history).
RECONCILE_RUNS_KEPT = 30


class ReconcileRun(models.Model):
    """One reconciliation of a store: when, what it found (counts per kind), whether Genstore was re-read first."""

    class Trigger(models.TextChoices):
        NIGHTLY = "nightly", "nightly (beat)"
        COMMAND = "command", "reconcile command"

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="reconcile_runs")
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.NIGHTLY)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True, help_text="Blank: still running, or its worker died")
    counts = models.JSONField(default=dict, blank=True, help_text='Findings per kind: {"kind": n}')
    findings = models.PositiveIntegerField(default=0, help_text="All findings, every kind")
    shipments_checked = models.PositiveIntegerField(default=0)
    fulfillments_checked = models.PositiveIntegerField(default=0)
    refreshed = models.BooleanField(default=False, help_text="Genstore was re-read (an incremental sweep) first")
    refresh_error = models.TextField(blank=True)
    error = models.TextField(blank=True, help_text="Why the run did not finish")

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["store", "-started_at"], name="reconcile_run_store_latest")]

    def __str__(self) -> str:
        return f"reconciliation of {self.store_id} at {self.started_at:%Y-%m-%d %H:%M} ({self.findings} findings)"
