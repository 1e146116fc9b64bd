"""Helpers shared by the pure carrier parsers: time zones, tolerant field access, event ordering and roll-up.

Time handling, the one rule: an event's time is stored in UTC, converted with the offset the carrier gives. When a
carrier gives a local time with no offset at all, we do NOT stamp it as UTC: we resolve the zone of the event's
location (US state, Canadian province, Australian state, or the country's main zone), then the zone of a fallback
location the carrier module supplies (the destination, usually), and only then the carrier's home zone, which each
module names and documents. IANA rules (zoneinfo) give the right offset for that date, daylight saving included.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tracking.carriers.base import TrackingEventRecord, TrackingResult
from tracking.numbers import normalize
from tracking.vocabulary import Status, Substatus, substatus_from_text

# Main zone of each US state and territory (the zone most of the state's population lives in).
US_STATE_ZONES: dict[str, str] = {
    **dict.fromkeys(
        [
            "CT",
            "DE",
            "DC",
            "FL",
            "GA",
            "KY",
            "ME",
            "MD",
            "MA",
            "NH",
            "NJ",
            "NY",
            "NC",
            "OH",
            "PA",
            "RI",
            "SC",
            "VT",
            "VA",
            "WV",
        ],
        "America/New_York",
    ),
    **dict.fromkeys(
        ["AL", "AR", "IL", "IA", "KS", "LA", "MN", "MS", "MO", "NE", "ND", "OK", "SD", "TN", "TX", "WI"],
        "America/Chicago",
    ),
    **dict.fromkeys(["CO", "MT", "NM", "UT", "WY"], "America/Denver"),
    **dict.fromkeys(["CA", "NV", "OR", "WA"], "America/Los_Angeles"),
    "AZ": "America/Phoenix",
    "ID": "America/Boise",
    "IN": "America/Indiana/Indianapolis",
    "MI": "America/Detroit",
    "AK": "America/Anchorage",
    "HI": "Pacific/Honolulu",
    "PR": "America/Puerto_Rico",
    "VI": "America/St_Thomas",
    "GU": "Pacific/Guam",
    "AS": "Pacific/Pago_Pago",
    "MP": "Pacific/Saipan",
}
CA_PROVINCE_ZONES: dict[str, str] = {
    "AB": "America/Edmonton",
    "BC": "America/Vancouver",
    "MB": "America/Winnipeg",
    "NB": "America/Moncton",
    "NL": "America/St_Johns",
    "NS": "America/Halifax",
    "NT": "America/Yellowknife",
    "NU": "America/Iqaluit",
    "ON": "America/Toronto",
    "PE": "America/Halifax",
    "QC": "America/Toronto",
    "SK": "America/Regina",
    "YT": "America/Whitehorse",
}
AU_STATE_ZONES: dict[str, str] = {
    "NSW": "Australia/Sydney",
    "ACT": "Australia/Sydney",
    "VIC": "Australia/Melbourne",
    "QLD": "Australia/Brisbane",
    "SA": "Australia/Adelaide",
    "WA": "Australia/Perth",
    "TAS": "Australia/Hobart",
    "NT": "Australia/Darwin",
}
# Country (ISO 3166 alpha-2) -> its only zone, or its most populous one for countries spanning several.
COUNTRY_ZONES: dict[str, str] = {
    "US": "America/Chicago",
    "CA": "America/Toronto",
    "MX": "America/Mexico_City",
    "BR": "America/Sao_Paulo",
    "AR": "America/Argentina/Buenos_Aires",
    "CL": "America/Santiago",
    "CO": "America/Bogota",
    "PE": "America/Lima",
    "PR": "America/Puerto_Rico",
    "GB": "Europe/London",
    "IE": "Europe/Dublin",
    "PT": "Europe/Lisbon",
    "ES": "Europe/Madrid",
    "FR": "Europe/Paris",
    "BE": "Europe/Brussels",
    "NL": "Europe/Amsterdam",
    "LU": "Europe/Luxembourg",
    "DE": "Europe/Berlin",
    "CH": "Europe/Zurich",
    "AT": "Europe/Vienna",
    "IT": "Europe/Rome",
    "DK": "Europe/Copenhagen",
    "NO": "Europe/Oslo",
    "SE": "Europe/Stockholm",
    "FI": "Europe/Helsinki",
    "PL": "Europe/Warsaw",
    "CZ": "Europe/Prague",
    "SK": "Europe/Bratislava",
    "HU": "Europe/Budapest",
    "SI": "Europe/Ljubljana",
    "HR": "Europe/Zagreb",
    "RO": "Europe/Bucharest",
    "BG": "Europe/Sofia",
    "GR": "Europe/Athens",
    "EE": "Europe/Tallinn",
    "LV": "Europe/Riga",
    "LT": "Europe/Vilnius",
    "UA": "Europe/Kyiv",
    "TR": "Europe/Istanbul",
    "RU": "Europe/Moscow",
    "IL": "Asia/Jerusalem",
    "AE": "Asia/Dubai",
    "SA": "Asia/Riyadh",
    "IN": "Asia/Kolkata",
    "CN": "Asia/Shanghai",
    "HK": "Asia/Hong_Kong",
    "TW": "Asia/Taipei",
    "JP": "Asia/Tokyo",
    "KR": "Asia/Seoul",
    "SG": "Asia/Singapore",
    "MY": "Asia/Kuala_Lumpur",
    "TH": "Asia/Bangkok",
    "VN": "Asia/Ho_Chi_Minh",
    "PH": "Asia/Manila",
    "ID": "Asia/Jakarta",
    "AU": "Australia/Sydney",
    "NZ": "Pacific/Auckland",
    "ZA": "Africa/Johannesburg",
    "EG": "Africa/Cairo",
    "NG": "Africa/Lagos",
    "KE": "Africa/Nairobi",
    "MA": "Africa/Casablanca",
}
_REGION_ZONES_BY_COUNTRY: dict[str, dict[str, str]] = {
    "US": US_STATE_ZONES,
    "CA": CA_PROVINCE_ZONES,
    "AU": AU_STATE_ZONES,
}

_OFFSET = re.compile(r"^(?:GMT|UTC)?\s*([+-])(\d{1,2}):?(\d{2})?$")


def text(value: object) -> str:
    """A trimmed string from a JSON value that may be missing, null, a number or the string "null"."""
    if value is None:
        return ""
    result = str(value).strip()
    return "" if result.lower() in {"null", "none"} else result


def dig(data: object, *path: str | int) -> Any:
    """data[path0][path1]... tolerating missing keys, nulls, and a list where one object was expected (first item)."""
    current = data
    for key in path:
        if isinstance(key, int):
            if not isinstance(current, list) or len(current) <= key:
                return None
            current = current[key]
            continue
        if isinstance(current, list):
            current = current[0] if current else None
        if not isinstance(current, Mapping):
            return None
        current = current.get(key)
    return current


def as_list(value: object) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def parse_offset(value: str) -> tzinfo | None:
    """'-05:00', '-5:00', '+0100', 'Z', 'GMT+2' -> a fixed offset; None when unparsable."""
    raw = text(value)
    if not raw:
        return None
    if raw.upper() in {"Z", "UTC", "GMT"}:
        return UTC
    match = _OFFSET.match(raw)
    if not match:
        return None
    sign, hours, minutes = match.groups()
    delta = timedelta(hours=int(hours), minutes=int(minutes or 0))
    if delta > timedelta(hours=14):
        return None
    return timezone(-delta if sign == "-" else delta)


def parse_iso(value: object) -> datetime | None:
    """An ISO 8601 timestamp -> datetime (aware when the text carries an offset or Z, naive otherwise)."""
    raw = text(value)
    if not raw:
        return None
    raw = raw.replace(" ", "T", 1) if "T" not in raw and len(raw) > 10 else raw
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        return None


def parse_iso_date(value: object) -> date | None:
    raw = text(value)[:10]
    try:
        return date.fromisoformat(raw) if raw else None
    except ValueError:
        return None


# Country names carriers write instead of codes (USPS international events, DHL "CINCINNATI HUB - USA").
COUNTRY_NAMES: dict[str, str] = {
    "USA": "US",
    "UNITED STATES": "US",
    "UNITED STATES OF AMERICA": "US",
    "CANADA": "CA",
    "MEXICO": "MX",
    "UNITED KINGDOM": "GB",
    "UK": "GB",
    "GREAT BRITAIN": "GB",
    "IRELAND": "IE",
    "GERMANY": "DE",
    "FRANCE": "FR",
    "NETHERLANDS": "NL",
    "THE NETHERLANDS": "NL",
    "BELGIUM": "BE",
    "LUXEMBOURG": "LU",
    "SPAIN": "ES",
    "PORTUGAL": "PT",
    "ITALY": "IT",
    "SWITZERLAND": "CH",
    "AUSTRIA": "AT",
    "DENMARK": "DK",
    "SWEDEN": "SE",
    "NORWAY": "NO",
    "FINLAND": "FI",
    "POLAND": "PL",
    "CZECH REPUBLIC": "CZ",
    "CZECHIA": "CZ",
    "HUNGARY": "HU",
    "GREECE": "GR",
    "TURKEY": "TR",
    "TURKIYE": "TR",
    "CHINA": "CN",
    "CHINA MAINLAND": "CN",
    "PEOPLES REPUBLIC OF CHINA": "CN",
    "HONG KONG": "HK",
    "HONG KONG SAR, CHINA": "HK",
    "HONG KONG SAR": "HK",
    "TAIWAN": "TW",
    "JAPAN": "JP",
    "SOUTH KOREA": "KR",
    "KOREA, SOUTH": "KR",
    "KOREA": "KR",
    "SINGAPORE": "SG",
    "MALAYSIA": "MY",
    "THAILAND": "TH",
    "VIETNAM": "VN",
    "PHILIPPINES": "PH",
    "INDONESIA": "ID",
    "INDIA": "IN",
    "UNITED ARAB EMIRATES": "AE",
    "SAUDI ARABIA": "SA",
    "ISRAEL": "IL",
    "AUSTRALIA": "AU",
    "NEW ZEALAND": "NZ",
    "SOUTH AFRICA": "ZA",
    "EGYPT": "EG",
    "BRAZIL": "BR",
    "ARGENTINA": "AR",
    "CHILE": "CL",
    "COLOMBIA": "CO",
}


def country_code(value: object) -> str:
    """An ISO alpha-2 code from a code or a country name ("" when unknown)."""
    raw = text(value).upper().replace(".", "")
    if len(raw) == 2 and raw.isalpha():
        return raw
    return COUNTRY_NAMES.get(raw, "")


def zone_for(*, country: str = "", region: str = "") -> tzinfo | None:
    """The IANA zone of a location: its state or province when known, else the country's main zone."""
    code = country_code(country)
    region_code = text(region).upper()
    name = ""
    if region_code:
        name = _REGION_ZONES_BY_COUNTRY.get(code or "US", {}).get(region_code, "")
        if not name and not code:
            name = CA_PROVINCE_ZONES.get(region_code, "")
    name = name or COUNTRY_ZONES.get(code, "")
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except ZoneInfoNotFoundError:
        return None


