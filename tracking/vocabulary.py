"""OMA's shipment status vocabulary: one place for the statuses, substatuses and what each one means downstream.

Twelve statuses follow the consensus of AfterShip, 17TRACK, EasyPost and Shippo; the substatus says *why* (a delay,
a refusal, a loss...). Every carrier module maps its raw codes to a (status, substatus) pair and keeps the raw code
and text beside it, so a mapping gap never loses information.

Two derived tables live here too, so that polling, pushing and the UI agree:
- TERMINAL_STATUSES / is_terminal(): when polling stops.
- PROGRESS_RANK / moves_forward(): a shipment's status never moves backwards (a late "in transit" scan after
  "delivered" is recorded as an event but does not change the shipment).
What is pushed to Genstore for a status is oma/fulfillment/pushed_status.py's business (tracking knows no Genstore).
"""

from __future__ import annotations

import re

from django.db import models


class Status(models.TextChoices):
    PENDING = "pending", "Pending"  # registered; the carrier has no data yet
    INFO_RECEIVED = "info_received", "Info received"  # label / manifest, not scanned yet
    IN_TRANSIT = "in_transit", "In transit"
    OUT_FOR_DELIVERY = "out_for_delivery", "Out for delivery"
    AVAILABLE_FOR_PICKUP = "available_for_pickup", "Available for pickup"
    ATTEMPT_FAILED = "attempt_failed", "Delivery attempt failed"  # not delivered, the carrier will retry
    DELIVERED = "delivered", "Delivered"
    EXCEPTION = "exception", "Exception"  # hold, delay, customs, damage, loss: the substatus says which
    RETURN_TO_SENDER = "return_to_sender", "Returning to sender"  # substatus returned_completed once back
    CANCELLED = "cancelled", "Cancelled"  # label voided
    EXPIRED = "expired", "Expired"  # we stopped tracking with no terminal event
    UNKNOWN = "unknown", "Unknown"  # unmapped carrier code or tracking error


class Substatus(models.TextChoices):
    NONE = "", "—"
    # in transit
    PICKED_UP = "picked_up", "Picked up by the carrier"
    CUSTOMS = "customs", "In customs"
    CUSTOMS_RELEASED = "customs_released", "Released by customs"
    FORWARDED = "forwarded", "Forwarded to a new address"
    # exceptions that still move (pushed as `delayed`)
    DELAYED = "delayed", "Delayed"
    WEATHER = "weather", "Weather delay"
    HELD = "held", "Held by the carrier"
    CUSTOMS_HOLD = "customs_hold", "Held in customs (information or duties needed)"
    ADDRESS_ISSUE = "address_issue", "Address problem"
    PAYMENT_REQUIRED = "payment_required", "Payment required"
    MISSORTED = "missorted", "Missorted"
    SECURITY = "security", "Security or regulatory hold"
    # failed attempts
    RECIPIENT_UNAVAILABLE = "recipient_unavailable", "Recipient not available"
    BUSINESS_CLOSED = "business_closed", "Business closed"
    ACCESS_ISSUE = "access_issue", "No access to the delivery location"
    RESCHEDULED = "rescheduled", "Delivery rescheduled"
    # exceptions that end the journey (pushed as `failure`)
    REFUSED = "refused", "Refused by the recipient"
    DAMAGED = "damaged", "Damaged"
    LOST = "lost", "Lost"
    DESTROYED = "destroyed", "Destroyed or seized"
    DISPOSED = "disposed", "Disposed of"
    UNDELIVERABLE = "undeliverable", "Undeliverable"
    # returns
    RETURNED_COMPLETED = "returned_completed", "Returned to the sender"


STATUSES: tuple[str, ...] = tuple(Status.values)
SUBSTATUSES: tuple[str, ...] = tuple(value for value in Substatus.values if value)

# Polling stops here. A return counts only once it reached the sender (substatus returned_completed).
TERMINAL_STATUSES: frozenset[str] = frozenset({Status.DELIVERED, Status.CANCELLED, Status.EXPIRED})

# Exceptions whose parcel will not reach the recipient (the journey ended; a push says `failure`, not `delayed`).
FAILURE_SUBSTATUSES: frozenset[str] = frozenset(
    {
        Substatus.REFUSED,
        Substatus.DAMAGED,
        Substatus.LOST,
        Substatus.DESTROYED,
        Substatus.DISPOSED,
        Substatus.UNDELIVERABLE,
    }
)

