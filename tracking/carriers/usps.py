"""USPS Tracking v3 ("Package Tracking and Notification" 3.x): pure request building and response parsing.

Wire format (USPS developer portal OpenAPI, servers https://apis.usps.com/tracking/v3 and the TEM test host
apis-tem.usps.com): `GET /tracking/v3/tracking/{trackingNumber}?expand=DETAIL` with an OAuth client-credentials
bearer token (`POST /oauth2/v3/token`, scope tracking); one number per request. The DETAIL answer is one
`TrackingDetails` object: `status`, `statusCategory`, `statusSummary`, `expectedDeliveryTimeStamp`,
`predictedDeliveryDate`, and `trackingEvents[]` (newest first) with `eventType`, `eventCode` (Publication 199
Appendix G-4), `eventTimestamp` (local), `GMTTimestamp`, `GMTOffset`, `eventCity/State/ZIP/Country` and `name`
(who signed). Booleans often arrive as strings ("true"). Errors: `{"apiVersion", "error": {"code", "message",
"errors": [...]}}` (404 when USPS has no record).

Status: the package's `status` text and `statusCategory`; per event, the `eventCode` table below, then the
`eventType` text.

Times: `GMTTimestamp` is UTC; else `eventTimestamp` with `GMTOffset` ("-05:00" or "-7:00"); else the event's state
or the destination's zone, and as a last resort USPS's home zone America/New_York (documented choice; never UTC).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from urllib.parse import quote

from tracking.carriers.base import CarrierSpec, HttpCall, RateLimit, TrackingEventRecord, TrackingResult
from tracking.carriers.parsing import (
    as_list,
    country_code,
    dig,
    join_location,
    localize,
    match_requested,
    not_found,
    parse_iso,
    parse_iso_date,
    refine,
    roll_up,
    status_from_text,
    text,
)
from tracking.detection.formats import URL_USPS
from tracking.vocabulary import Status, Substatus

CODE = "usps"
HOME_ZONE = "America/New_York"
# USPS's default quota for a new app is 60 requests per hour (carriers.md §4; raise it per account once granted).
DEFAULT_RATE_LIMIT = RateLimit(requests=60, per_seconds=3600.0)

S, U = Status, Substatus
# Publication 199 Appendix G-4 (USPS Domestic Tracking Scan Events), the codes whose meaning is unambiguous.
# Anything else goes through the event's text.
EVENT_CODES: dict[str, tuple[str, str]] = {
    "GX": (S.INFO_RECEIVED, ""),  # Shipping Label Created, USPS Awaiting Item
    "MA": (S.INFO_RECEIVED, ""),  # Manifest Acknowledgment
    "03": (S.IN_TRANSIT, U.PICKED_UP),  # Accept or Pickup (USPS in possession of item)
    "OA": (S.IN_TRANSIT, U.PICKED_UP),  # Accepted at USPS origin facility
    "10": (S.IN_TRANSIT, ""),  # Processed through facility
    "07": (S.IN_TRANSIT, ""),  # Arrival at Unit (Arrived at Post Office)
    "A1": (S.IN_TRANSIT, ""),  # Arrived at USPS regional facility
    "T1": (S.IN_TRANSIT, ""),  # Departed USPS regional facility
    "TL": (S.IN_TRANSIT, ""),  # In transit to next facility
    "NT": (S.IN_TRANSIT, ""),  # In transit, arriving late / no scan
    "SF": (S.IN_TRANSIT, ""),  # Departed Post Office
    "PC": (S.IN_TRANSIT, ""),  # Sorting complete
    "06": (S.IN_TRANSIT, U.FORWARDED),  # Forwarded
    "17": (S.IN_TRANSIT, ""),  # Picked up by shipping partner
    "42": (S.IN_TRANSIT, ""),  # USPS handoff to shipping partner
    "OF": (S.OUT_FOR_DELIVERY, ""),  # Out for Delivery
    "01": (S.DELIVERED, ""),  # Delivered
    "43": (S.DELIVERED, ""),  # Picked up at the Post Office by the addressee
    "14": (S.AVAILABLE_FOR_PICKUP, ""),  # Arrival at pickup point
    "16": (S.AVAILABLE_FOR_PICKUP, ""),  # Available for pickup
    "02": (S.ATTEMPT_FAILED, U.RECIPIENT_UNAVAILABLE),  # Notice Left (no authorized recipient available)
    "51": (S.ATTEMPT_FAILED, U.BUSINESS_CLOSED),  # Business closed
    "52": (S.ATTEMPT_FAILED, U.ACCESS_ISSUE),  # Notice left, receptacle blocked
    "53": (S.ATTEMPT_FAILED, ""),  # Receptacle full / item oversized
    "54": (S.ATTEMPT_FAILED, ""),  # No secure location available
    "55": (S.ATTEMPT_FAILED, U.ACCESS_ISSUE),  # No access to delivery location
    "04": (S.EXCEPTION, U.REFUSED),  # Refused
    "05": (S.EXCEPTION, U.UNDELIVERABLE),  # Undeliverable as addressed
    "08": (S.EXCEPTION, U.MISSORTED),  # Missent
    "15": (S.EXCEPTION, U.MISSORTED),  # Mis-shipped
    "11": (S.EXCEPTION, U.UNDELIVERABLE),  # Dead letter
    "21": (S.EXCEPTION, U.ADDRESS_ISSUE),  # No such number
    "22": (S.EXCEPTION, U.ADDRESS_ISSUE),  # Insufficient address
    "23": (S.EXCEPTION, U.ADDRESS_ISSUE),  # Moved, left no address
    "25": (S.EXCEPTION, U.ADDRESS_ISSUE),  # Addressee unknown
    "26": (S.EXCEPTION, U.ADDRESS_ISSUE),  # Vacant
    "09": (S.RETURN_TO_SENDER, ""),  # Return to sender
    "24": (S.RETURN_TO_SENDER, ""),  # Forward expired
    "27": (S.RETURN_TO_SENDER, ""),  # Unclaimed
    "28": (S.RETURN_TO_SENDER, ""),  # Deceased
    "29": (S.RETURN_TO_SENDER, ""),  # Return to sender, not picked up
    "44": (S.RETURN_TO_SENDER, ""),  # Customer recall
}
# The module's primary raw code -> (status, substatus) table; every carrier module names one STATUS_MAP.
STATUS_MAP = EVENT_CODES
# `statusCategory` of the package: the coarse fallback when `status` says nothing we recognise.
STATUS_CATEGORIES: dict[str, tuple[str, str]] = {
    "pre-shipment": (S.INFO_RECEIVED, ""),
    "pre-transit": (S.INFO_RECEIVED, ""),
    "accepted": (S.IN_TRANSIT, U.PICKED_UP),
    "in transit": (S.IN_TRANSIT, ""),
    "out for delivery": (S.OUT_FOR_DELIVERY, ""),
    "delivered": (S.DELIVERED, ""),
    "available for pickup": (S.AVAILABLE_FOR_PICKUP, ""),
    "delivery attempt": (S.ATTEMPT_FAILED, ""),
    "alert": (S.EXCEPTION, ""),
    "return to sender": (S.RETURN_TO_SENDER, ""),
}


def map_event(code: str, event_type: str) -> tuple[str, str]:
    from_text = status_from_text(event_type)
    # "Delivered, To Original Sender" carries the delivered code 01: the text says it is a completed return.
    if from_text is not None and from_text[0] == S.RETURN_TO_SENDER:
        return from_text
    mapped = EVENT_CODES.get(code.upper()) or from_text
    if mapped is None:
        return S.UNKNOWN, ""
    return refine(mapped[0], mapped[1], event_type)


def map_package_status(status_text: str, category: str) -> tuple[str, str]:
    """The package's status: its `status` sentence first (it is the specific one), then `statusCategory`."""
    mapped = status_from_text(status_text) or STATUS_CATEGORIES.get(category.strip().lower())
    if mapped is None:
        return S.UNKNOWN, ""
    status_value, substatus = mapped
    if status_value == S.DELIVERED and category.strip().lower() == "alert":
        status_value, substatus = S.EXCEPTION, ""
    return refine(status_value, substatus, status_text)


