"""customers/redact reaches the parcels: the receiver of oma.orders.compliance.customer_redacted.

Channels sit above both tracking and orders, so the erasure of the orders' parcels (tracking) and of what sales
channels reported about them (ExternalShipment) is wired here (connected by inbound.register_webhook_handlers).
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db.models import Q

from oma.channels.models import ExternalShipment
from oma.orders.compliance import EXTERNAL_SHIPMENT_KEYS, ParcelsRedacted, keep_allowed
from oma.stores.models import Store
from tracking.redaction import shipments_redact


def on_customer_redacted(
    sender: object, *, store: Store, order_pks: Sequence[int], **kwargs: object
) -> ParcelsRedacted:
    """Who signed for the orders' parcels, what the carriers' scans said and where, and what sales channels reported
    (a report keeps its allow-list: what matching and people read)."""
    shipment_ids = shipments_redact(store_id=store.pk, order_pks=order_pks)
    reports = list(
        ExternalShipment.objects.filter(store=store).filter(
            Q(order_id__in=list(order_pks)) | Q(shipment_id__in=shipment_ids)
        )
    )
    for report in reports:
        report.raw = keep_allowed(report.raw, EXTERNAL_SHIPMENT_KEYS)
    ExternalShipment.objects.bulk_update(reports, ["raw"])
    return ParcelsRedacted(
        parcels=len(shipment_ids),
        channel_reports=len(reports),
        report_delivery_ids=tuple(sorted({r.delivery_id for r in reports if r.delivery_id is not None})),
    )
