"""Each carrier's wire format, rendered from a journey's visible steps.

What each function returns is what the real API answers (the shapes documented in the carriers' API references
and their published examples): UPS Track API v1, FedEx Track API v1, USPS Tracking v3 (DETAIL), DHL Shipment
Tracking - Unified, 17TRACK v2.2. Local event times carry the offset of the place where the scan happened, the
way each carrier gives it (UPS: local date/time + gmtOffset; FedEx: ISO with offset; USPS: local timestamp +
GMTTimestamp + GMTOffset; DHL: ISO with offset; 17TRACK: time_iso with offset + time_utc).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from tracking.sandbox.journeys import Milestone, Step

M = Milestone


@dataclass(frozen=True, slots=True)
class Place:
    city: str
    region: str  # state or province code
    postal: str
    country: str  # ISO 3166 alpha-2
    zone: str  # IANA time zone

    def local(self, moment: datetime) -> datetime:
        return moment.astimezone(ZoneInfo(self.zone))


@dataclass(frozen=True, slots=True)
class Route:
    origin: Place
    hub: Place
    destination: Place

    def place(self, milestone: Milestone) -> Place:
        if milestone in (M.LABEL_CREATED, M.PICKED_UP, M.DEPARTED, M.RETURNED):
            return self.origin
        if milestone in (M.DELAYED, M.DAMAGED):
            return self.hub
        return self.destination


ROUTES: dict[str, Route] = {
    "ups": Route(
        Place("ATLANTA", "GA", "30301", "US", "America/New_York"),
        Place("LOUISVILLE", "KY", "40209", "US", "America/Kentucky/Louisville"),
        Place("DENVER", "CO", "80202", "US", "America/Denver"),
    ),
    "fedex": Route(
        Place("SEATTLE", "WA", "98101", "US", "America/Los_Angeles"),
        Place("MEMPHIS", "TN", "38118", "US", "America/Chicago"),
        Place("BOSTON", "MA", "02108", "US", "America/New_York"),
    ),
    "usps": Route(
        Place("JAMAICA", "NY", "11430", "US", "America/New_York"),
        Place("JACKSONVILLE", "FL", "32099", "US", "America/New_York"),
        Place("PHOENIX", "AZ", "85004", "US", "America/Phoenix"),
    ),
    "dhl": Route(
        Place("LEIPZIG", "", "04435", "DE", "Europe/Berlin"),
        Place("CINCINNATI", "KY", "41048", "US", "America/New_York"),
        Place("CHICAGO", "IL", "60601", "US", "America/Chicago"),
    ),
    "17track": Route(
        Place("SHENZHEN", "", "518000", "CN", "Asia/Shanghai"),
        Place("LOS ANGELES", "CA", "90045", "US", "America/Los_Angeles"),
        Place("PORTLAND", "OR", "97201", "US", "America/Los_Angeles"),
    ),
}
SIGNER = "J. SMITH"


def _offset(moment: datetime) -> str:
    text = moment.strftime("%z")  # +0200
    return f"{text[:3]}:{text[3:]}"


def _planned_delivery(steps_all: list[Step]) -> datetime | None:
    final = [step for step in steps_all if step.milestone in (M.DELIVERED, M.AVAILABLE_FOR_PICKUP)]
    return final[-1].at if final else None


# --- UPS Track API v1 -------------------------------------------------------------------------------------

# milestone -> (activity type, code, 3-digit statusCode, description)
UPS_CODES: dict[Milestone, tuple[str, str, str, str]] = {
    M.LABEL_CREATED: ("M", "MP", "003", "Shipper created a label, UPS has not received the package yet."),
    M.PICKED_UP: ("P", "PU", "038", "Pickup Scan"),
    M.DEPARTED: ("I", "DP", "005", "Departed from Facility"),
    M.ARRIVED: ("I", "AR", "005", "Arrived at Facility"),
    M.DELAYED: ("X", "WD", "032", "A weather emergency may delay your package."),
    M.DAMAGED: ("X", "DM", "059", "Damage reported."),
    M.OUT_FOR_DELIVERY: ("I", "OT", "072", "Loaded on Delivery Vehicle"),
    M.ATTEMPT_FAILED: ("X", "48", "022", "The receiver was not available for delivery. We'll make a second attempt."),
    M.AVAILABLE_FOR_PICKUP: ("X", "ZP", "040", "Ready for Customer Pickup"),
    M.DELIVERED: ("D", "KB", "011", "DELIVERED"),
    M.RETURNING: ("X", "RS", "033", "Returning to Sender: the receiver refused the delivery."),
    M.RETURNED: ("X", "RT", "034", "Returned to Sender"),
}


def _ups_status(milestone: Milestone) -> dict[str, str]:
    activity_type, code, status_code, description = UPS_CODES[milestone]
    return {
        "type": activity_type,
        "description": description,
        "code": code,
        "statusCode": status_code,
        "simplifiedTextDescription": description,
    }


def _ups_address(place: Place) -> dict[str, str]:
    return {
        "city": place.city,
        "stateProvince": place.region,
        "postalCode": place.postal,
        "country": place.country,
        "countryCode": place.country,
    }


def ups_details(number: str, visible: list[Step], all_steps: list[Step]) -> tuple[int, dict[str, Any]]:
    route = ROUTES["ups"]
    if not visible:
        return 404, {"response": {"errors": [{"code": "TW0001", "message": "Tracking Information Not Found"}]}}
    activities = []
    for step in reversed(visible):
        place = route.place(step.milestone)
        local = place.local(step.at)
        utc = step.at
        activities.append(
            {
                "location": {"address": _ups_address(place), "slic": "8566"},
                "status": _ups_status(step.milestone),
                "date": local.strftime("%Y%m%d"),
                "time": local.strftime("%H%M%S"),
                "gmtDate": utc.strftime("%Y%m%d"),
                "gmtOffset": _offset(local),
                "gmtTime": utc.strftime("%H:%M:%S"),
            }
        )
    latest = visible[-1]
    package: dict[str, Any] = {
        "trackingNumber": number,
        "activity": activities,
        "currentStatus": {k: v for k, v in _ups_status(latest.milestone).items() if k != "type"},
        "packageAddress": [
            {"type": "ORIGIN", "address": _ups_address(route.origin)},
            {"type": "DESTINATION", "address": _ups_address(route.destination)},
        ],
        "packageCount": 1,
        "service": {"code": "003", "description": "UPS Ground"},
        "weight": {"unitOfMeasurement": "LBS", "weight": "2.00"},
    }
    if latest.milestone == M.DELIVERED:
        local = route.destination.local(latest.at)
        package["deliveryDate"] = [{"type": "DEL", "date": local.strftime("%Y%m%d")}]
        package["deliveryTime"] = {"type": "DEL", "startTime": "", "endTime": local.strftime("%H%M%S")}
        package["deliveryInformation"] = {"location": "Front Door", "receivedBy": SIGNER}
    elif (planned := _planned_delivery(all_steps)) is not None:
        local = route.destination.local(planned)
        package["deliveryDate"] = [{"type": "SDD", "date": local.strftime("%Y%m%d")}]
        package["deliveryTime"] = {"type": "EOD", "startTime": "", "endTime": "200000"}
    return 200, {"trackResponse": {"shipment": [{"inquiryNumber": number, "package": [package]}]}}


# --- FedEx Track API v1 -----------------------------------------------------------------------------------

# milestone -> (eventType, derivedStatusCode, eventDescription, exceptionDescription, delay type or "")
FEDEX_CODES: dict[Milestone, tuple[str, str, str, str, str]] = {
    M.LABEL_CREATED: ("OC", "IN", "Shipment information sent to FedEx", "", ""),
    M.PICKED_UP: ("PU", "PU", "Picked up", "", ""),
    M.DEPARTED: ("DP", "IT", "Left FedEx origin facility", "", ""),
    M.ARRIVED: ("AR", "IT", "At local FedEx facility", "", ""),
    M.DELAYED: ("DY", "DY", "Delay", "Weather delay", "WEATHER"),
    M.DAMAGED: ("SE", "SE", "Shipment exception", "Package damaged", ""),
    M.OUT_FOR_DELIVERY: ("OD", "OD", "On FedEx vehicle for delivery", "", ""),
    M.ATTEMPT_FAILED: ("DE", "DE", "Delivery exception", "Customer not available or business closed", ""),
    M.AVAILABLE_FOR_PICKUP: ("HP", "HP", "Ready for recipient pickup", "Package available for pickup", ""),
    M.DELIVERED: ("DL", "DL", "Delivered", "", ""),
    M.RETURNING: ("RS", "RS", "Return to shipper", "Refused by recipient", ""),
    M.RETURNED: ("RS", "RS", "Returned to shipper", "Delivered to shipper", ""),
}


def _fedex_address(place: Place) -> dict[str, Any]:
    return {
        "city": place.city,
        "stateOrProvinceCode": place.region,
        "postalCode": place.postal,
        "countryCode": place.country,
        "residential": False,
    }


def fedex_track_result(number: str, visible: list[Step], all_steps: list[Step]) -> dict[str, Any]:
    route = ROUTES["fedex"]
    if not visible:
        return {
            "trackingNumber": number,
            "trackResults": [
                {
                    "trackingNumberInfo": {"trackingNumber": number, "trackingNumberUniqueId": "", "carrierCode": ""},
                    "error": {
                        "code": "TRACKING.TRACKINGNUMBER.NOTFOUND",
                        "message": "Tracking number cannot be found. Please correct the tracking number and try again.",
                    },
                }
            ],
        }
    scans = []
    for step in reversed(visible):
        event_type, derived, description, exception, delay = FEDEX_CODES[step.milestone]
        place = route.place(step.milestone)
        scan: dict[str, Any] = {
            "date": place.local(step.at).isoformat(timespec="seconds"),
            "eventType": event_type,
            "eventDescription": description,
            "exceptionCode": "",
            "exceptionDescription": exception,
            "scanLocation": _fedex_address(place),
            "locationType": "FEDEX_FACILITY",
            "derivedStatusCode": derived,
            "derivedStatus": description,
        }
        if delay:
            scan["delayDetail"] = {"type": delay, "status": "DELAYED"}
        scans.append(scan)
    latest = visible[-1]
    event_type, derived, description, exception, delay = FEDEX_CODES[latest.milestone]
    latest_detail: dict[str, Any] = {
        "code": event_type,
        "derivedCode": derived,
        "statusByLocale": description,
        "description": description,
        "scanLocation": _fedex_address(route.place(latest.milestone)),
    }
    if exception:
        latest_detail["ancillaryDetails"] = [{"reason": "", "reasonDescription": exception}]
    if delay:
        latest_detail["delayDetail"] = {"type": delay, "status": "DELAYED"}
    result: dict[str, Any] = {
        "trackingNumberInfo": {
            "trackingNumber": number,
            "trackingNumberUniqueId": f"12024~{number}~FX",
            "carrierCode": "FDXE",
        },
        "shipperInformation": {"address": _fedex_address(route.origin)},
        "recipientInformation": {"address": _fedex_address(route.destination)},
        "latestStatusDetail": latest_detail,
        "dateAndTimes": [],
        "scanEvents": scans,
        "serviceDetail": {"type": "FEDEX_GROUND", "description": "FedEx Ground"},
    }
    if latest.milestone == M.DELIVERED:
        result["dateAndTimes"].append(
            {"type": "ACTUAL_DELIVERY", "dateTime": route.destination.local(latest.at).isoformat(timespec="seconds")}
        )
        result["deliveryDetails"] = {"receivedByName": SIGNER, "deliveryAttempts": "0"}
    elif (planned := _planned_delivery(all_steps)) is not None:
        result["estimatedDeliveryTimeWindow"] = {
            "window": {"ends": route.destination.local(planned).isoformat(timespec="seconds")}
        }
    return {"trackingNumber": number, "trackResults": [result]}


# --- USPS Tracking v3 -------------------------------------------------------------------------------------

# milestone -> (eventCode, eventType, statusCategory)
USPS_CODES: dict[Milestone, tuple[str, str, str]] = {
    M.LABEL_CREATED: ("GX", "Shipping Label Created, USPS Awaiting Item", "Pre-Shipment"),
    M.PICKED_UP: ("03", "USPS in possession of item", "Accepted"),
    M.DEPARTED: ("T1", "Departed USPS Regional Facility", "In Transit"),
    M.ARRIVED: ("A1", "Arrived at USPS Regional Facility", "In Transit"),
    M.DELAYED: ("NT", "In Transit, Arriving Late", "In Transit"),
    M.DAMAGED: ("", "Item Damaged", "Alert"),
    M.OUT_FOR_DELIVERY: ("OF", "Out for Delivery", "Out for Delivery"),
    M.ATTEMPT_FAILED: ("02", "Notice Left (No Authorized Recipient Available)", "Delivery Attempt"),
    M.AVAILABLE_FOR_PICKUP: ("16", "Available for Pickup", "Available for Pickup"),
    M.DELIVERED: ("01", "Delivered, Front Door/Porch", "Delivered"),
    M.RETURNING: ("09", "Return to Sender", "Return to Sender"),
    M.RETURNED: ("", "Delivered, To Original Sender", "Return to Sender"),
}


def usps_tracking(number: str, visible: list[Step], all_steps: list[Step]) -> tuple[int, dict[str, Any]]:
    route = ROUTES["usps"]
    if not visible:
        return 404, {
            "apiVersion": "3.2.6",
            "error": {
                "code": "404",
                "message": "The tracking number may be incorrect or the status update is not yet available.",
                "errors": [{"status": "404", "code": "404", "title": "Not Found",
                            "detail": f"No tracking information for {number}."}],
            },
        }
    events = []
    for step in reversed(visible):
        code, event_type, _ = USPS_CODES[step.milestone]
        place = route.place(step.milestone)
        local = place.local(step.at)
        events.append(
            {
                "eventType": event_type,
                "eventTimestamp": local.replace(tzinfo=None).isoformat(timespec="seconds"),
                "GMTTimestamp": step.at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "GMTOffset": _offset(local),
                "eventCountry": None,
                "eventCity": place.city,
                "eventState": place.region,
                "eventZIP": place.postal,
                "firm": None,
                "name": SIGNER if step.milestone == M.DELIVERED else None,
                "authorizedAgent": "false",
                "eventCode": code,
            }
        )
    latest = visible[-1]
    _, event_type, category = USPS_CODES[latest.milestone]
    body: dict[str, Any] = {
        "trackingNumber": number,
        "mailClass": "USPS Ground Advantage",
        "originCity": route.origin.city,
        "originState": route.origin.region,
        "originZIP": route.origin.postal,
        "destinationCity": route.destination.city,
        "destinationState": route.destination.region,
        "destinationZIP": route.destination.postal,
        "status": event_type,
        "statusCategory": category,
        "statusSummary": f"{event_type} in {route.place(latest.milestone).city}.",
        "trackingEvents": events,
    }
    planned = _planned_delivery(all_steps)
    if latest.milestone != M.DELIVERED and planned is not None:
        body["expectedDeliveryTimeStamp"] = route.destination.local(planned).isoformat(timespec="seconds")
    return 200, body


# --- DHL Shipment Tracking - Unified ------------------------------------------------------------------------

# milestone -> (statusCode, status, description)
DHL_CODES: dict[Milestone, tuple[str, str, str]] = {
    M.LABEL_CREATED: ("pre-transit", "SHIPMENT INFORMATION RECEIVED", "Shipment information received"),
    M.PICKED_UP: ("transit", "PICKED UP", "Shipment picked up"),
    M.DEPARTED: ("transit", "DEPARTED", "Departed Facility"),
    M.ARRIVED: ("transit", "ARRIVED", "Arrived at Delivery Facility"),
    M.DELAYED: ("transit", "DELAYED", "Shipment delayed due to weather conditions"),
    M.DAMAGED: ("failure", "DAMAGED", "Shipment damaged"),
    M.OUT_FOR_DELIVERY: ("transit", "WITH DELIVERY COURIER", "Out for delivery: with delivery courier"),
    M.ATTEMPT_FAILED: ("failure", "DELIVERY ATTEMPTED", "Delivery attempted: recipient not home"),
    M.AVAILABLE_FOR_PICKUP: ("transit", "READY FOR PICKUP", "Available for pickup at the DHL ServicePoint"),
    M.DELIVERED: ("delivered", "DELIVERED", "Delivered"),
    M.RETURNING: ("failure", "RETURNING", "Refused by recipient: returning to shipper"),
    M.RETURNED: ("failure", "RETURNED", "Returned to shipper"),
}


def _dhl_location(place: Place) -> dict[str, Any]:
    return {
        "address": {
            "countryCode": place.country,
            "postalCode": place.postal,
            "addressLocality": f"{place.city}, {place.region}".rstrip(", "),
        }
    }


def _dhl_event(step: Step, route: Route) -> dict[str, Any]:
    status_code, status, description = DHL_CODES[step.milestone]
    place = route.place(step.milestone)
    return {
        "timestamp": place.local(step.at).isoformat(timespec="seconds"),
        "location": _dhl_location(place),
        "statusCode": status_code,
        "status": status,
        "description": description,
    }


def dhl_shipments(number: str, visible: list[Step], all_steps: list[Step]) -> tuple[int, dict[str, Any]]:
    route = ROUTES["dhl"]
    if not visible:
        return 404, {
            "type": "about:blank",
            "title": "No result found",
            "status": 404,
            "detail": f"No shipment with given tracking number found: {number}.",
        }
    shipment: dict[str, Any] = {
        "id": number,
        "service": "express",
        "origin": _dhl_location(route.origin),
        "destination": _dhl_location(route.destination),
        "status": _dhl_event(visible[-1], route),
        "details": {"product": {"productName": "DHL EXPRESS WORLDWIDE"}},
        "events": [_dhl_event(step, route) for step in reversed(visible)],
    }
    if visible[-1].milestone == M.DELIVERED:
        shipment["details"]["proofOfDelivery"] = {
            "timestamp": route.destination.local(visible[-1].at).isoformat(timespec="seconds"),
            "signed": {"name": SIGNER},
        }
    elif (planned := _planned_delivery(all_steps)) is not None:
        shipment["estimatedTimeOfDelivery"] = route.destination.local(planned).isoformat(timespec="seconds")
    return 200, {"shipments": [shipment]}


# --- 17TRACK v2.2 -----------------------------------------------------------------------------------------

# milestone -> (stage, sub_status, description)
SEVENTEEN_CODES: dict[Milestone, tuple[str, str, str]] = {
    M.LABEL_CREATED: ("InfoReceived", "InfoReceived", "Electronic information submitted by shipper"),
    M.PICKED_UP: ("InTransit", "InTransit_PickedUp", "Posting"),
    M.DEPARTED: ("InTransit", "InTransit_Departure", "Departure from outward office of exchange"),
    M.ARRIVED: ("InTransit", "InTransit_Arrival", "Arrival at inward office of exchange"),
    M.DELAYED: ("Exception", "Exception_Delayed", "Delayed: flight cancelled due to weather"),
    M.DAMAGED: ("Exception", "Exception_Damage", "Item damaged"),
    M.OUT_FOR_DELIVERY: ("OutForDelivery", "OutForDelivery_Other", "Out for delivery"),
    M.ATTEMPT_FAILED: ("DeliveryFailure", "DeliveryFailure_NoBody", "Delivery attempted, addressee absent"),
    M.AVAILABLE_FOR_PICKUP: ("AvailableForPickup", "AvailableForPickup_Other", "Arrived at pickup point"),
    M.DELIVERED: ("Delivered", "Delivered_Other", "Delivered"),
    M.RETURNING: ("Exception", "Exception_Returning", "Refused by addressee, returning to sender"),
    M.RETURNED: ("Exception", "Exception_Returned", "Returned to sender"),
}
SEVENTEEN_PROVIDER = {"key": 3011, "name": "China Post", "alias": "China Post", "country": "CN"}


def seventeen_track_info(number: str, visible: list[Step], all_steps: list[Step]) -> dict[str, Any]:
    """One `accepted` entry of gettrackinfo (the number is known: registered)."""
    route = ROUTES["17track"]
    events = []
    for step in reversed(visible):
        stage, sub_status, description = SEVENTEEN_CODES[step.milestone]
        place = route.place(step.milestone)
        local = place.local(step.at)
        events.append(
            {
                "time_iso": local.isoformat(timespec="seconds"),
                "time_utc": step.at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "time_raw": {
                    "date": local.strftime("%Y-%m-%d"),
                    "time": local.strftime("%H:%M:%S"),
                    "timezone": _offset(local),
                },
                "description": description,
                "description_translation": None,
                "location": f"{place.city}, {place.country}",
                "stage": stage,
                "sub_status": sub_status,
                "address": {"country": place.country, "state": place.region, "city": place.city,
                            "street": None, "postal_code": place.postal, "coordinates": None},
            }
        )
    if visible:
        stage, sub_status, _ = SEVENTEEN_CODES[visible[-1].milestone]
        latest_status = {"status": stage, "sub_status": sub_status, "sub_status_descr": None}
    else:
        latest_status = {"status": "NotFound", "sub_status": "NotFound_Other", "sub_status_descr": None}
    planned = _planned_delivery(all_steps)
    delivered = bool(visible) and visible[-1].milestone == M.DELIVERED
    return {
        "number": number,
        "carrier": SEVENTEEN_PROVIDER["key"],
        "param": None,
        "tag": None,
        "track_info": {
            "shipping_info": {
                "shipper_address": {"country": route.origin.country, "city": route.origin.city},
                "recipient_address": {"country": route.destination.country, "state": route.destination.region,
                                      "city": route.destination.city},
            },
            "latest_status": latest_status,
            "latest_event": events[0] if events else None,
            "time_metrics": {
                "days_after_order": 0,
                "estimated_delivery_date": {
                    "source": "17TRACK",
                    "from": None,
                    "to": route.destination.local(planned).isoformat(timespec="seconds")
                    if planned is not None and not delivered else None,
                },
            },
            "misc_info": {"signed_by": SIGNER if delivered else None},
            "tracking": {
                "providers_hash": 0,
                "providers": [
                    {
                        "provider": SEVENTEEN_PROVIDER,
                        "service_type": "Registered parcel",
                        "latest_sync_status": "Success",
                        "events_hash": 0,
                        "events": events,
                    }
                ]
                if events
                else [],
            },
        },
    }
