"""FedEx Track API v1: pure request building and response parsing.

Wire format (FedEx Developer Portal, "Track API" / "Basic Integrated Visibility" 1.0.0): `POST
/track/v1/trackingnumbers` with an OAuth client-credentials bearer token (`POST /oauth/token`), body
`{"includeDetailedScans": true, "trackingInfo": [{"trackingNumberInfo": {"trackingNumber": ...}}, ...]}`, at most
30 numbers per request. The answer is `output.completeTrackResults[]`, one per number asked, each with
`trackResults[]`: usually one, several when FedEx reused the number for another shipment (each has its own
`trackingNumberInfo.trackingNumberUniqueId`): we keep the one with the most recent scan. A number FedEx does not
know comes back as a trackResult holding only `error` (TRACKING.TRACKINGNUMBER.NOTFOUND); a rejected request as a
top-level `errors[]`.

Status: `latestStatusDetail.code` for the package, `scanEvents[].eventType` for events (FedEx "Tracking Status
Codes" table), `derivedStatusCode` as the fallback; `delayDetail.status == "DELAYED"` turns a moving package into
an exception with substatus delayed (or weather).

Times: every scan `date` is ISO 8601 with the local offset ("2024-04-24T16:05:00-07:00"). The few naive values
FedEx sends (some `dateAndTimes`, window `begins`) are localized at the scan location or the destination, and as
a last resort in FedEx's home zone America/Chicago (documented choice; never UTC).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime

from tracking.carriers.base import CarrierSpec, HttpCall, RateLimit, TrackingEventRecord, TrackingResult
from tracking.carriers.parsing import (
    as_list,
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
from tracking.detection.formats import URL_FEDEX
from tracking.vocabulary import Status, Substatus

CODE = "fedex"
HOME_ZONE = "America/Chicago"
BATCH_SIZE = 30  # Track API: "Maximum limit is 30" trackingInfo entries per request
# FedEx developer portal rate-limit guide: 1,400 transactions per 10 seconds per project.
DEFAULT_RATE_LIMIT = RateLimit(requests=1400, per_seconds=10.0)

S, U = Status, Substatus
# FedEx "Tracking Status Codes" (scan eventType and latestStatusDetail.code) -> (status, substatus).
EVENT_TYPES: dict[str, tuple[str, str]] = {
    "OC": (S.INFO_RECEIVED, ""),  # Order Created / Shipment information sent to FedEx
    "OX": (S.INFO_RECEIVED, ""),  # Shipment information sent to USPS
    "EP": (S.INFO_RECEIVED, ""),  # Enroute to Pickup
    "PU": (S.IN_TRANSIT, U.PICKED_UP),
    "PX": (S.IN_TRANSIT, U.PICKED_UP),  # Picked up (see Details)
    "AP": (S.IN_TRANSIT, ""),  # At Pickup
    "AA": (S.IN_TRANSIT, ""),  # At Airport
    "AC": (S.IN_TRANSIT, ""),  # At Canada Post facility
    "AF": (S.IN_TRANSIT, ""),  # At local FedEx Facility
    "AR": (S.IN_TRANSIT, ""),  # Arrived at FedEx location
    "AX": (S.IN_TRANSIT, ""),  # At USPS facility
    "AO": (S.IN_TRANSIT, ""),  # Shipment arriving On-time
    "AE": (S.IN_TRANSIT, ""),  # Shipment arriving early
    "CH": (S.IN_TRANSIT, ""),  # Location Changed
    "DP": (S.IN_TRANSIT, ""),  # Departed
    "DR": (S.IN_TRANSIT, ""),  # Vehicle furnished but not used
    "DS": (S.IN_TRANSIT, ""),  # Vehicle Dispatched
    "EA": (S.IN_TRANSIT, ""),  # Enroute to Airport / Export Approved
    "EO": (S.IN_TRANSIT, ""),  # Enroute to Origin Airport
    "FD": (S.IN_TRANSIT, ""),  # At FedEx Destination
    "IT": (S.IN_TRANSIT, ""),
    "IX": (S.IN_TRANSIT, ""),  # In transit (see Details)
    "LO": (S.IN_TRANSIT, ""),  # Left Origin
    "OF": (S.IN_TRANSIT, ""),  # At FedEx origin facility
    "OW": (S.IN_TRANSIT, ""),  # On the way ("Ow" in FedEx's table)
    "PF": (S.IN_TRANSIT, ""),  # Plane in Flight
    "PL": (S.IN_TRANSIT, ""),  # Plane Landed
    "PM": (S.IN_TRANSIT, ""),  # In Progress
    "SF": (S.IN_TRANSIT, ""),  # At Sort Facility
    "SP": (S.IN_TRANSIT, ""),  # Split Status
    "TR": (S.IN_TRANSIT, ""),  # Transfer
    "RR": (S.IN_TRANSIT, ""),  # CDO requested
    "RM": (S.IN_TRANSIT, ""),  # CDO Modified
    "RC": (S.IN_TRANSIT, ""),  # CDO Cancelled
    "CP": (S.IN_TRANSIT, U.CUSTOMS),  # Clearance in Progress
    "CC": (S.IN_TRANSIT, U.CUSTOMS_RELEASED),  # Cleared Customs
    "CD": (S.EXCEPTION, U.CUSTOMS_HOLD),  # Clearance Delay
    "AD": (S.OUT_FOR_DELIVERY, ""),  # At Delivery
    "ED": (S.OUT_FOR_DELIVERY, ""),  # Enroute to Delivery
    "OD": (S.OUT_FOR_DELIVERY, ""),  # Out for Delivery
    "DL": (S.DELIVERED, ""),
    "DE": (S.ATTEMPT_FAILED, ""),  # Delivery Exception: the reason is in the text
    "DD": (S.EXCEPTION, U.DELAYED),  # Delivery Delay
    "DY": (S.EXCEPTION, U.DELAYED),  # Delay
    "PD": (S.EXCEPTION, U.DELAYED),  # Pickup Delay
    "SE": (S.EXCEPTION, ""),  # Shipment Exception
    "HL": (S.AVAILABLE_FOR_PICKUP, ""),  # Hold at Location
    "HP": (S.AVAILABLE_FOR_PICKUP, ""),  # Ready for Recipient Pickup
    "RS": (S.RETURN_TO_SENDER, ""),  # Return to Shipper
    "CA": (S.CANCELLED, ""),  # Shipment Cancelled
    "RP": (S.INFO_RECEIVED, ""),  # Return label link emailed to return sender
    "RG": (S.INFO_RECEIVED, ""),  # Return label link expiring soon
    "LP": (S.CANCELLED, ""),  # Return label link cancelled by shipment originator
    "RD": (S.CANCELLED, ""),  # Return label link expired
}
# The module's primary raw code -> (status, substatus) table; every carrier module names one STATUS_MAP.
STATUS_MAP = EVENT_TYPES
# `derivedStatusCode` / `latestStatusDetail.derivedCode`: FedEx's own roll-up, used when eventType is unknown.
DERIVED_CODES: dict[str, tuple[str, str]] = {
    "IN": (S.INFO_RECEIVED, ""),  # Label created / Initiated
    "PU": (S.IN_TRANSIT, U.PICKED_UP),
    "IT": (S.IN_TRANSIT, ""),
    "OD": (S.OUT_FOR_DELIVERY, ""),
    "DL": (S.DELIVERED, ""),
    "DE": (S.ATTEMPT_FAILED, ""),
    "DY": (S.EXCEPTION, U.DELAYED),
    "RL": (S.EXCEPTION, U.DELAYED),  # Running Late
    "SE": (S.EXCEPTION, ""),
    "HP": (S.AVAILABLE_FOR_PICKUP, ""),
    "RS": (S.RETURN_TO_SENDER, ""),
    "CA": (S.CANCELLED, ""),
}
NOT_FOUND_ERRORS = frozenset({"TRACKING.TRACKINGNUMBER.NOTFOUND", "TRACKING.DATA.NOTFOUND"})


def map_code(code: str, derived: str, *texts: str) -> tuple[str, str]:
    mapped = EVENT_TYPES.get(code.upper()) or DERIVED_CODES.get(derived.upper()) or status_from_text(*texts)
    if mapped is None:
        return S.UNKNOWN, ""
    return refine(mapped[0], mapped[1], *texts)


def _apply_delay(status_value: str, substatus: str, delay: object) -> tuple[str, str]:
    """FedEx flags a late package with delayDetail.status DELAYED while its scans still say "in transit"."""
    if text(dig(delay, "status")).upper() != "DELAYED" or status_value not in {S.IN_TRANSIT, S.INFO_RECEIVED}:
        return status_value, substatus
    return S.EXCEPTION, U.WEATHER if text(dig(delay, "type")).upper() == "WEATHER" else U.DELAYED


def _address_parts(address: object) -> tuple[str, str]:
    return text(dig(address, "countryCode")), text(dig(address, "stateOrProvinceCode"))


def _fallback_locations(track_result: object) -> list[tuple[str, str]]:
    candidates = [
        dig(track_result, "lastUpdatedDestinationAddress"),
        dig(track_result, "recipientInformation", "address"),
        dig(track_result, "destinationLocation", "locationContactAndAddress", "address"),
        dig(track_result, "shipperInformation", "address"),
    ]
    return [_address_parts(address) for address in candidates if _address_parts(address)[0]]


def _to_utc(value: object, *, address: object = None, fallbacks: Sequence[tuple[str, str]] = ()) -> datetime | None:
    moment = parse_iso(value)
    if moment is None:
        return None
    country, region = _address_parts(address)
    return localize(moment, country=country, region=region, fallback_locations=fallbacks, home_zone=HOME_ZONE)


def _scan_event(scan: object, fallbacks: Sequence[tuple[str, str]]) -> TrackingEventRecord | None:
    location = dig(scan, "scanLocation")
    occurred_at = _to_utc(dig(scan, "date"), address=location, fallbacks=fallbacks)
    if occurred_at is None:
        return None
    event_type = text(dig(scan, "eventType"))
    description = text(dig(scan, "eventDescription"))
    exception = text(dig(scan, "exceptionDescription"))
    status_value, substatus = map_code(event_type, text(dig(scan, "derivedStatusCode")), exception, description)
    status_value, substatus = _apply_delay(status_value, substatus, dig(scan, "delayDetail"))
    raw_text = f"{description}: {exception}" if exception and exception != description else description
    return TrackingEventRecord(
        occurred_at=occurred_at,
        status=status_value,
        substatus=substatus,
        raw_code=event_type or text(dig(scan, "derivedStatusCode")),
        raw_text=raw_text,
        location=join_location(
            dig(location, "city"),
            dig(location, "stateOrProvinceCode"),
            dig(location, "postalCode"),
            dig(location, "countryCode"),
        ),
    )


def _date_and_times(track_result: object, fallbacks: Sequence[tuple[str, str]]) -> dict[str, datetime]:
    moments: dict[str, datetime] = {}
    for entry in as_list(dig(track_result, "dateAndTimes")):
        moment = _to_utc(dig(entry, "dateTime"), fallbacks=fallbacks)
        if moment is not None:
            moments[text(dig(entry, "type")).upper()] = moment
    return moments


def _estimated_delivery(
    track_result: object, moments: dict[str, datetime], fallbacks: Sequence[tuple[str, str]]
) -> datetime | date | None:
    """ESTIMATED_DELIVERY, else the estimated window's end (then start), else the standard transit window's end."""
    if "ESTIMATED_DELIVERY" in moments:
        return moments["ESTIMATED_DELIVERY"]
    for window_key in ("estimatedDeliveryTimeWindow", "standardTransitTimeWindow"):
        window = dig(track_result, window_key, "window")
        for edge in ("ends", "begins"):
            moment = _to_utc(dig(window, edge), fallbacks=fallbacks)
            if moment is not None:
                return moment
    return moments.get("APPOINTMENT_DELIVERY") or moments.get("COMMITMENT")


def _newest_scan(track_result: object) -> datetime:
    moments = [parse_iso(dig(scan, "date")) for scan in as_list(dig(track_result, "scanEvents"))]
    aware = [moment for moment in moments if moment is not None and moment.tzinfo is not None]
    return max(aware) if aware else datetime.min.replace(tzinfo=UTC)


def _parse_track_result(track_result: object, number: str) -> TrackingResult:
    fallbacks = _fallback_locations(track_result)
    events = [
        event
        for scan in as_list(dig(track_result, "scanEvents"))
        if (event := _scan_event(scan, fallbacks)) is not None
    ]
    latest = dig(track_result, "latestStatusDetail")
    current = None
    if isinstance(latest, dict) and (text(latest.get("code")) or text(latest.get("derivedCode"))):
        code, derived = text(latest.get("code")), text(latest.get("derivedCode"))
        description = text(latest.get("description")) or text(latest.get("statusByLocale"))
        reasons = [text(dig(detail, "reasonDescription")) for detail in as_list(latest.get("ancillaryDetails"))]
        status_value, substatus = map_code(code, derived, *reasons, description)
        status_value, substatus = _apply_delay(status_value, substatus, latest.get("delayDetail"))
        current = (status_value, substatus, code or derived, description)
    moments = _date_and_times(track_result, fallbacks)
    delivery = dig(track_result, "deliveryDetails")
    return roll_up(
        tracking_number=number,
        carrier=CODE,
        events=events,
        current=current,
        estimated_delivery=_estimated_delivery(track_result, moments, fallbacks),
        delivered_at=moments.get("ACTUAL_DELIVERY"),
        signed_by=text(dig(delivery, "receivedByName")) or text(dig(delivery, "signedByName")),
    )


def _error(entry: object) -> tuple[str, str]:
    return text(dig(entry, "code")), text(dig(entry, "message"))


def parse_response(raw: object, numbers: Sequence[str]) -> list[TrackingResult]:
    """A decoded Track API answer (up to 30 numbers) -> one TrackingResult per number."""
    numbers = list(numbers)
    top_errors = as_list(dig(raw, "errors"))
    if top_errors and not dig(raw, "output"):
        code, message = _error(top_errors[0])
        return [not_found(tracking_number=number, carrier=CODE, error=message, raw_code=code) for number in numbers]

    results: list[TrackingResult] = []
    for complete in as_list(dig(raw, "output", "completeTrackResults")):
        asked = text(dig(complete, "trackingNumber"))
        track_results = [entry for entry in as_list(dig(complete, "trackResults")) if isinstance(entry, dict)]
        usable = [entry for entry in track_results if not dig(entry, "error") or dig(entry, "scanEvents")]
        number = match_requested(
            asked or text(dig(track_results[0] if track_results else {}, "trackingNumberInfo", "trackingNumber")),
            numbers,
        )
        if not usable:
            code, message = _error(dig(track_results[0], "error")) if track_results else ("", "")
            results.append(not_found(tracking_number=number, carrier=CODE, error=message, raw_code=code))
            continue
        # One number reused by FedEx for several shipments: the one that moved last is the merchant's.
        best = max(usable, key=_newest_scan)
        results.append(_parse_track_result(best, number))
    return missing_results(results, numbers, carrier=CODE, error="Tracking number cannot be found.")


def build_calls(numbers: Sequence[str]) -> list[HttpCall]:
    numbers = list(numbers)
    calls = []
    for start in range(0, len(numbers), BATCH_SIZE):
        chunk = tuple(numbers[start : start + BATCH_SIZE])
        calls.append(
            HttpCall(
                method="POST",
                path="/track/v1/trackingnumbers",
                numbers=chunk,
                json={
                    "includeDetailedScans": True,
                    "trackingInfo": [{"trackingNumberInfo": {"trackingNumber": number}} for number in chunk],
                },
            )
        )
    return calls


def tracking_url(number: str) -> str:
    return URL_FEDEX.format(number=number)


SPEC = CarrierSpec(
    code=CODE,
    display_name="FedEx",
    default_base_url="https://apis.fedex.com",
    test_base_urls=("https://apis-sandbox.fedex.com",),
    auth="oauth_client_credentials",
    batch_size=BATCH_SIZE,
    default_rate_limit=DEFAULT_RATE_LIMIT,
    build_calls=build_calls,
    parse=parse_response,
    token_path="/oauth/token",
    tracking_url=tracking_url,
)