def localize(
    naive: datetime,
    *,
    offset: str = "",
    country: str = "",
    region: str = "",
    fallback_locations: Sequence[tuple[str, str]] = (),
    home_zone: str,
) -> datetime:
    """A carrier's local wall-clock time -> aware UTC datetime (see the module docstring for the order of sources).

    `fallback_locations`: (country, region) pairs tried after the event's own location. `home_zone`: the carrier's
    documented last resort.
    """
    if naive.tzinfo is not None:
        return naive.astimezone(UTC)
    zone = parse_offset(offset) if offset else None
    if zone is None:
        zone = zone_for(country=country, region=region)
    for fallback_country, fallback_region in fallback_locations:
        if zone is not None:
            break
        zone = zone_for(country=fallback_country, region=fallback_region)
    if zone is None:
        zone = ZoneInfo(home_zone)
    return naive.replace(tzinfo=zone).astimezone(UTC)


# Free-text classifier for carriers whose codes are coarse (USPS event names, DHL descriptions, 17TRACK events
# without a sub-status). First match wins, so the specific phrases come before the general ones.
TEXT_STATUS_RULES: tuple[tuple[re.Pattern[str], str, str], ...] = tuple(
    (re.compile(pattern), status, substatus)
    for pattern, status, substatus in (
        (
            r"delivered,? to (the )?original sender|returned to (the )?(sender|shipper)\b.*\bdelivered"
            r"|return(ed)? (to sender|to shipper) (completed|delivered)",
            Status.RETURN_TO_SENDER,
            Substatus.RETURNED_COMPLETED,
        ),
        (
            r"return(ed|ing)? to (the )?(sender|shipper)|\breturn(ed)? (shipment|parcel)|\bbeing returned",
            Status.RETURN_TO_SENDER,
            "",
        ),
        (r"\b(cancel(l)?ed|voided)\b", Status.CANCELLED, ""),
        (r"\b(undeliverable|unable to deliver)\b", Status.EXCEPTION, Substatus.UNDELIVERABLE),
        (r"\b(refused|rejected by)\b", Status.EXCEPTION, Substatus.REFUSED),
        (r"\b(lost|damaged|destroyed|seized|disposed)\b", Status.EXCEPTION, ""),
        (
            r"delivery attempt|attempted delivery|notice left|delivery (was )?not (possible|completed)"
            r"|could not be delivered"
            r"|(recipient|receiver|customer|consignee|addressee)( was)? not (available|home|in)\b"
            r"|no one (was )?(home|available)|business closed|(second|next|another|final) (delivery )?attempt",
            Status.ATTEMPT_FAILED,
            "",
        ),
        (
            r"available for pick ?up|ready for (recipient |customer )?pick ?up|held at (the )?post office"
            r"|arrived at (the )?(pick ?up|parcel ?shop|access point|service point)|delivered to (the )?(post office "
            r"for pick ?up|access point|parcel ?shop|service point)",
            Status.AVAILABLE_FOR_PICKUP,
            "",
        ),
        (r"\bdelivered\b", Status.DELIVERED, ""),
        (
            r"out for delivery|with (the )?(delivery )?courier|on (fedex |ups |the )?vehicle for delivery"
            r"|loaded (on|onto) (the )?delivery vehicle|en ?route (to|for) delivery",
            Status.OUT_FOR_DELIVERY,
            "",
        ),
        (
            r"label created|pre-shipment|shipment information (received|sent)|electronic (shipping )?information"
            r"|order (information )?received|awaiting (collection|pick ?up by carrier)|shipping label",
            Status.INFO_RECEIVED,
            "",
        ),
        (r"\b(held|hold|delay(ed)?|alert|exception|weather|missent|missort)", Status.EXCEPTION, ""),
        (r"customs", Status.IN_TRANSIT, Substatus.CUSTOMS),
        (
            r"\b(accepted|acceptance|picked up|pickup scan|usps in possession|collected|received by (the )?carrier"
            r"|dropped off)",
            Status.IN_TRANSIT,
            Substatus.PICKED_UP,
        ),
        (
            r"transit|arrived|arrival|depart|processed|processing|sort|facility|hub|forwarded|on (the|its) way"
            r"|dispatch|scan",
            Status.IN_TRANSIT,
            "",
        ),
    )
)


