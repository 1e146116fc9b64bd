"""CSV cells safe to open in a spreadsheet: the one formula escaper of every CSV export (admin and commands).

Excel, LibreOffice and Google Sheets run a cell that starts with `=`, `+`, `-` or `@` as a formula, and strip a
leading tab or carriage return before deciding (OWASP, CSV injection). Order ids, channel names and emails come
from outside OMA, so such a cell gets a leading apostrophe: the spreadsheet shows it as text.
"""

from __future__ import annotations

from typing import Any

FORMULA_PREFIXES: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> str:
    """CSV cells that a spreadsheet would run as a formula get a leading apostrophe."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text
