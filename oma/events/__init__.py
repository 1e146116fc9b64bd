"""Outbound events: merchant alerts and `shipment.updated` / `order.status_changed` sent to other tools, signed the
Standard Webhooks way, delivered by a worker with retries and a delivery log."""
