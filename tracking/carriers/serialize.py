"""TrackingResult -> JSON-ready dict: the shape printed by `parse_tracking` and `track --json`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime

from tracking.carriers.base import TrackingEventRecord, TrackingResult


def format_moment(value: datetime | date | None) -> str | None:
    """UTC ISO 8601 with a Z for datetimes ("2024-11-22T18:58:40Z"), YYYY-MM-DD for dates, None for None."""
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value.astimezone(UTC) if value.tzinfo else value
        return moment.isoformat().replace("+00:00", "Z")
    return value.isoformat()


def event_to_json(event: TrackingEventRecord) -> dict[str, object]:
    return {
        "occurredAt": format_moment(event.occurred_at),
        "status": str(event.status),
        "substatus": str(event.substatus),
        "rawCode": event.raw_code,
        "rawText": event.raw_text,
        "location": event.location,
    }


def result_to_json(result: TrackingResult) -> dict[str, object]:
    """The normalized result: the six documented keys first, then the details a merchant also wants."""
    return {
        "trackingNumber": result.tracking_number,
        "status": str(result.status),
        "substatus": str(result.substatus),
        "events": [event_to_json(event) for event in result.events],
        "estimatedDelivery": format_moment(result.estimated_delivery),
        "deliveredAt": format_moment(result.delivered_at),
        "carrier": result.carrier,
        "found": result.found,
        "rawCode": result.raw_code,
        "rawText": result.raw_text,
        "signedBy": result.signed_by,
        "error": result.error,
    }


def results_to_json(results: Sequence[TrackingResult]) -> dict[str, object] | list[dict[str, object]]:
    """One object for one result, a list when the response held several."""
    if len(results) == 1:
        return result_to_json(results[0])
    return [result_to_json(result) for result in results]
