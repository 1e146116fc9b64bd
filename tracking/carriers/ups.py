"""UPS Track API v1: pure request building and response parsing.

Wire format (UPS-API/api-documentation Tracking.yaml, MIT): `GET /api/track/v1/details/{inquiryNumber}` with an
OAuth client-credentials bearer token (`POST /security/v1/oauth/token`) and the `transId` / `transactionSrc`
headers; one number per request. The answer is `trackResponse.shipment[].package[]`, each package with
`currentStatus`, `activity[]` (newest first), `deliveryDate[]` (SDD scheduled, RDD rescheduled, DEL delivered),
`deliveryTime`, `deliveryInformation.receivedBy` and `packageAddress[]`. Not found: HTTP 404 with
`response.errors[]` (code TW0001), or a 200 whose shipment carries `warnings[]`.

Status: `status.statusCode` (3 digits, UPS "Status/Description Codes" appendix) is precise; `status.type`
(D delivered, I in transit or out for delivery, M billing information received, MV voided, X exception, P pickup)
is the fallback; the description text decides between in transit and out for delivery when only `type` is known.

Times: an activity has its local `date` (YYYYMMDD) and `time` (HHMMSS), and in newer responses `gmtDate`,
`gmtTime` (seen as "15:44:34" and as "74700") and `gmtOffset` ("-07:00"). We use local time + gmtOffset, else
gmtDate + gmtTime as UTC. Older responses have neither (UPS-API issue #38): then the activity's location decides the
zone (US state, Canadian province, country), then the package's destination, then origin, and as a last resort
UPS's home zone America/New_York (documented choice; never UTC).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from urllib.parse import quote

from tracking.carriers.base import CarrierSpec, HttpCall, RateLimit, TrackingEventRecord, TrackingResult
from tracking.carriers.parsing import (
    as_list,
    dig,
    join_location,
    localize,
    match_requested,
    missing_results,
    not_found,
    refine,
    roll_up,
    status_from_text,
    text,
)
from tracking.detection.formats import URL_UPS
from tracking.numbers import normalize
from tracking.vocabulary import Status, Substatus

CODE = "ups"
HOME_ZONE = "America/New_York"

S, U = Status, Substatus
# UPS "Status/Description Codes" appendix (Track API reference; copy in karrio ups/vendors) -> (status, substatus).
STATUS_CODES: dict[int, tuple[str, str]] = {
    0: (S.UNKNOWN, ""),  # Status Not Available
    3: (S.INFO_RECEIVED, ""),  # Shipment Ready for UPS
    5: (S.IN_TRANSIT, ""),  # On the Way
    6: (S.OUT_FOR_DELIVERY, ""),
    7: (S.CANCELLED, ""),  # Shipment Information Voided
    10: (S.IN_TRANSIT, ""),
    11: (S.DELIVERED, ""),
    12: (S.IN_TRANSIT, U.CUSTOMS),  # Clearance in Progress
    13: (S.EXCEPTION, ""),
    14: (S.IN_TRANSIT, U.CUSTOMS_RELEASED),  # Clearance Completed
    16: (S.IN_TRANSIT, ""),  # In Warehouse
    17: (S.AVAILABLE_FOR_PICKUP, ""),  # Held for Customer Pickup
    18: (S.IN_TRANSIT, ""),  # Delivery Change Requested: Hold for Pickup
    19: (S.EXCEPTION, U.HELD),  # Held for Future Delivery
    20: (S.EXCEPTION, U.HELD),
    21: (S.OUT_FOR_DELIVERY, ""),
    22: (S.ATTEMPT_FAILED, ""),  # First Attempt Made
    23: (S.ATTEMPT_FAILED, ""),
    24: (S.ATTEMPT_FAILED, ""),  # Final Attempt Made
    25: (S.IN_TRANSIT, ""),
    26: (S.DELIVERED, ""),  # Delivered by Local Post Office
    27: (S.IN_TRANSIT, ""),  # Delivery Address Change Requested
    28: (S.IN_TRANSIT, U.FORWARDED),  # Delivery Address Changed
    29: (S.EXCEPTION, ""),  # Exception: Action Required
    30: (S.EXCEPTION, ""),  # Local Post Office Exception
    32: (S.EXCEPTION, U.WEATHER),  # Adverse Weather May Cause Delay
    33: (S.RETURN_TO_SENDER, ""),  # Return to Sender Requested
    34: (S.RETURN_TO_SENDER, U.RETURNED_COMPLETED),  # Returned to Sender
    35: (S.RETURN_TO_SENDER, ""),
    36: (S.RETURN_TO_SENDER, ""),
    37: (S.OUT_FOR_DELIVERY, ""),
    38: (S.IN_TRANSIT, U.PICKED_UP),  # Picked Up by UPS
    39: (S.IN_TRANSIT, ""),
    40: (S.AVAILABLE_FOR_PICKUP, ""),  # Ready for Customer Pickup
    41: (S.IN_TRANSIT, ""),
    42: (S.IN_TRANSIT, ""),
    43: (S.INFO_RECEIVED, ""),  # Voided Pickup: the parcel was not collected
    44: (S.IN_TRANSIT, ""),  # On the Way to UPS
    45: (S.IN_TRANSIT, ""),
    46: (S.EXCEPTION, U.DELAYED),
    47: (S.IN_TRANSIT, ""),
    48: (S.EXCEPTION, U.DELAYED),
    49: (S.EXCEPTION, U.DELAYED),  # Delay: Action Required
    50: (S.EXCEPTION, U.ADDRESS_ISSUE),  # Address Information Required
    51: (S.EXCEPTION, U.WEATHER),  # Delay: Emergency Situation or Severe Weather
    52: (S.EXCEPTION, U.WEATHER),
    53: (S.EXCEPTION, U.WEATHER),
    54: (S.IN_TRANSIT, ""),  # Delivery Change Requested
    55: (S.IN_TRANSIT, U.RESCHEDULED),  # Rescheduled Delivery
    56: (S.IN_TRANSIT, ""),
    57: (S.IN_TRANSIT, ""),  # On the Way to a Local UPS Access Point
    58: (S.EXCEPTION, U.CUSTOMS_HOLD),  # Clearance Information Required
    59: (S.EXCEPTION, U.DAMAGED),  # Damage Reported
    60: (S.ATTEMPT_FAILED, ""),  # Delivery Attempted
    61: (S.ATTEMPT_FAILED, U.RECIPIENT_UNAVAILABLE),  # Adult Signature Required
    62: (S.ATTEMPT_FAILED, U.PAYMENT_REQUIRED),  # Funds Required
    63: (S.IN_TRANSIT, ""),
    64: (S.EXCEPTION, U.REFUSED),  # Delivery Refused
    65: (S.INFO_RECEIVED, ""),  # Pickup Attempted
    66: (S.ATTEMPT_FAILED, ""),  # Post Office Delivery Attempted
    67: (S.RETURN_TO_SENDER, ""),  # Returned to Sender by Post Office
    68: (S.EXCEPTION, U.LOST),  # Sent to Lost and Found
    69: (S.EXCEPTION, U.UNDELIVERABLE),  # Unable to Deliver
    70: (S.IN_TRANSIT, ""),  # Package not at UPS Access Point yet
    71: (S.IN_TRANSIT, ""),  # Preparing for Delivery
    72: (S.OUT_FOR_DELIVERY, ""),  # Loaded on Delivery Vehicle
    73: (S.IN_TRANSIT, ""),
    74: (S.IN_TRANSIT, ""),
    75: (S.IN_TRANSIT, ""),  # Scheduled for Delivery
    76: (S.EXCEPTION, ""),  # UPS Delivery Partner Exception
    77: (S.INFO_RECEIVED, ""),  # Scheduled for Pickup Today
    78: (S.OUT_FOR_DELIVERY, ""),  # Your Driver is Arriving Soon!
    79: (S.INFO_RECEIVED, ""),  # Order Processed: In Transit to UPS
    80: (S.INFO_RECEIVED, ""),  # Order Processed: Ready for UPS
    81: (S.RETURN_TO_SENDER, U.DAMAGED),  # Returned - Damage Reported
    82: (S.IN_TRANSIT, ""),
    83: (S.EXCEPTION, U.HELD),
    84: (S.IN_TRANSIT, U.CUSTOMS_RELEASED),  # Cleared
    85: (S.EXCEPTION, U.PAYMENT_REQUIRED),  # Held for COD Payment
    86: (S.EXCEPTION, U.DELAYED),
    87: (S.IN_TRANSIT, ""),
    88: (S.UNKNOWN, ""),  # Test
    89: (S.OUT_FOR_DELIVERY, ""),
    90: (S.EXCEPTION, U.DELAYED),
    91: (S.OUT_FOR_DELIVERY, ""),
    92: (S.IN_TRANSIT, U.CUSTOMS),
    93: (S.EXCEPTION, U.DELAYED),  # Premier Recovery In Progress
    94: (S.IN_TRANSIT, ""),  # Premier Recovery Completed
    95: (S.IN_TRANSIT, U.RESCHEDULED),  # Additional Attempt Requested
    96: (S.IN_TRANSIT, U.FORWARDED),  # Address Change Confirmed
    97: (S.IN_TRANSIT, ""),
    98: (S.IN_TRANSIT, ""),
    99: (S.IN_TRANSIT, ""),
    100: (S.IN_TRANSIT, ""),  # Hold at UPS Access Point Confirmed
    101: (S.IN_TRANSIT, ""),
    102: (S.IN_TRANSIT, ""),
    103: (S.IN_TRANSIT, ""),
    104: (S.EXCEPTION, U.HELD),  # Hold for Instructions Confirmed
    105: (S.EXCEPTION, U.HELD),
    106: (S.IN_TRANSIT, ""),  # Hold for Pickup Confirmed
    107: (S.IN_TRANSIT, ""),
    108: (S.IN_TRANSIT, ""),
    109: (S.IN_TRANSIT, ""),
    110: (S.IN_TRANSIT, ""),
    111: (S.IN_TRANSIT, ""),
    112: (S.IN_TRANSIT, ""),
    113: (S.IN_TRANSIT, ""),
    114: (S.IN_TRANSIT, ""),  # Request Canceled
    115: (S.IN_TRANSIT, U.RESCHEDULED),
    116: (S.IN_TRANSIT, U.RESCHEDULED),
    117: (S.RETURN_TO_SENDER, ""),
    118: (S.RETURN_TO_SENDER, ""),  # Return to Sender Confirmed
    119: (S.RETURN_TO_SENDER, ""),
    120: (S.IN_TRANSIT, ""),
    121: (S.IN_TRANSIT, ""),
    122: (S.IN_TRANSIT, ""),
    123: (S.EXCEPTION, U.CUSTOMS_HOLD),  # Pending Release From Non-UPS Broker
    124: (S.EXCEPTION, U.CUSTOMS_HOLD),  # Clearance Information Needed
    125: (S.EXCEPTION, U.CUSTOMS_HOLD),
    126: (S.EXCEPTION, U.CUSTOMS_HOLD),  # Pending Government Agency Release
    127: (S.IN_TRANSIT, ""),  # Investigation Closed
    128: (S.IN_TRANSIT, ""),
    129: (S.EXCEPTION, U.DELAYED),  # Investigation Opened
    130: (S.EXCEPTION, ""),  # Claim in Progress
    131: (S.INFO_RECEIVED, ""),  # Final Pickup Attempted
    132: (S.EXCEPTION, U.SECURITY),  # Airport Security Delay
    133: (S.INFO_RECEIVED, ""),  # Return Label Left With Customer
    134: (S.IN_TRANSIT, U.CUSTOMS_RELEASED),  # Cleared Import Customs
    135: (S.INFO_RECEIVED, ""),  # Second Pickup Attempted
    136: (S.IN_TRANSIT, U.RESCHEDULED),
    137: (S.IN_TRANSIT, ""),
    138: (S.IN_TRANSIT, ""),
    139: (S.EXCEPTION, U.ACCESS_ISSUE),  # Security Access Required
    140: (S.EXCEPTION, U.LOST),  # Claim Paid
    141: (S.EXCEPTION, U.CUSTOMS_HOLD),  # Incomplete Documentation Received
    142: (S.EXCEPTION, ""),  # Claim Voided
    143: (S.DELIVERED, ""),  # Delivered to Agent
    144: (S.AVAILABLE_FOR_PICKUP, ""),  # Delivered to Post Office for Pickup
    145: (S.ATTEMPT_FAILED, ""),
    146: (S.OUT_FOR_DELIVERY, ""),
    147: (S.EXCEPTION, U.DESTROYED),  # Seized by Law Enforcement
    148: (S.UNKNOWN, ""),  # Package Information Unavailable
    149: (S.EXCEPTION, U.DESTROYED),  # Prohibited Contents, Package Destroyed
    153: (S.IN_TRANSIT, ""),  # Updated Delivery Time
    154: (S.IN_TRANSIT, ""),  # Updated Delivery Date
    155: (S.DELIVERED, ""),  # Delivery Photo (taken at delivery)
    156: (S.DELIVERED, ""),  # Commercial Inside Release
    157: (S.INFO_RECEIVED, ""),
    158: (S.IN_TRANSIT, ""),
    159: (S.IN_TRANSIT, ""),
    160: (S.IN_TRANSIT, U.PICKED_UP),  # We Have Your Package
    161: (S.AVAILABLE_FOR_PICKUP, ""),  # Delivered to UPS Access Point
    162: (S.OUT_FOR_DELIVERY, ""),
    163: (S.UNKNOWN, ""),
    164: (S.IN_TRANSIT, ""),
    165: (S.IN_TRANSIT, ""),
    166: (S.INFO_RECEIVED, ""),  # Shipment Ready for Roadie
    167: (S.IN_TRANSIT, U.PICKED_UP),  # Dropped off at UPS Store by Customer
    168: (S.IN_TRANSIT, U.PICKED_UP),
    169: (S.IN_TRANSIT, U.PICKED_UP),
}
# The module's primary raw code -> (status, substatus) table; every carrier module names one STATUS_MAP.
STATUS_MAP = STATUS_CODES
# UPS "Package Activity Types" appendix: the coarse fallback.
ACTIVITY_TYPES: dict[str, tuple[str, str]] = {
    "D": (S.DELIVERED, ""),
    "I": (S.IN_TRANSIT, ""),  # "In Transit, Out for Delivery": the text decides
    "M": (S.INFO_RECEIVED, ""),  # Billing Information Received
    "MV": (S.CANCELLED, ""),  # Billing Information Voided
    "X": (S.EXCEPTION, ""),
    "P": (S.IN_TRANSIT, U.PICKED_UP),
    "DO": (S.IN_TRANSIT, ""),  # freight: delivered to origin CFS
    "DD": (S.IN_TRANSIT, ""),  # freight: delivered to destination CFS
    "W": (S.IN_TRANSIT, ""),  # freight warehousing
    "U": (S.IN_TRANSIT, ""),  # Track Alert updates
    "NA": (S.UNKNOWN, ""),
}
_TYPE_REFINEMENTS: dict[str, frozenset[str]] = {
    "I": frozenset({S.OUT_FOR_DELIVERY, S.AVAILABLE_FOR_PICKUP}),
    "X": frozenset({S.ATTEMPT_FAILED, S.RETURN_TO_SENDER, S.AVAILABLE_FOR_PICKUP, S.CANCELLED}),
    "D": frozenset({S.RETURN_TO_SENDER}),
}
NOT_FOUND_CODES = frozenset({"TW0001", "TV1002", "TW0002", "TW0003"})

# UPS publishes no request-rate limit for the Track API: a conservative default, overridable per account.
DEFAULT_RATE_LIMIT = RateLimit(requests=5, per_seconds=1.0)


def map_status(status: object) -> tuple[str, str, str, str]:
    """A UPS `status` object -> (status, substatus, raw_code, raw_text)."""
    raw_status_code = text(dig(status, "statusCode"))
    code = text(dig(status, "code"))
    if not raw_status_code and code.isdigit():  # currentStatus often carries the 3-digit code as `code`
        raw_status_code, code = code, ""
    activity_type = text(dig(status, "type")).upper()
    description = text(dig(status, "description"))
    raw_code = "/".join(part for part in (activity_type, code, raw_status_code) if part)
    mapped: tuple[str, str] | None = None
    if raw_status_code.isdigit():
        mapped = STATUS_CODES.get(int(raw_status_code))
    if mapped is None and activity_type in ACTIVITY_TYPES:
        mapped = ACTIVITY_TYPES[activity_type]
        # The type is coarse ("I" is in transit *or* out for delivery; "X" any exception): the text may say more.
        from_text = status_from_text(description)
        if from_text is not None and from_text[0] in _TYPE_REFINEMENTS.get(activity_type, frozenset()):
            mapped = from_text
    if mapped is None:
        mapped = status_from_text(description) or (S.UNKNOWN, "")
    status_value, substatus = refine(mapped[0], mapped[1], description)
    return status_value, substatus, raw_code, description


def _parse_date(value: str) -> date | None:
    digits = value.replace("-", "")
    if len(digits) != 8 or not digits.isdigit():
        return None
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return None


def _parse_time(value: str) -> tuple[int, int, int] | None:
    """'164340', '74700' (no leading zero), '15:44:34', '1544' -> (h, m, s)."""
    digits = value.replace(":", "")
    if not digits.isdigit() or not 3 <= len(digits) <= 6:
        return None
    digits = digits.zfill(6) if len(digits) in (5, 6) else digits.zfill(4) + "00"
    hours, minutes, seconds = int(digits[:2]), int(digits[2:4]), int(digits[4:6])
    if hours > 23 or minutes > 59 or seconds > 59:
        return None
    return hours, minutes, seconds


def _combine(day: date | None, clock: tuple[int, int, int] | None) -> datetime | None:
    if day is None:
        return None
    hours, minutes, seconds = clock or (0, 0, 0)
    return datetime(day.year, day.month, day.day, hours, minutes, seconds)  # noqa: DTZ001 - localized by the caller


def _package_locations(package: object) -> list[tuple[str, str]]:
    """(country, state) of the destination then the origin, for activities without a usable location."""
    by_type: dict[str, tuple[str, str]] = {}
    for entry in as_list(dig(package, "packageAddress")):
        kind = text(dig(entry, "type")).upper()
        address = dig(entry, "address")
        by_type[kind] = (
            text(dig(address, "countryCode")) or text(dig(address, "country")),
            text(dig(address, "stateProvince")),
        )
    return [by_type[kind] for kind in ("DESTINATION", "DELIVERY", "ORIGIN") if kind in by_type]


def _activity_time(activity: object, fallback_locations: Sequence[tuple[str, str]]) -> datetime | None:
    local = _combine(_parse_date(text(dig(activity, "date"))), _parse_time(text(dig(activity, "time"))))
    offset = text(dig(activity, "gmtOffset"))
    address = dig(activity, "location", "address")
    if local is not None and offset:
        return localize(local, offset=offset, home_zone=HOME_ZONE)
    gmt = _combine(_parse_date(text(dig(activity, "gmtDate"))), _parse_time(text(dig(activity, "gmtTime"))))
    if gmt is not None and text(dig(activity, "gmtTime")):
        return gmt.replace(tzinfo=UTC)
    if local is None:
        return None
    return localize(
        local,
        country=text(dig(address, "countryCode")) or text(dig(address, "country")),
        region=text(dig(address, "stateProvince")),
        fallback_locations=fallback_locations,
        home_zone=HOME_ZONE,
    )


def _activity_event(activity: object, fallback_locations: Sequence[tuple[str, str]]) -> TrackingEventRecord | None:
    occurred_at = _activity_time(activity, fallback_locations)
    if occurred_at is None:
        return None
    status_value, substatus, raw_code, raw_text = map_status(dig(activity, "status"))
    address = dig(activity, "location", "address")
    location = join_location(
        dig(address, "city"), dig(address, "stateProvince"), dig(address, "postalCode"), dig(address, "countryCode")
    )
    return TrackingEventRecord(
        occurred_at=occurred_at,
        status=status_value,
        substatus=substatus,
        raw_code=raw_code,
        raw_text=raw_text,
        location=location,
    )


def _estimated_delivery(package: object, fallback_locations: Sequence[tuple[str, str]]) -> datetime | date | None:
    """RDD (rescheduled) over SDD (scheduled); with the window's end time when UPS gives one, else the date."""
    dates = {
        text(dig(entry, "type")).upper(): _parse_date(text(dig(entry, "date")))
        for entry in as_list(dig(package, "deliveryDate"))
    }
    day = dates.get("RDD") or dates.get("SDD")
    if day is None:
        return None
    delivery_time = dig(package, "deliveryTime")
    if text(dig(delivery_time, "type")).upper() in {"EDW", "CDW", "IDW", "CMT", "EOD"}:
        clock = _parse_time(text(dig(delivery_time, "endTime")))
        local = _combine(day, clock) if clock else None
        if local is not None:
            return localize(local, fallback_locations=fallback_locations, home_zone=HOME_ZONE)
    return day


