"""Chart geometry for the report's inline SVG: bars, a stacked bar and its legend.

The numbers are computed here, the markup is in ``templates/_charts.html.j2``. Text is
measured with a width estimate per character (wide CJK, narrow Latin, at the page's
12 px), and every label column, value column and legend row is sized from what it has
to hold, so no label is cut off at the edge of its chart: a label wider than the most a
chart can give it is shortened with an ellipsis and keeps its full text in a tooltip.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

PALETTE = {
    "completed": "#2e7d32",
    "confirmed": "#1b5e20",
    "opted_out": "#8e24aa",
    "answering_machine": "#6d4c41",
    "no_answer": "#f9a825",
    "busy": "#ef6c00",
    "call_failed": "#c62828",
    "call_canceled": "#ad1457",
    "failed": "#c62828",
    "skipped": "#757575",
    "planned": "#90a4ae",
    "synthesized": "#4fc3f7",
    "dialing": "#0288d1",
    "dialed": "#01579b",
    "open": "#b0bec5",
}
DEFAULT_COLOR = "#3f6cb5"
FONT_PX = 12.0
_BAR_H, _GAP, _TOP, _PAD = 18, 6, 24, 8


def text_width(text: str, font_px: float = FONT_PX) -> float:
    """An upper estimate of ``text``'s width in pixels (sans-serif at ``font_px``)."""
    width = 0.0
    for char in text:
        if unicodedata.east_asian_width(char) in ("W", "F"):
            width += 1.0
        elif char.isupper() or char in "mwMW%@":
            width += 0.72
        elif char in "ijl.,:;'|!() ":
            width += 0.32
        else:
            width += 0.58
    return width * font_px


def fit(text: str, max_px: float) -> str:
    """``text``, shortened with an ellipsis if it is wider than ``max_px``."""
    if text_width(text) <= max_px:
        return text
    while text and text_width(text + "…") > max_px:
        text = text[:-1]
    return text + "…"


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


@dataclass(frozen=True)
class Bar:
    label: str  # as drawn (may be shortened)
    full_label: str
    value_text: str
    color: str
    y: float
    width: float


@dataclass(frozen=True)
class BarChart:
    title: str
    width: int
    height: int
    label_w: float
    plot_w: float
    bar_h: int
    bars: tuple[Bar, ...]

    @property
    def value_x(self) -> float:
        return self.label_w + self.plot_w + 6


def bar_chart(
    title: str,
    data: Sequence[tuple[str, float]],
    *,
    percent_scale: bool = False,
    width: int = 500,
    colors: Mapping[str, str] | None = None,
) -> BarChart | None:
    """Horizontal bars, one per ``(label, value)``; None when there is nothing to draw.

    :param percent_scale: values are 0–1 shares, drawn against a 100 % scale
    """
    if not data:
        return None
    colors = colors or PALETTE
    shown = [percent(v) if percent_scale else f"{v:,.0f}" for _, v in data]
    value_w = max(text_width(s) for s in shown) + 2 * _PAD
    widest = max(text_width(str(label)) for label, _ in data) + _PAD
    # Labels get what they need, up to 45 % of the chart; the bars keep the rest.
    label_w = min(widest, width * 0.45)
    plot_w = max(width - label_w - value_w, 40.0)
    peak = 1.0 if percent_scale else max((v for _, v in data), default=0) or 1.0
    bars = tuple(
        Bar(
            label=fit(str(label), label_w - _PAD),
            full_label=str(label),
            value_text=text,
            color=colors.get(str(label), DEFAULT_COLOR),
            y=_TOP + i * (_BAR_H + _GAP),
            width=round(max(0.0, plot_w * (value / peak)), 1),
        )
        for i, ((label, value), text) in enumerate(zip(data, shown, strict=True))
    )
    height = _TOP + len(bars) * (_BAR_H + _GAP) + 4
    total_w = round(label_w + plot_w + value_w)
    return BarChart(title, total_w, height, round(label_w, 1), round(plot_w, 1), _BAR_H, bars)


@dataclass(frozen=True)
class Segment:
    label: str
    value: int
    color: str
    x: float
    width: float


@dataclass(frozen=True)
class LegendEntry:
    text: str
    color: str
    x: float
    y: float


@dataclass(frozen=True)
class StackedBar:
    title: str
    width: int
    height: int
    segments: tuple[Segment, ...]
    legend: tuple[LegendEntry, ...]


def stacked_bar(title: str, counts: Mapping[str, int], width: int = 1040) -> StackedBar | None:
    """One 100 % bar split by ``counts``, with a legend wrapped onto as many rows as needed."""
    total = sum(counts.values())
    if not total:
        return None
    segments, legend = [], []
    x, legend_x, legend_y = 0.0, 0.0, 63.0
    for label, value in counts.items():
        color = PALETTE.get(label, DEFAULT_COLOR)
        w = width * value / total
        segments.append(Segment(label, value, color, round(x, 1), round(w, 1)))
        x += w
        text = f"{label} {value:,} ({value / total:.0%})"
        entry_w = 14 + text_width(text) + 16
        if legend_x > 0 and legend_x + entry_w > width:
            legend_x, legend_y = 0.0, legend_y + 18
        legend.append(LegendEntry(text, color, legend_x, legend_y))
        legend_x += entry_w
    return StackedBar(title, width, int(legend_y + 8), tuple(segments), tuple(legend))
