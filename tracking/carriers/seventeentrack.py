"""17TRACK API v2.2 (the long tail: every carrier without its own module): pure request building and parsing.

Wire format (17TRACK API v2.2 documentation, api.17track.net): header `17token`; `POST /track/v2.2/register` and
`POST /track/v2.2/gettrackinfo`, each with a JSON list of at most 40 `{"number": ...}` items (the carrier is
auto-detected when omitted). A number must be registered before gettrackinfo answers for it. Answers are
`{"code": 0, "data": {"accepted": [...], "rejected": [{"number", "error": {"code", "message"}}]}}`; an accepted
gettrackinfo item has `track_info` with `latest_status` {status, sub_status}, `time_metrics.estimated_delivery_date`
{from, to} and `tracking.providers[].events[]` ({time_iso, time_utc, time_raw, description, location, stage,
sub_status, address}).

Status: 17TRACK's sub-status (30 values, e.g. InTransit_CustomsProcessing, Exception_Returning) maps one to one to
our (status, substatus); the main status is the fallback, then the event's `stage`, then its text.

Times: `time_utc` is UTC; else `time_iso` with its offset; else `time_raw` date + time + timezone; else the
event's country, the recipient's country, and as a last resort 17TRACK's home zone Asia/Shanghai (documented
choice; never UTC).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from tracking.carriers.base import CarrierSpec, HttpCall, RateLimit, TrackingEventRecord, TrackingResult
from tracking.carriers.parsing import (
    as_list,
    country_code,
    dig,
    join_location,
    localize,
    match_requested,
    missing_results,
    not_found,
    parse_iso,
    refine,
    roll_up,
    status_from_text,
    text,
)
from tracking.detection.formats import URL_17TRACK
from tracking.vocabulary import Status, Substatus

CODE = "17track"
HOME_ZONE = "Asia/Shanghai"
BATCH_SIZE = 40  # register and gettrackinfo: at most 40 numbers per request
DEFAULT_RATE_LIMIT = RateLimit(requests=3, per_seconds=1.0)  # 3 requests per second per token

S, U = Status, Substatus
# 17TRACK v2.2 sub-status -> (status, substatus).
SUB_STATUSES: dict[str, tuple[str, str]] = {
    "NotFound_Other": (S.PENDING, ""),
    "NotFound_InvalidCode": (S.UNKNOWN, ""),
    "InfoReceived": (S.INFO_RECEIVED, ""),
    "InTransit_PickedUp": (S.IN_TRANSIT, U.PICKED_UP),
    "InTransit_Other": (S.IN_TRANSIT, ""),
    "InTransit_Departure": (S.IN_TRANSIT, ""),
    "InTransit_Arrival": (S.IN_TRANSIT, ""),
    "InTransit_TransportArrived": (S.IN_TRANSIT, ""),
    "InTransit_CustomsProcessing": (S.IN_TRANSIT, U.CUSTOMS),
    "InTransit_CustomsReleased": (S.IN_TRANSIT, U.CUSTOMS_RELEASED),
    "InTransit_CustomsRequiringInformation": (S.EXCEPTION, U.CUSTOMS_HOLD),
    "Expired_Other": (S.EXPIRED, ""),
    "AvailableForPickup_Other": (S.AVAILABLE_FOR_PICKUP, ""),
    "OutForDelivery_Other": (S.OUT_FOR_DELIVERY, ""),
    "DeliveryFailure_Other": (S.ATTEMPT_FAILED, ""),
    "DeliveryFailure_NoBody": (S.ATTEMPT_FAILED, U.RECIPIENT_UNAVAILABLE),
    "DeliveryFailure_Security": (S.ATTEMPT_FAILED, U.SECURITY),
    "DeliveryFailure_Rejected": (S.ATTEMPT_FAILED, U.REFUSED),
    "DeliveryFailure_InvalidAddress": (S.ATTEMPT_FAILED, U.ADDRESS_ISSUE),
    "Delivered_Other": (S.DELIVERED, ""),
    "Exception_Other": (S.EXCEPTION, ""),
    "Exception_Returning": (S.RETURN_TO_SENDER, ""),
    "Exception_Returned": (S.RETURN_TO_SENDER, U.RETURNED_COMPLETED),
    "Exception_NoBody": (S.EXCEPTION, U.RECIPIENT_UNAVAILABLE),
    "Exception_Security": (S.EXCEPTION, U.SECURITY),
    "Exception_Damage": (S.EXCEPTION, U.DAMAGED),
    "Exception_Rejected": (S.EXCEPTION, U.REFUSED),
    "Exception_Delayed": (S.EXCEPTION, U.DELAYED),
    "Exception_Lost": (S.EXCEPTION, U.LOST),
    "Exception_Destroyed": (S.EXCEPTION, U.DESTROYED),
    "Exception_Cancel": (S.CANCELLED, ""),
}
# The module's primary raw code -> (status, substatus) table; every carrier module names one STATUS_MAP.
STATUS_MAP = SUB_STATUSES
MAIN_STATUSES: dict[str, tuple[str, str]] = {
    "NotFound": (S.PENDING, ""),
    "InfoReceived": (S.INFO_RECEIVED, ""),
    "InTransit": (S.IN_TRANSIT, ""),
    "Expired": (S.EXPIRED, ""),
    "AvailableForPickup": (S.AVAILABLE_FOR_PICKUP, ""),
    "OutForDelivery": (S.OUT_FOR_DELIVERY, ""),
    "DeliveryFailure": (S.ATTEMPT_FAILED, ""),
    "Delivered": (S.DELIVERED, ""),
    "Exception": (S.EXCEPTION, ""),
}
# Milestone key stages an event may carry as `stage`.
STAGES: dict[str, tuple[str, str]] = {
    "InfoReceived": (S.INFO_RECEIVED, ""),
    "PickedUp": (S.IN_TRANSIT, U.PICKED_UP),
    "Departure": (S.IN_TRANSIT, ""),
    "Arrival": (S.IN_TRANSIT, ""),
    "AvailableForPickup": (S.AVAILABLE_FOR_PICKUP, ""),
    "OutForDelivery": (S.OUT_FOR_DELIVERY, ""),
    "Delivered": (S.DELIVERED, ""),
    "Returning": (S.RETURN_TO_SENDER, ""),
    "Returned": (S.RETURN_TO_SENDER, U.RETURNED_COMPLETED),
}
# Rejected-item error codes whose meaning is "nothing yet" rather than a refusal.
NOT_REGISTERED = -18019902  # the number must be registered first
NO_INFORMATION_YET = -18019909  # registered, no tracking information at this time


def map_status(sub_status: str, main_status: str = "", *texts: str) -> tuple[str, str]:
    mapped = (
        SUB_STATUSES.get(sub_status) or MAIN_STATUSES.get(main_status) or MAIN_STATUSES.get(sub_status.split("_", 1)[0])
    )
    if mapped is None:
        mapped = status_from_text(*texts) or (S.UNKNOWN, "")
    return refine(mapped[0], mapped[1], *texts)


def _event_time(event: object, fallbacks: Sequence[tuple[str, str]]) -> datetime | None:
    for key in ("time_utc", "time_iso"):
        moment = parse_iso(dig(event, key))
        if moment is not None and moment.tzinfo is not None:
            return localize(moment, home_zone=HOME_ZONE)
    raw_date, raw_time = text(dig(event, "time_raw", "date")), text(dig(event, "time_raw", "time"))
    local = parse_iso(f"{raw_date}T{raw_time or '00:00:00'}") if raw_date else parse_iso(dig(event, "time_iso"))
    if local is None:
        return None
    return localize(
        local,
        offset=text(dig(event, "time_raw", "timezone")),
        country=country_code(dig(event, "address", "country")),
        region=text(dig(event, "address", "state")),
        fallback_locations=fallbacks,
        home_zone=HOME_ZONE,
    )


def _event(event: object, fallbacks: Sequence[tuple[str, str]]) -> TrackingEventRecord | None:
    occurred_at = _event_time(event, fallbacks)
    if occurred_at is None:
        return None
    sub_status = text(dig(event, "sub_status"))
    stage = text(dig(event, "stage"))
    description = text(dig(event, "description"))
    if sub_status:
        status_value, substatus = map_status(sub_status, "", description)
    elif stage in STAGES:
        status_value, substatus = refine(*STAGES[stage], description)
    else:
        status_value, substatus = map_status("", "", description)
    address = dig(event, "address")
    location = text(dig(event, "location")) or join_location(
        dig(address, "city"), dig(address, "state"), dig(address, "postal_code"), dig(address, "country")
    )
    return TrackingEventRecord(
        occurred_at=occurred_at,
        status=status_value,
        substatus=substatus,
        raw_code=sub_status or stage,
        raw_text=description,
        location=location,
    )


def _estimated_delivery(track_info: object, fallbacks: Sequence[tuple[str, str]]) -> datetime | date | None:
    window = dig(track_info, "time_metrics", "estimated_delivery_date")
    for edge in ("to", "from"):
        moment = parse_iso(dig(window, edge))
        if moment is not None:
            return localize(moment, fallback_locations=fallbacks, home_zone=HOME_ZONE)
    return None


def _parse_accepted(item: object, number: str) -> TrackingResult:
    track_info = dig(item, "track_info")
    recipient = country_code(dig(track_info, "shipping_info", "recipient_address", "country"))
    shipper = country_code(dig(track_info, "shipping_info", "shipper_address", "country"))
    fallbacks = [(country, "") for country in (recipient, shipper) if country]
    events = [
        record
        for provider in as_list(dig(track_info, "tracking", "providers"))
        for event in as_list(dig(provider, "events"))
        if (record := _event(event, fallbacks)) is not None
    ]
    latest = dig(track_info, "latest_status")
    current = None
    if isinstance(latest, dict) and (text(latest.get("status")) or text(latest.get("sub_status"))):
        sub_status, main_status = text(latest.get("sub_status")), text(latest.get("status"))
        description = text(latest.get("sub_status_descr")) or text(dig(track_info, "latest_event", "description"))
        status_value, substatus = map_status(sub_status, main_status, description)
        current = (status_value, substatus, sub_status or main_status, description)
    return roll_up(
        tracking_number=number,
        carrier=CODE,
        events=events,
        current=current,
        estimated_delivery=_estimated_delivery(track_info, fallbacks),
    )


def parse_response(raw: object, numbers: Sequence[str]) -> list[TrackingResult]:
    """A decoded gettrackinfo answer (up to 40 numbers) -> one TrackingResult per number."""
    numbers = list(numbers)
    code = dig(raw, "code")
    if code not in (0, "0", None) or not isinstance(dig(raw, "data"), dict):
        message = text(dig(raw, "data", "errors", 0, "message")) or text(dig(raw, "message")) or "17TRACK error"
        return [
            not_found(tracking_number=number, carrier=CODE, error=message, raw_code=text(code)) for number in numbers
        ]

    results: list[TrackingResult] = []
    for item in as_list(dig(raw, "data", "accepted")):
        number = match_requested(text(dig(item, "number")), numbers)
        results.append(_parse_accepted(item, number))
    for item in as_list(dig(raw, "data", "rejected")):
        number = match_requested(text(dig(item, "number")), numbers)
        results.append(
            not_found(
                tracking_number=number,
                carrier=CODE,
                error=text(dig(item, "error", "message")),
                raw_code=text(dig(item, "error", "code")),
            )
        )
    return missing_results(results, numbers, carrier=CODE, error="Not in 17TRACK's answer")


def needs_registration(result: TrackingResult) -> bool:
    """Whether 17TRACK rejected the number because it was never registered (register it, then ask again)."""
    return not result.found and result.raw_code == str(NOT_REGISTERED)


def _chunks(numbers: Sequence[str]) -> list[tuple[str, ...]]:
    numbers = list(numbers)
    return [tuple(numbers[start : start + BATCH_SIZE]) for start in range(0, len(numbers), BATCH_SIZE)]


def build_calls(numbers: Sequence[str]) -> list[HttpCall]:
    return [
        HttpCall(
            method="POST",
            path="/track/v2.2/gettrackinfo",
            numbers=chunk,
            json=[{"number": number} for number in chunk],
        )
        for chunk in _chunks(numbers)
    ]


def build_register_calls(numbers: Sequence[str]) -> list[HttpCall]:
    return [
        HttpCall(
            method="POST",
            path="/track/v2.2/register",
            numbers=chunk,
            json=[{"number": number} for number in chunk],
        )
        for chunk in _chunks(numbers)
    ]


def tracking_url(number: str) -> str:
    return URL_17TRACK.format(number=number)


SPEC = CarrierSpec(
    code=CODE,
    display_name="17TRACK",
    default_base_url="https://api.17track.net",
    auth="api_key_header",
    batch_size=BATCH_SIZE,
    default_rate_limit=DEFAULT_RATE_LIMIT,
    build_calls=build_calls,
    parse=parse_response,
    api_key_header="17token",
    build_register_calls=build_register_calls,
    tracking_url=tracking_url,
)
