"""The Genstore `shipmentStatus` pushed for an OMA tracking status (genstore-contract.md, last table), and the
way back: an OMA tracking status read from a Genstore `shipmentStatus`.

Knowledge of both sides: OMA's twelve statuses and their substatuses (tracking.vocabulary) on one, Genstore's values
(oma.genstore.shipment_status) on the other. It lives here, in the app that pushes, because fulfillment is the
lowest layer allowed to import both: tracking must not know Genstore, and a table in oma.genstore keyed by plain
strings would spell OMA's statuses a second time, out of reach of the Status enum and its tests.
"""

from __future__ import annotations

from tracking.vocabulary import FAILURE_SUBSTATUSES, Status

__all__ = ["GENSTORE_SHIPMENT_STATUS_AS_TRACKING", "PUSHED_SHIPMENT_STATUS", "shipment_status_for"]

# None = push nothing.
PUSHED_SHIPMENT_STATUS: dict[str, str | None] = {
    Status.PENDING: None,
    Status.INFO_RECEIVED: "confirmed",
    Status.IN_TRANSIT: "in_transit",
    Status.OUT_FOR_DELIVERY: "out_for_delivery",
    Status.AVAILABLE_FOR_PICKUP: "ready_for_pickup",
    Status.ATTEMPT_FAILED: "attempted_delivery",
    Status.DELIVERED: "delivered",
    Status.EXCEPTION: "delayed",  # unless the substatus says the parcel is gone: see shipment_status_for
    Status.RETURN_TO_SENDER: "failure",
    Status.CANCELLED: None,
    Status.EXPIRED: None,
    Status.UNKNOWN: None,
}


def shipment_status_for(status: str, substatus: str = "") -> str | None:
    """The Genstore `shipmentStatus` to push for an OMA status, or None when nothing is pushed."""
    if status == Status.EXCEPTION and substatus in FAILURE_SUBSTATUSES:
        return "failure"
    return PUSHED_SHIPMENT_STATUS.get(status)


# A Genstore shipmentStatus read as an OMA tracking status (for fulfillments OMA does not track itself).
GENSTORE_SHIPMENT_STATUS_AS_TRACKING: dict[str, tuple[str, str]] = {
    "label_printed": (Status.INFO_RECEIVED, ""),
    "label_purchased": (Status.INFO_RECEIVED, ""),
    "confirmed": (Status.INFO_RECEIVED, ""),
    "in_transit": (Status.IN_TRANSIT, ""),
    "out_for_delivery": (Status.OUT_FOR_DELIVERY, ""),
    "ready_for_pickup": (Status.AVAILABLE_FOR_PICKUP, ""),
    "attempted_delivery": (Status.ATTEMPT_FAILED, ""),
    "delayed": (Status.EXCEPTION, "delayed"),
    "failure": (Status.EXCEPTION, "undeliverable"),
    "delivered": (Status.DELIVERED, ""),
}