# "Never backwards": a shipment takes a new status only when its rank is at least the current one. Equal ranks
# may alternate (exception <-> in_transit when a problem clears; out_for_delivery <-> attempt_failed on a second
# attempt). `unknown` and `pending` never replace a known status.
PROGRESS_RANK: dict[str, int] = {
    Status.UNKNOWN: 0,
    Status.PENDING: 0,
    Status.INFO_RECEIVED: 10,
    Status.IN_TRANSIT: 20,
    Status.EXCEPTION: 20,
    Status.OUT_FOR_DELIVERY: 30,
    Status.AVAILABLE_FOR_PICKUP: 30,
    Status.ATTEMPT_FAILED: 30,
    Status.RETURN_TO_SENDER: 40,
    Status.DELIVERED: 50,
    Status.CANCELLED: 60,
    Status.EXPIRED: 60,
}

def is_terminal(status: str, substatus: str = "") -> bool:
    """Whether polling can stop: delivered, cancelled, expired, or a return that reached the sender."""
    if status in TERMINAL_STATUSES:
        return True
    return status == Status.RETURN_TO_SENDER and substatus == Substatus.RETURNED_COMPLETED


def progress_rank(status: str) -> int:
    return PROGRESS_RANK.get(status, 0)


def moves_forward(current: str, candidate: str) -> bool:
    """True when a shipment at `current` may take `candidate` as its new status (never backwards)."""
    if candidate == Status.UNKNOWN:
        return current == Status.UNKNOWN
    return progress_rank(candidate) >= progress_rank(current)


# Substatus hints in carrier free text, for carriers whose codes say "exception" or "attempt" without the reason.
# Checked in order; the first match wins. Lower-case, word-boundary patterns.
SUBSTATUS_TEXT_HINTS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), substatus)
    for pattern, substatus in (
        (r"\b(weather|storm|hurricane|snow|flood|natural disaster)", Substatus.WEATHER),
        (r"\b(refused|rejected by (the )?(recipient|consignee|receiver))", Substatus.REFUSED),
        (r"\b(damaged?|damage reported)\b", Substatus.DAMAGED),
        (r"\b(lost|missing|cannot be located|sent to lost and found)\b", Substatus.LOST),
        (r"\b(destroyed|seized|confiscated)\b", Substatus.DESTROYED),
        (r"\b(disposed|abandoned)\b", Substatus.DISPOSED),
        (r"\b(no access|access (was )?(denied|restricted)|security access|gate code)", Substatus.ACCESS_ISSUE),
        (
            r"\b(recipient|receiver|customer|consignee|addressee)( was)? (not available|unavailable|not home|not in)"
            r"|no authorized recipient|nobody (at|was) home|no one available",
            Substatus.RECIPIENT_UNAVAILABLE,
        ),
        (r"\bbusiness (was )?closed\b", Substatus.BUSINESS_CLOSED),
        (
            r"\b(incorrect|insufficient|incomplete|wrong|invalid|bad|unknown) address|address (problem|issue|"
            r"correction|information required)|moved, left no address|addressee unknown|no such number",
            Substatus.ADDRESS_ISSUE,
        ),
        (r"\b(undeliverable|unable to deliver)\b", Substatus.UNDELIVERABLE),
        (r"\b(duties|duty|taxes|funds|cod|payment)\b.*\b(due|required|unpaid|owed)", Substatus.PAYMENT_REQUIRED),
        (
            r"\b(clearance|customs)\b.*\b(information|documents?|documentation) (required|needed)",
            Substatus.CUSTOMS_HOLD,
        ),
        (r"\b(customs|clearance)\b", Substatus.CUSTOMS),
        (r"\b(missort|mis-sort|missent|mis-sent|mis-shipped)", Substatus.MISSORTED),
        (r"\b(held|hold)\b", Substatus.HELD),
        (r"\b(reschedul)", Substatus.RESCHEDULED),
        (r"\b(delay|delayed|running late|late)\b", Substatus.DELAYED),
    )
)


def substatus_from_text(*texts: str) -> str:
    """The first substatus hinted by any of the texts, or "" when none is."""
    for text in texts:
        lowered = (text or "").lower()
        if not lowered:
            continue
        for pattern, substatus in SUBSTATUS_TEXT_HINTS:
            if pattern.search(lowered):
                return substatus
    return ""