def _delivered_at(package: object, fallback_locations: Sequence[tuple[str, str]]) -> datetime | None:
    """From UPS's DEL date and time (destination's local time) when no delivered activity carries it."""
    dates = {
        text(dig(entry, "type")).upper(): _parse_date(text(dig(entry, "date")))
        for entry in as_list(dig(package, "deliveryDate"))
    }
    delivery_time = dig(package, "deliveryTime")
    clock = (
        _parse_time(text(dig(delivery_time, "endTime"))) if text(dig(delivery_time, "type")).upper() == "DEL" else None
    )
    local = _combine(dates.get("DEL"), clock)
    if local is None:
        return None
    return localize(local, fallback_locations=fallback_locations, home_zone=HOME_ZONE)


def _parse_package(package: object, number: str) -> TrackingResult:
    fallback_locations = _package_locations(package)
    events = [
        event
        for activity in as_list(dig(package, "activity"))
        if (event := _activity_event(activity, fallback_locations)) is not None
    ]
    current_status = dig(package, "currentStatus")
    current = map_status(current_status) if isinstance(current_status, dict) and current_status else None
    result = roll_up(
        tracking_number=number,
        carrier=CODE,
        events=events,
        current=current,
        estimated_delivery=_estimated_delivery(package, fallback_locations),
        signed_by=text(dig(package, "deliveryInformation", "receivedBy")),
    )
    if result.status == S.DELIVERED and result.delivered_at is None:
        delivered_at = _delivered_at(package, fallback_locations)
        if delivered_at is not None:
            result = replace(result, delivered_at=delivered_at)
    return result


