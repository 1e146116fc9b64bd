from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def load(carrier: str, name: str) -> Any:
    return json.loads((FIXTURES / carrier / f"{name}.json").read_text())


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def assert_newest_first_and_unique(result: Any) -> None:
    times = [event.occurred_at for event in result.events]
    assert times == sorted(times, reverse=True)
    keys = [(e.occurred_at, e.raw_code, e.raw_text, e.location) for e in result.events]
    assert len(keys) == len(set(keys))
    for event in result.events:
        assert event.occurred_at.utcoffset() is not None and event.occurred_at.utcoffset().total_seconds() == 0
