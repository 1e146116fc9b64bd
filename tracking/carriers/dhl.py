"""DHL Shipment Tracking - Unified: pure request building and response parsing.

Wire format (developer.dhl.com "Shipment Tracking - Unified" 1.x): `GET /track/shipments?trackingNumber=...`
on https://api-eu.dhl.com with the `DHL-API-Key` header; one number per request (DHL may answer with several
shipments for one number, one per DHL business: express, parcel-de, ecommerce...). The answer is
`{"shipments": [{"id", "service", "origin", "destination", "status", "estimatedTimeOfDelivery",
"estimatedDeliveryTimeFrame", "details": {"proofOfDelivery": {"timestamp", "signed": {"name"...}}, ...},
"events": [...]}]}`; each status/event has `timestamp`, `location.address` (countryCode, postalCode,
addressLocality), `statusCode` (pre-transit | transit | delivered | failure | unknown), `status`, `description`,
`remark`. Not found: HTTP 404 with an RFC 7807 problem body (`title`, `status`, `detail`).

Status: `statusCode` gives the category; the free text (`status`, `description`) refines it (out for delivery,
pickup, return, attempt) since DHL puts those inside "transit" and "failure".

Times: usually ISO 8601 with an offset or Z. Some services send local times without offset: they are localized
at the event's country (from `countryCode`, or the "CITY - COUNTRY" suffix DHL Express writes into
`addressLocality`), then the destination's, then the origin's, and as a last resort DHL's home zone Europe/Berlin
(documented choice; never UTC).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime

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
from tracking.detection.formats import URL_DHL
from tracking.vocabulary import Status, Substatus

CODE = "dhl"
HOME_ZONE = "Europe/Berlin"
# Starter tier: 1 call per second and 250 calls per day (carriers.md §4). The transport enforces one RateLimit:
# the per-second one; the daily quota is exported for whoever budgets polling.
DEFAULT_RATE_LIMIT = RateLimit(requests=1, per_seconds=1.0)
DAILY_QUOTA = 250

S, U = Status, Substatus
# DHL Unified `statusCode` -> our status; the text then refines it (see map_status).
STATUS_CODES: dict[str, tuple[str, str]] = {
    "pre-transit": (S.INFO_RECEIVED, ""),
    "transit": (S.IN_TRANSIT, ""),
    "delivered": (S.DELIVERED, ""),
    "failure": (S.EXCEPTION, ""),
    "unknown": (S.UNKNOWN, ""),
}
# The module's primary raw code -> (status, substatus) table; every carrier module names one STATUS_MAP.
STATUS_MAP = STATUS_CODES
# What the text may turn each category into: anything else in the text only adds a substatus.
_REFINEMENTS: dict[str, frozenset[str]] = {
    S.IN_TRANSIT: frozenset(
        {S.OUT_FOR_DELIVERY, S.AVAILABLE_FOR_PICKUP, S.ATTEMPT_FAILED, S.RETURN_TO_SENDER, S.EXCEPTION}
    ),
    S.EXCEPTION: frozenset({S.ATTEMPT_FAILED, S.RETURN_TO_SENDER, S.CANCELLED}),
    S.INFO_RECEIVED: frozenset({S.CANCELLED}),
    S.DELIVERED: frozenset({S.RETURN_TO_SENDER}),
    S.UNKNOWN: frozenset(S.values),
}


def map_status(status_code: str, *texts: str) -> tuple[str, str]:
    base = STATUS_CODES.get(status_code.strip().lower())
    from_text = status_from_text(*texts)
    if base is None:
        mapped = from_text or (S.UNKNOWN, "")
    elif from_text is not None and from_text[0] in _REFINEMENTS.get(base[0], frozenset()):
        mapped = from_text
        if base[0] == S.DELIVERED and mapped[0] == S.RETURN_TO_SENDER:
            mapped = (S.RETURN_TO_SENDER, U.RETURNED_COMPLETED)  # "delivered" back to the shipper
    elif from_text is not None and from_text[0] == base[0]:
        mapped = from_text
    else:
        mapped = base
    return refine(mapped[0], mapped[1], *texts)


def _address_country(address: object) -> str:
    """countryCode, or the country DHL Express appends to the locality ("CINCINNATI HUB - USA")."""
    code = country_code(dig(address, "countryCode"))
    if code:
        return code
    locality = text(dig(address, "addressLocality"))
    if " - " in locality:
        return country_code(locality.rsplit(" - ", 1)[1])
    return ""


def _to_utc(value: object, *, address: object, fallbacks: Sequence[tuple[str, str]]) -> datetime | None:
    moment = parse_iso(value)
    if moment is None:
        return None
    return localize(moment, country=_address_country(address), fallback_locations=fallbacks, home_zone=HOME_ZONE)


def _event(entry: object, fallbacks: Sequence[tuple[str, str]]) -> TrackingEventRecord | None:
    address = dig(entry, "location", "address")
    occurred_at = _to_utc(dig(entry, "timestamp"), address=address, fallbacks=fallbacks)
    if occurred_at is None:
        return None
    status_code = text(dig(entry, "statusCode"))
    status_text = text(dig(entry, "status"))
    description = text(dig(entry, "description"))
    remark = text(dig(entry, "remark"))
    status_value, substatus = map_status(status_code, description, status_text, remark)
    raw_text = description or status_text
    if remark and remark != raw_text:
        raw_text = f"{raw_text} ({remark})" if raw_text else remark
    return TrackingEventRecord(
        occurred_at=occurred_at,
        status=status_value,
        substatus=substatus,
        raw_code=status_code or status_text,
        raw_text=raw_text,
        location=join_location(
            dig(address, "addressLocality"), dig(address, "postalCode"), dig(address, "countryCode")
        ),
    )


def _signed_by(shipment: object) -> str:
    signed = dig(shipment, "details", "proofOfDelivery", "signed")
    if isinstance(signed, str):
        return text(signed)
    name = text(dig(signed, "name"))
    if name:
        return name
    return " ".join(part for part in (text(dig(signed, "givenName")), text(dig(signed, "familyName"))) if part)


def _estimated_delivery(shipment: object, fallbacks: Sequence[tuple[str, str]]) -> datetime | date | None:
    for value in (
        dig(shipment, "estimatedTimeOfDelivery"),
        dig(shipment, "estimatedDeliveryTimeFrame", "estimatedThrough"),
        dig(shipment, "estimatedDeliveryTimeFrame", "estimatedFrom"),
    ):
        moment = parse_iso(value)
        if moment is None:
            continue
        if moment.tzinfo is None and len(text(value)) <= 10:
            return moment.date()
        return localize(moment, fallback_locations=fallbacks, home_zone=HOME_ZONE)
    return None


def _parse_shipment(shipment: object, number: str) -> TrackingResult:
    fallbacks = [
        (country, "")
        for country in (
            _address_country(dig(shipment, "destination", "address")),
            _address_country(dig(shipment, "origin", "address")),
        )
        if country
    ]
    events = [event for entry in as_list(dig(shipment, "events")) if (event := _event(entry, fallbacks)) is not None]
    status = dig(shipment, "status")
    current = None
    if isinstance(status, dict) and status:
        status_code = text(status.get("statusCode"))
        status_value, substatus = map_status(
            status_code, text(status.get("description")), text(status.get("status")), text(status.get("remark"))
        )
        current = (status_value, substatus, status_code, text(status.get("description")) or text(status.get("status")))
    proof_time = _to_utc(dig(shipment, "details", "proofOfDelivery", "timestamp"), address=None, fallbacks=fallbacks)
    return roll_up(
        tracking_number=number,
        carrier=CODE,
        events=events,
        current=current,
        estimated_delivery=_estimated_delivery(shipment, fallbacks),
        delivered_at=proof_time,
        signed_by=_signed_by(shipment),
    )


def _latest_moment(shipment: object) -> datetime:
    moments = [parse_iso(dig(shipment, "status", "timestamp"))]
    moments += [parse_iso(dig(entry, "timestamp")) for entry in as_list(dig(shipment, "events"))]
    usable = [moment if moment.tzinfo else moment.replace(tzinfo=UTC) for moment in moments if moment is not None]
    return max(usable) if usable else datetime.min.replace(tzinfo=UTC)


def parse_response(raw: object, numbers: Sequence[str]) -> list[TrackingResult]:
    """A decoded Unified answer for one number -> [TrackingResult]."""
    numbers = list(numbers)
    shipments = [entry for entry in as_list(dig(raw, "shipments")) if isinstance(entry, dict)]
    if not shipments:
        message = text(dig(raw, "detail")) or text(dig(raw, "title")) or "No shipment with given tracking number found."
        code = text(dig(raw, "status"))
        return [not_found(tracking_number=number, carrier=CODE, error=message, raw_code=code) for number in numbers]

    by_number: dict[str, list[dict[str, object]]] = {}
    for shipment in shipments:
        number = match_requested(text(shipment.get("id")) or (numbers[0] if numbers else ""), numbers)
        by_number.setdefault(number, []).append(shipment)
    results = []
    for number, candidates in by_number.items():
        # Several DHL businesses may know the number: the one with the latest news is the one moving it.
        best = max(candidates, key=_latest_moment)
        results.append(_parse_shipment(best, number))
    return missing_results(results, numbers, carrier=CODE, error="No shipment with given tracking number found.")


def build_calls(numbers: Sequence[str]) -> list[HttpCall]:
    return [
        HttpCall(
            method="GET",
            path="/track/shipments",
            numbers=(number,),
            params={"trackingNumber": number, "language": "en"},
        )
        for number in numbers
    ]


def tracking_url(number: str) -> str:
    return URL_DHL.format(number=number)


SPEC = CarrierSpec(
    code=CODE,
    display_name="DHL",
    default_base_url="https://api-eu.dhl.com",
    auth="api_key_header",
    batch_size=1,
    default_rate_limit=DEFAULT_RATE_LIMIT,
    build_calls=build_calls,
    parse=parse_response,
    api_key_header="DHL-API-Key",
    tracking_url=tracking_url,
)
