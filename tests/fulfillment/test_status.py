"""The unified status function: every row of its table, plus the edges between rows (pure: no database)."""

from __future__ import annotations

import re

import pytest

from oma.fulfillment import status as status_module
from oma.fulfillment.status import (
    RULES,
    FulfillmentFacts,
    LineFacts,
    OrderFacts,
    ShipmentFacts,
    UnifiedStatus,
    unified_status_for,
    unified_status_rule,
)

PAID_TWO_LINES = OrderFacts(
    financial_status="paid",
    lines=(LineFacts("L1", 2, 2, True), LineFacts("L2", 1, 1, True)),
)
WHOLE = (("L1", 2), ("L2", 1))


def ship(status: str, substatus: str = "", lines=WHOLE, number: str = "1Z0001", carrier: str = "ups") -> ShipmentFacts:
    return ShipmentFacts(tracking_number=number, status=status, substatus=substatus, carrier=carrier, lines=lines)


def order(**changes) -> OrderFacts:
    values = {
        "financial_status": PAID_TWO_LINES.financial_status,
        "fulfillment_status": "",
        "cancelled": False,
        "cancel_reason": "",
        "lines": PAID_TWO_LINES.lines,
    }
    values.update(changes)
    return OrderFacts(**values)


# One case per rule of the table (rule name, order facts, shipments, fulfillments, expected status).
ROW_CASES = [
    ("order_cancelled", order(cancelled=True, cancel_reason="customer"), [ship("in_transit")], [], "cancelled"),
    ("payment_voided", order(financial_status="voided"), [], [], "cancelled"),
    ("refunded", order(financial_status="refunded"), [ship("delivered")], [], "refunded"),
    ("returned", order(), [ship("return_to_sender", "returned_completed")], [], "returned"),
    ("delivery_issue", order(), [ship("exception", "lost")], [], "delivery_issue"),
    ("delivered", order(), [ship("delivered")], [], "delivered"),
    (
        "partially_delivered",
        order(),
        [ship("delivered", lines=(("L1", 2),)), ship("in_transit", lines=(("L2", 1),), number="1Z0002")],
        [],
        "partially_delivered",
    ),
    ("partially_shipped", order(), [ship("in_transit", lines=(("L1", 2),))], [], "partially_shipped"),
    ("out_for_delivery", order(), [ship("out_for_delivery")], [], "out_for_delivery"),
    ("in_transit", order(), [ship("in_transit")], [], "in_transit"),
    ("not_scanned_yet", order(), [ship("info_received")], [], "awaiting_tracking"),
    (
        "nothing_to_ship",
        order(fulfillment_status="fulfilled", lines=(LineFacts("D1", 1, 0, False),)),
        [],
        [],
        "delivered",
    ),
    ("fulfilled_without_tracking", order(fulfillment_status="fulfilled"), [], [], "awaiting_tracking"),
    ("partially_fulfilled_without_tracking", order(fulfillment_status="partial"), [], [], "partially_shipped"),
    ("awaiting_payment", order(financial_status="pending"), [], [], "awaiting_payment"),
    ("unfulfilled", order(), [], [], "unfulfilled"),
]


def test_every_rule_has_a_row_case():
    assert [case[0] for case in ROW_CASES] == [rule.name for rule in RULES]


@pytest.mark.parametrize(("rule_name", "facts", "shipments", "fulfillments", "expected"), ROW_CASES,
                         ids=[case[0] for case in ROW_CASES])
def test_each_row_of_the_table(rule_name, facts, shipments, fulfillments, expected):
    rule, reason = unified_status_rule(order=facts, shipments=shipments, fulfillments=fulfillments)
    assert rule.name == rule_name
    assert unified_status_for(order=facts, shipments=shipments, fulfillments=fulfillments) == (expected, reason)
    assert reason  # every status comes with a reason a merchant can read
    assert len(reason) <= 255


def test_the_docstring_table_is_the_rule_list():
    table_rows = re.findall(r"^\| (\d+) \| (\w+) \| .* \| `(\w+)` \|$", status_module.__doc__, flags=re.MULTILINE)
    assert [(int(n), name, status) for n, name, status in table_rows] == [
        (index, rule.name, str(rule.status)) for index, rule in enumerate(RULES, start=1)
    ]


def test_every_unified_status_is_reachable():
    assert {str(rule.status) for rule in RULES} == set(UnifiedStatus.values)


# --- edges between rows --------------------------------------------------------------------------


def test_cancelled_reason_names_the_cancel_reason_and_parcels_already_moving():
    facts = order(cancelled=True, cancel_reason="fraud")
    status, reason = unified_status_for(order=facts, shipments=[ship("in_transit")])
    assert status == "cancelled"
    assert reason == "cancelled in Genstore (fraud); 1 parcel(s) already shipped"


def test_cancellation_outranks_refund_and_refund_outranks_delivery():
    assert unified_status_for(order=order(cancelled=True, financial_status="refunded"))[0] == "cancelled"
    assert unified_status_for(order=order(financial_status="refunded"), shipments=[ship("delivered")])[0] == "refunded"


def test_partially_refunded_is_about_shipping_not_money():
    assert unified_status_for(order=order(financial_status="partially_refunded"), shipments=[ship("delivered")]) == (
        "delivered",
        "the parcel is delivered",
    )


def test_returning_parcel_among_delivered_ones_is_an_issue_not_returned():
    shipments = [ship("delivered", lines=(("L1", 2),)), ship("return_to_sender", lines=(("L2", 1),), number="9400")]
    status, reason = unified_status_for(order=order(), shipments=shipments)
    assert status == "delivery_issue"
    assert reason == "UPS 9400: return_to_sender"


