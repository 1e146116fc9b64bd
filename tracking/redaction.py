"""Erasing a customer's personal data from the parcels of their orders (called for customers/redact)."""

from __future__ import annotations

from collections.abc import Sequence

from tracking.models import Shipment, TrackingEvent


def shipments_redact(*, store_id: int, order_pks: Sequence[int]) -> list[int]:
    """Who signed for the orders' parcels and what the carriers' scans said and where; the shipments' pks.

    A scan keeps its time, status and key: the carrier's next answer repeats it, and the key (a hash of the scan as
    the carrier wrote it) is what keeps it from being stored again.
    """
    shipment_ids = list(
        Shipment.objects.filter(store_id=store_id, order_id__in=list(order_pks)).values_list("pk", flat=True)
    )
    Shipment.objects.filter(pk__in=shipment_ids).update(signed_by="", raw_text="")
    TrackingEvent.objects.filter(shipment_id__in=shipment_ids).update(raw_text="", location="")
    return shipment_ids
