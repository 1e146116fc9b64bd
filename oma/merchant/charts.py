"""Server-side charts: small inline SVGs (no JavaScript, no CDN), readable without colour and by screen readers
(each chart has a title and a text description, and every bar carries its value as text)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    colour: str = "#417690"
    display: str = ""  # the value as shown (defaults to the number)
    url: str = ""


def bar_chart(bars: Sequence[Bar], *, title: str, width: int = 520, bar_height: int = 22, label_width: int = 170,
              ) -> SafeString:
    """Horizontal bars, longest = full width. Labels and links are escaped."""
    if not bars:
        return mark_safe(f'<p class="help">{escape(title)}: nothing yet.</p>')  # noqa: S308 - escaped
    gap = 6
    top = 4
    height = top + len(bars) * (bar_height + gap)
    value_width = 70
    plot = max(40, width - label_width - value_width)
    biggest = max((bar.value for bar in bars), default=0) or 1
    description = "; ".join(f"{bar.label}: {bar.display or _number(bar.value)}" for bar in bars)
    parts = [
        f'<svg class="oma-chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" '
        f'width="100%" preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title><desc>{escape(description)}</desc>",
    ]
    for index, bar in enumerate(bars):
        y = top + index * (bar_height + gap)
        length = max(2.0, plot * (bar.value / biggest)) if bar.value else 0
        label = escape(bar.label if len(bar.label) <= 26 else bar.label[:25] + "…")
        text = escape(bar.display or _number(bar.value))
        row = (
            f'<text x="{label_width - 8}" y="{y + bar_height * 0.7:.1f}" text-anchor="end" font-size="12" '
            f'fill="currentColor">{label}</text>'
            f'<rect x="{label_width}" y="{y}" width="{length:.1f}" height="{bar_height}" rx="3" '
            f'fill="{escape(bar.colour)}"></rect>'
            f'<text x="{label_width + length + 6:.1f}" y="{y + bar_height * 0.7:.1f}" font-size="12" '
            f'fill="currentColor">{text}</text>'
        )
        if bar.url:
            row = f'<a href="{escape(bar.url)}">{row}</a>'
        parts.append(row)
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated value is escaped above


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"