def _event_time(event: object, destination: tuple[str, str]) -> datetime | None:
    gmt = parse_iso(dig(event, "GMTTimestamp"))
    if gmt is not None:  # GMT by definition, with or without the trailing Z
        return gmt.astimezone(UTC) if gmt.tzinfo is not None else gmt.replace(tzinfo=UTC)
    local = parse_iso(dig(event, "eventTimestamp"))
    if local is None:
        return None
    return localize(
        local,
        offset=text(dig(event, "GMTOffset")),
        country=country_code(dig(event, "eventCountry")) or ("US" if text(dig(event, "eventState")) else ""),
        region=text(dig(event, "eventState")),
        fallback_locations=[destination],
        home_zone=HOME_ZONE,
    )


def _event(event: object, destination: tuple[str, str]) -> TrackingEventRecord | None:
    occurred_at = _event_time(event, destination)
    if occurred_at is None:
        return None
    code = text(dig(event, "eventCode"))
    event_type = text(dig(event, "eventType"))
    status_value, substatus = map_event(code, event_type)
    return TrackingEventRecord(
        occurred_at=occurred_at,
        status=status_value,
        substatus=substatus,
        raw_code=code,
        raw_text=event_type,
        location=join_location(
            dig(event, "eventCity"), dig(event, "eventState"), dig(event, "eventZIP"), dig(event, "eventCountry")
        ),
    )


