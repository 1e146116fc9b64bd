"""Customer notifications: one email per shipment and milestone, from templates a merchant can override."""
