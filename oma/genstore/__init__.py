"""The Genstore client package: the only code that knows the Genstore API contract (and its Part B assumptions).

Plain Python + requests + redis: no Django models, no ORM; it imports only oma.core. Import from here or from the
submodules, one per concept: client (the REST calls, the fulfillment create-path probe), topics (webhook topics and
payload root keys), webhooks (headers and signatures), shipment_status (shipmentStatus values and ranks), carriers
(trackingCompany names), parsing and records (payloads to typed records), errors.
"""

from oma.genstore.client import (
    FULFILLMENT_CREATE_PATHS,
    MAX_PAGE_SIZE,
    RATE_LIMIT_HEADER,
    ClientStats,
    GenstoreClient,
    OrderPage,
)
from oma.genstore.errors import (
    GenstoreAuthError,
    GenstoreClientError,
    GenstoreError,
    GenstoreNotFound,
    GenstoreRateLimited,
    GenstoreRecordError,
    GenstoreResponseError,
    GenstoreServerError,
    GenstoreTransportError,
    GenstoreUnprocessable,
)
from oma.genstore.parsing import (
    parse_datetime,
    parse_fulfillment,
    parse_line_item,
    parse_link_header,
    parse_order,
    parse_rate_limit_header,
    parse_refund,
    parse_shop,
    parse_webhook_subscription,
)
from oma.genstore.topics import COMPLIANCE_TOPICS, ORDER_TOPICS, WEBHOOK_TOPICS
from oma.genstore.webhooks import (
    HEADER_API_VERSION,
    HEADER_HMAC,
    HEADER_SHOP_DOMAIN,
    HEADER_TOPIC,
    HEADER_WEBHOOK_ID,
    compute_webhook_hmac,
    verify_install_hmac,
    verify_webhook_hmac,
)

__all__ = [
    "COMPLIANCE_TOPICS",
    "FULFILLMENT_CREATE_PATHS",
    "HEADER_API_VERSION",
    "HEADER_HMAC",
    "HEADER_SHOP_DOMAIN",
    "HEADER_TOPIC",
    "HEADER_WEBHOOK_ID",
    "MAX_PAGE_SIZE",
    "ORDER_TOPICS",
    "RATE_LIMIT_HEADER",
    "WEBHOOK_TOPICS",
    "ClientStats",
    "GenstoreAuthError",
    "GenstoreClient",
    "GenstoreClientError",
    "GenstoreError",
    "GenstoreNotFound",
    "GenstoreRateLimited",
    "GenstoreRecordError",
    "GenstoreResponseError",
    "GenstoreServerError",
    "GenstoreTransportError",
    "GenstoreUnprocessable",
    "OrderPage",
    "compute_webhook_hmac",
    "parse_datetime",
    "parse_fulfillment",
    "parse_line_item",
    "parse_link_header",
    "parse_order",
    "parse_rate_limit_header",
    "parse_refund",
    "parse_shop",
    "parse_webhook_subscription",
    "verify_install_hmac",
    "verify_webhook_hmac",
]