def _errors_text(errors: object) -> tuple[str, str]:
    entries = as_list(errors)
    codes = [text(dig(entry, "code")) for entry in entries]
    messages = [text(dig(entry, "message")) for entry in entries]
    return ",".join(code for code in codes if code), "; ".join(message for message in messages if message)


def parse_response(raw: object, numbers: Sequence[str]) -> list[TrackingResult]:
    """A decoded Track API answer (one inquiry number) -> one TrackingResult per package asked for."""
    numbers = list(numbers)
    errors = dig(raw, "response", "errors")
    if errors:
        code, message = _errors_text(errors)
        return [not_found(tracking_number=number, carrier=CODE, error=message, raw_code=code) for number in numbers]

    results: list[TrackingResult] = []
    for shipment in as_list(dig(raw, "trackResponse", "shipment")):
        inquiry = text(dig(shipment, "inquiryNumber"))
        packages = [package for package in as_list(dig(shipment, "package")) if isinstance(package, dict)]
        if not packages:
            code, message = _errors_text(dig(shipment, "warnings"))
            number = match_requested(inquiry, numbers) if inquiry else (numbers[0] if numbers else "")
            results.append(not_found(tracking_number=number, carrier=CODE, error=message, raw_code=code))
            continue
        wanted = {normalize(number) for number in numbers} | ({normalize(inquiry)} if inquiry else set())
        # A multi-piece shipment lists every package: keep the ones asked for (all of them if none matches).
        chosen = [p for p in packages if normalize(text(dig(p, "trackingNumber"))) in wanted] or packages[:1]
        for package in chosen:
            number = match_requested(text(dig(package, "trackingNumber")) or inquiry, numbers)
            results.append(_parse_package(package, number))
    return missing_results(results, numbers, carrier=CODE, error="Tracking Information Not Found")


def build_calls(numbers: Sequence[str]) -> list[HttpCall]:
    return [
        HttpCall(
            method="GET",
            path=f"/api/track/v1/details/{quote(number, safe='')}",
            numbers=(number,),
            params={"locale": "en_US", "returnSignature": "false", "returnMilestones": "false", "returnPOD": "false"},
            # transId must be unique per request (UPS uses it to trace a call); transactionSrc names the caller.
            headers={"transId": uuid.uuid4().hex, "transactionSrc": "oma"},
        )
        for number in numbers
    ]


def tracking_url(number: str) -> str:
    return URL_UPS.format(number=quote(number, safe=""))


SPEC = CarrierSpec(
    code=CODE,
    display_name="UPS",
    default_base_url="https://onlinetools.ups.com",
    test_base_urls=("https://wwwcie.ups.com",),
    auth="oauth_client_credentials",
    batch_size=1,
    default_rate_limit=DEFAULT_RATE_LIMIT,
    build_calls=build_calls,
    parse=parse_response,
    token_path="/security/v1/oauth/token",
    tracking_url=tracking_url,
)