def status_from_text(*texts: str) -> tuple[str, str] | None:
    """(status, substatus) from carrier free text, or None when nothing in it is recognised."""
    for value in texts:
        lowered = text(value).lower()
        if not lowered:
            continue
        for pattern, status, substatus in TEXT_STATUS_RULES:
            if pattern.search(lowered):
                return status, substatus or substatus_from_text(lowered)
    return None


def refine(status: str, substatus: str, *texts: str) -> tuple[str, str]:
    """Fill a missing substatus from the free text when the status is one that has reasons (and tell a weather
    delay from any delay)."""
    if substatus == Substatus.DELAYED and substatus_from_text(*texts) == Substatus.WEATHER:
        return status, Substatus.WEATHER
    if not substatus and status in {Status.EXCEPTION, Status.ATTEMPT_FAILED, Status.RETURN_TO_SENDER}:
        substatus = substatus_from_text(*texts)
        if status == Status.RETURN_TO_SENDER and substatus not in {Substatus.REFUSED, Substatus.DAMAGED, ""}:
            substatus = ""
    return status, substatus


def join_location(*parts: object) -> str:
    """'CLOVIS, CA, 93612, US' from the non-empty parts, without repeating a part."""
    seen: list[str] = []
    for part in parts:
        value = text(part)
        if value and value not in seen:
            seen.append(value)
    return ", ".join(seen)