def _estimated_delivery(raw: object, destination: tuple[str, str]) -> datetime | date | None:
    for key in ("expectedDeliveryTimeStamp", "guaranteedDeliveryTimeStamp", "predictedDeliveryTimeStamp"):
        moment = parse_iso(dig(raw, key))
        if moment is not None:
            if moment.tzinfo is None and moment.time() == datetime.min.time():
                return moment.date()  # a date without a time of day
            return localize(moment, fallback_locations=[destination], home_zone=HOME_ZONE)
    predicted = parse_iso_date(dig(raw, "predictedDeliveryDate")) or parse_iso_date(dig(raw, "expectedDeliveryDate"))
    return predicted


def _not_found_message(raw: object) -> tuple[str, str] | None:
    error = dig(raw, "error")
    if isinstance(error, dict):
        details = [text(dig(entry, "detail")) or text(dig(entry, "title")) for entry in as_list(error.get("errors"))]
        message = "; ".join(detail for detail in details if detail) or text(error.get("message"))
        return text(error.get("code")), message
    if isinstance(error, str):  # OAuth-style error body
        return error, text(dig(raw, "error_description"))
    return None


def parse_response(raw: object, numbers: Sequence[str]) -> list[TrackingResult]:
    """A decoded USPS answer for one number -> [TrackingResult]."""
    numbers = list(numbers)
    asked = numbers[0] if numbers else text(dig(raw, "trackingNumber"))
    failure = _not_found_message(raw)
    has_package = isinstance(raw, dict) and bool(text(raw.get("trackingNumber")) or raw.get("trackingEvents"))
    if failure is not None or not has_package or not isinstance(raw, dict):  # has_package: raw is a dict
        code, message = failure or ("", "No tracking information")
        return [not_found(tracking_number=number, carrier=CODE, error=message, raw_code=code) for number in numbers]

    number = match_requested(text(raw.get("trackingNumber")) or asked, numbers)
    destination = (country_code(raw.get("destinationCountryCode")) or "US", text(raw.get("destinationState")))
    events = [
        record for event in as_list(raw.get("trackingEvents")) if (record := _event(event, destination)) is not None
    ]
    status_text, category = text(raw.get("status")), text(raw.get("statusCategory"))
    current = None
    if status_text or category:
        status_value, substatus = map_package_status(status_text, category)
        current = (status_value, substatus, category, status_text)
    delivered_event = next(
        (event for event in as_list(raw.get("trackingEvents")) if text(dig(event, "eventCode")) in {"01", "43"}), None
    )
    signed_by = text(dig(delivered_event, "name")) if delivered_event else ""
    result = roll_up(
        tracking_number=number,
        carrier=CODE,
        events=events,
        current=current,
        estimated_delivery=_estimated_delivery(raw, destination),
        signed_by=signed_by,
    )
    return [result]


def build_calls(numbers: Sequence[str]) -> list[HttpCall]:
    return [
        HttpCall(
            method="GET",
            path=f"/tracking/v3/tracking/{quote(number, safe='')}",
            numbers=(number,),
            params={"expand": "DETAIL"},
        )
        for number in numbers
    ]


def tracking_url(number: str) -> str:
    return URL_USPS.format(number=quote(number, safe=""))


SPEC = CarrierSpec(
    code=CODE,
    display_name="USPS",
    default_base_url="https://apis.usps.com",
    test_base_urls=("https://apis-tem.usps.com",),
    auth="oauth_client_credentials",
    batch_size=1,
    default_rate_limit=DEFAULT_RATE_LIMIT,
    build_calls=build_calls,
    parse=parse_response,
    token_path="/oauth2/v3/token",
    tracking_url=tracking_url,
)
