"""Privacy duties on the order mirror: erase a customer's personal data, export it, erase a whole shop.

Genstore's compliance topics (customers/redact, customers/data_request, shop/redact) call these through the webhook
processors; nothing here knows about webhooks. Personal data is what Genstore filters out for unapproved apps:
names, emails, phones, addresses, plus the customer object and browser/client details.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from oma.orders.models import Order, Refund
from oma.stores.models import Store

logger = logging.getLogger(__name__)

# Keys (compared without case, "_" or "-") whose values are personal data wherever they appear in a payload.
PERSONAL_KEYS = frozenset(
    {
        "email",
        "contactemail",
        "customeremail",
        "phone",
        "customerphone",
        "customer",
        "billingaddress",
        "shippingaddress",
        "defaultaddress",
        "addresses",
        "address",
        "address1",
        "address2",
        "firstname",
        "lastname",
        "fullname",
        "customername",
        "browserip",
        "clientdetails",
        "company",
        "zip",
        "city",
        "latitude",
        "longitude",
        "note",
    }
)
_KEY_NORMALISER = re.compile(r"[_\-\s]")


def _is_personal_key(key: str) -> bool:
    return _KEY_NORMALISER.sub("", key).lower() in PERSONAL_KEYS


def redact_personal_data(value: Any) -> Any:
    """A copy of a JSON value with every personal field set to null (structure and everything else kept)."""
    if isinstance(value, dict):
        return {
            key: (None if isinstance(key, str) and _is_personal_key(key) else redact_personal_data(item))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact_personal_data(item) for item in value]
    return value


def _clean_ids(order_ids: Sequence[object]) -> list[str]:
    return [str(order_id) for order_id in order_ids if order_id not in (None, "")]


@dataclass(frozen=True)
class CustomerRedactResult:
    orders: int
    refunds: int


def customer_redact(*, store: Store, customer: Mapping[str, Any], order_ids: Sequence[object]) -> CustomerRedactResult:
    """Erase the customer's personal data on the listed orders (and their refunds); order facts are kept.

    Only the listed orders are touched: Genstore names the orders the erasure covers.
    """
    order_ids = _clean_ids(order_ids)
    with transaction.atomic():
        orders = list(Order.objects.select_for_update().filter(store=store, order_id__in=order_ids))
        for order in orders:
            order.email = ""
            order.raw = redact_personal_data(order.raw)
        Order.objects.bulk_update(orders, ["email", "raw"])
        refunds = list(Refund.objects.select_for_update().filter(store=store, order_id_text__in=order_ids))
        for refund in refunds:
            refund.raw = redact_personal_data(refund.raw)
        Refund.objects.bulk_update(refunds, ["raw"])
    logger.info("customer %s redacted at %s: %d orders, %d refunds", customer.get("id"), store.domain, len(orders),
                len(refunds))
    return CustomerRedactResult(orders=len(orders), refunds=len(refunds))


def _money(value: object) -> str | None:
    return None if value is None else str(value)


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def customer_data_export(*, store: Store, customer: Mapping[str, Any], order_ids: Sequence[object]) -> dict[str, Any]:
    """Everything OMA holds on the customer: the requested orders, plus any other order under the same email."""
    order_ids = _clean_ids(order_ids)
    email = str(customer.get("email") or "").strip()
    matching = Q(order_id__in=order_ids)
    if email:
        matching |= Q(email__iexact=email)
    orders = (
        Order.objects.filter(store=store)
        .filter(matching)
        .prefetch_related("line_items", "genstore_fulfillments")
        .order_by("genstore_created_at", "order_id")
    )
    orders = list(orders)
    # Refunds are matched by orderId: one can arrive before its order was mirrored (no foreign key yet).
    refunds_by_order: dict[str, list[Refund]] = {}
    for refund in Refund.objects.filter(store=store, order_id_text__in=[o.order_id for o in orders]):
        refunds_by_order.setdefault(refund.order_id_text, []).append(refund)
    exported = []
    for order in orders:
        exported.append(
            {
                "orderId": order.order_id,
                "name": order.name or None,
                "email": order.email or None,
                "createdAt": _when(order.genstore_created_at),
                "updatedAt": _when(order.genstore_updated_at),
                "financialStatus": order.financial_status or None,
                "fulfillmentStatus": order.fulfillment_status or None,
                "cancelledAt": _when(order.cancelled_at),
                "totalPrice": _money(order.total_price),
                "currency": order.currency or None,
                "sourceName": order.source_name or None,
                "lineItems": [
                    {"id": line.line_item_id, "sku": line.sku or None, "title": line.title or None,
                     "quantity": line.quantity, "price": _money(line.price)}
                    for line in order.line_items.all()
                ],
                "fulfillments": [
                    {"fulfillId": f.fulfill_id, "status": f.status or None, "trackingNumber": f.tracking_number or None,
                     "trackingCompany": f.tracking_company or None, "trackingUrl": f.tracking_url or None}
                    for f in order.genstore_fulfillments.all()
                ],
                "refunds": [
                    {"refundId": r.refund_id, "amount": _money(r.amount), "currency": r.currency or None,
                     "createdAt": _when(r.genstore_created_at)}
                    for r in sorted(refunds_by_order.get(order.order_id, []), key=lambda r: r.refund_id)
                ],
                # The order as Genstore last sent it: addresses and contact details included.
                "genstoreOrder": order.raw,
            }
        )
    found = {entry["orderId"] for entry in exported}
    return {
        "store": store.domain,
        "generatedAt": timezone.now().isoformat(),
        "customer": {"id": customer.get("id"), "email": customer.get("email"), "phone": customer.get("phone")},
        "ordersRequested": order_ids,
        "ordersNotHeld": [order_id for order_id in order_ids if order_id not in found],
        "orders": exported,
    }


@dataclass(frozen=True)
class ShopRedactResult:
    domain: str
    deleted: dict[str, int]


def shop_redact(*, store: Store) -> ShopRedactResult:
    """Delete the store and everything OMA holds for it (orders, fulfillments, refunds, sweeps, shipments...).

    The cascade follows every foreign key to the store, so data other apps keep per store goes with it.
    """
    domain = store.domain
    with transaction.atomic():
        _, deleted = store.delete()
    deleted = {label: count for label, count in deleted.items() if count}
    logger.warning("shop %s erased (shop/redact): %s", domain, deleted)
    return ShopRedactResult(domain=domain, deleted=deleted)