def finalize_events(events: Iterable[TrackingEventRecord]) -> tuple[TrackingEventRecord, ...]:
    """Newest first by UTC time, exact duplicates (same time, code, text and place) removed.

    Carriers repeat scans (and FedEx/17TRACK can list an event under two trackResults/providers): the same event
    twice must collapse to one, since the store keys events on these same fields.
    """
    unique: dict[tuple[datetime, str, str, str], TrackingEventRecord] = {}
    for event in events:
        # Plain strings, not vocabulary enum members: the records travel to the database, JSON and logs.
        event = replace(event, status=str(event.status), substatus=str(event.substatus))
        key = (event.occurred_at, event.raw_code, event.raw_text.casefold(), event.location.casefold())
        existing = unique.get(key)
        if existing is None or (existing.status == Status.UNKNOWN and event.status != Status.UNKNOWN):
            unique[key] = event
    return tuple(sorted(unique.values(), key=lambda event: event.occurred_at, reverse=True))


def roll_up(
    *,
    tracking_number: str,
    carrier: str,
    events: Iterable[TrackingEventRecord],
    current: tuple[str, str, str, str] | None = None,
    estimated_delivery: datetime | date | None = None,
    delivered_at: datetime | None = None,
    signed_by: str = "",
) -> TrackingResult:
    """One TrackingResult from parsed events and the carrier's own current status, when it gives one.

    Status: the carrier's current status (`current` = (status, substatus, raw_code, raw_text)) when it maps to a
    known status, since it is the carrier's own summary; otherwise the newest event's status by UTC time.
    Delivered time: given, else the newest delivered event's time.
    """
    ordered = finalize_events(events)
    newest_known = next((event for event in ordered if event.status != Status.UNKNOWN), None)
    if current is not None and current[0] != Status.UNKNOWN:
        status, substatus, raw_code, raw_text = current
    elif newest_known is not None:
        status, substatus = newest_known.status, newest_known.substatus
        raw_code, raw_text = newest_known.raw_code, newest_known.raw_text
    elif current is not None:
        status, substatus, raw_code, raw_text = current
    elif ordered:
        status, substatus, raw_code, raw_text = Status.UNKNOWN, "", ordered[0].raw_code, ordered[0].raw_text
    else:
        status, substatus, raw_code, raw_text = Status.PENDING, "", "", ""
    if delivered_at is None and status == Status.DELIVERED:
        delivered_at = next((event.occurred_at for event in ordered if event.status == Status.DELIVERED), None)
    if status != Status.DELIVERED:
        delivered_at = None
    return TrackingResult(
        tracking_number=tracking_number,
        carrier=carrier,
        found=True,
        status=str(status),
        substatus=str(substatus),
        raw_code=raw_code,
        raw_text=raw_text,
        events=ordered,
        estimated_delivery=estimated_delivery,
        delivered_at=delivered_at,
        signed_by=signed_by,
    )


def not_found(*, tracking_number: str, carrier: str, error: str, raw_code: str = "") -> TrackingResult:
    return TrackingResult(
        tracking_number=tracking_number,
        carrier=carrier,
        found=False,
        status=str(Status.UNKNOWN),
        raw_code=raw_code,
        error=error or "not found",
    )


def missing_results(
    results: list[TrackingResult], numbers: Sequence[str], *, carrier: str, error: str
) -> list[TrackingResult]:
    """`results` plus a not-found result for every number asked that the response did not mention."""
    answered = {normalize(result.tracking_number) for result in results}
    extra = [
        not_found(tracking_number=number, carrier=carrier, error=error)
        for number in numbers
        if normalize(number) not in answered
    ]
    return results + extra


def match_requested(number: str, numbers: Sequence[str]) -> str:
    """The number as the caller asked for it (carriers may echo it in another case or spacing)."""
    wanted = normalize(number)
    for asked in numbers:
        if normalize(asked) == wanted:
            return asked
    return number