def test_all_parcels_returning_but_not_back_yet():
    assert unified_status_for(order=order(), shipments=[ship("return_to_sender")]) == (
        "returned",
        "the parcel is returning to the sender",
    )


def test_restocked_in_genstore_is_returned():
    restocked = order(fulfillment_status="restocked")
    assert unified_status_for(order=restocked) == ("returned", "items restocked in Genstore")


@pytest.mark.parametrize(("tracking_status", "substatus"), [
    ("exception", "delayed"), ("attempt_failed", "recipient_unavailable"), ("expired", ""),
])
def test_any_problem_needs_attention_even_if_another_parcel_arrived(tracking_status, substatus):
    shipments = [ship("delivered", lines=(("L1", 2),)), ship(tracking_status, substatus, (("L2", 1),), "1Z0002")]
    status, reason = unified_status_for(order=order(), shipments=shipments)
    assert status == "delivery_issue"
    assert reason == f"UPS 1Z0002: {tracking_status}" + (f" ({substatus})" if substatus else "")


def test_delivered_parcels_with_items_left_is_partially_delivered():
    status, reason = unified_status_for(order=order(), shipments=[ship("delivered", lines=(("L1", 2),))])
    assert (status, reason) == ("partially_delivered", "the parcel is delivered; 1 line item not shipped yet")


def test_partial_quantity_of_a_line_is_still_partially_shipped():
    status, reason = unified_status_for(order=order(), shipments=[ship("in_transit", lines=(("L1", 1), ("L2", 1)))])
    assert (status, reason) == ("partially_shipped", "1 parcel shipped; 1 line item not shipped yet")


def test_lines_without_shipping_or_nothing_fulfillable_never_hold_an_order_back():
    facts = order(lines=(LineFacts("L1", 2, 2, True), LineFacts("GIFT", 1, 1, False), LineFacts("GONE", 3, 0, True)))
    assert unified_status_for(order=facts, shipments=[ship("delivered", lines=(("L1", 2),))])[0] == "delivered"


def test_unknown_requires_shipping_counts_as_needing_shipping():
    facts = order(lines=(LineFacts("L1", 1, 1, None), LineFacts("L2", 1, 1, None)))
    assert unified_status_for(order=facts, shipments=[ship("in_transit", lines=(("L1", 1),))])[0] == "partially_shipped"


def test_shipment_without_lines_carries_the_whole_order():
    assert unified_status_for(order=order(), shipments=[ship("delivered", lines=())])[0] == "delivered"


def test_genstore_fulfilled_covers_lines_shipped_without_tracking():
    facts = order(fulfillment_status="fulfilled")
    assert unified_status_for(order=facts, shipments=[ship("in_transit", lines=(("L1", 2),))])[0] == "in_transit"


def test_out_for_delivery_beats_in_transit_and_pickup_counts_as_at_the_door():
    shipments = [ship("in_transit", lines=(("L1", 2),)), ship("available_for_pickup", lines=(("L2", 1),), number="X2")]
    status, reason = unified_status_for(order=order(), shipments=shipments)
    assert (status, reason) == ("out_for_delivery", "UPS X2: available_for_pickup")


def test_voided_label_does_not_count_as_a_parcel():
    assert unified_status_for(order=order(), shipments=[ship("cancelled")]) == ("unfulfilled", "nothing shipped yet")


def test_awaiting_payment_only_until_something_ships():
    unpaid = order(financial_status="pending")
    assert unified_status_for(order=unpaid, shipments=[ship("in_transit")])[0] == "in_transit"
    assert unified_status_for(order=order(financial_status="authorized"))[0] == "unfulfilled"
    assert unified_status_for(order=order(financial_status="partially_paid")) == (
        "awaiting_payment",
        "payment partially paid",
    )


def test_genstore_fulfillment_oma_does_not_track_stands_in_with_its_shipment_status():
    fulfillments = [
        FulfillmentFacts(tracking_number="LX123", status="success", shipment_status="delivered", lines=WHOLE)
    ]
    assert unified_status_for(order=order(fulfillment_status="fulfilled"), fulfillments=fulfillments) == (
        "delivered",
        "the parcel is delivered",
    )
    delayed = [FulfillmentFacts(tracking_number="LX123", status="success", shipment_status="delayed", lines=WHOLE)]
    assert unified_status_for(order=order(), fulfillments=delayed) == (
        "delivery_issue",
        "Genstore fulfillment LX123: exception (delayed)",
    )


def test_genstore_fulfillment_of_a_tracked_number_defers_to_the_carrier():
    fulfillments = [FulfillmentFacts(tracking_number="1z 0001", status="success", shipment_status="in_transit")]
    assert unified_status_for(order=order(), shipments=[ship("delivered")], fulfillments=fulfillments)[0] == "delivered"


def test_cancelled_genstore_fulfillments_are_ignored_and_untracked_ones_await_tracking():
    dead = [FulfillmentFacts(tracking_number="", status="cancelled", lines=WHOLE)]
    assert unified_status_for(order=order(), fulfillments=dead)[0] == "unfulfilled"
    blank = [FulfillmentFacts(tracking_number="", status="success", lines=WHOLE)]
    assert unified_status_for(order=order(fulfillment_status="fulfilled"), fulfillments=blank) == (
        "awaiting_tracking",
        "the parcel is not scanned by the carrier yet",
    )


def test_reasons_list_at_most_three_parcels():
    shipments = [ship("exception", "lost", lines=(("L1", 1),), number=f"N{i}") for i in range(5)]
    _, reason = unified_status_for(order=order(), shipments=shipments)
    assert reason == "UPS N0: exception (lost), UPS N1: exception (lost), UPS N2: exception (lost) and 2 more"
