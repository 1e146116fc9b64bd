"""What starts customer emails: the receiver of tracking's `shipments_changed` (connected in
NotificationsConfig.ready; tracking never imports this app). It runs after the tracking write committed, once per
batch, and records the due notifications before queuing the worker that sends them."""

from __future__ import annotations

from oma.notifications.services import notifications_detect
from oma.notifications.tasks import send_due_enqueue


def on_shipments_changed(sender: object, *, shipment_ids: list[int], **kwargs: object) -> None:
    created = notifications_detect(shipment_ids=shipment_ids)
    if created:
        send_due_enqueue(rows=created)
