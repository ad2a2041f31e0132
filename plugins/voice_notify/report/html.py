"""The campaign report as one HTML page a person reads: counts, rates, synthesis.

Rendered from the same dictionary as ``report.json`` (``voice_notify.report.campaign``), stored
beside it as ``reports/<date>/report.html``. Charts are inline SVG drawn here: no
script, no web font, no CDN, so the page renders offline and from an S3 download.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

_PALETTE = {
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
_DEFAULT_COLOR = "#3f6cb5"
_CSS = """
body{font-family:-apple-system,"Segoe UI","Noto Sans","Noto Sans CJK SC","PingFang SC",
  "Microsoft YaHei",sans-serif;margin:24px auto;max-width:1080px;color:#1f2933;padding:0 16px}
h1{font-size:24px;margin:0 0 4px}
h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d9e2ec;padding-bottom:4px}
.sub{color:#52606d;margin:0 0 16px}
.tiles{display:flex;flex-wrap:wrap;gap:12px}
.tile{border:1px solid #d9e2ec;border-radius:6px;padding:10px 14px;min-width:110px;flex:1}
.tile b{display:block;font-size:22px}.tile span{color:#52606d;font-size:13px}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:16px}
table{border-collapse:collapse;font-size:13px;width:100%}
th,td{padding:4px 8px;text-align:right;border-bottom:1px solid #e4e7eb}
th:first-child,td:first-child{text-align:left}th{background:#f5f7fa}td{white-space:nowrap}
svg{max-width:100%;height:auto}svg text{font-size:12px;fill:#1f2933}.muted{color:#7b8794}
footer{margin-top:32px;color:#7b8794;font-size:12px}
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


def bar_chart(
    title: str,
    data: Sequence[tuple[str, float]],
    *,
    percent: bool = False,
    width: int = 500,
    colors: Mapping[str, str] | None = None,
) -> str:
    """Horizontal bars, one per ``(label, value)``, as an inline SVG element.

    :param percent: values are 0–1 shares, drawn against a 100 % scale
    """
    if not data:
        return f'<p class="muted">{_esc(title)}: nothing to show.</p>'
    colors = colors or _PALETTE
    label_w, value_w, bar_h, gap, top = 150, 70, 18, 6, 24
    plot_w = width - label_w - value_w
    peak = 1.0 if percent else max((v for _, v in data), default=0) or 1.0
    height = top + len(data) * (bar_h + gap) + 4
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_esc(title)}">',
        f'<text x="0" y="14" style="font-weight:600">{_esc(title)}</text>',
    ]
    for index, (label, value) in enumerate(data):
        y = top + index * (bar_h + gap)
        w = max(0.0, plot_w * (value / peak))
        shown = _pct(value) if percent else f"{value:,.0f}"
        color = colors.get(label, _DEFAULT_COLOR)
        parts += [
            f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">{_esc(label)}</text>',
            f'<rect x="{label_w}" y="{y}" width="{plot_w}" height="{bar_h}" fill="#f0f4f8"/>',
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color}">'
            f"<title>{_esc(label)}: {shown}</title></rect>",
            f'<text x="{label_w + plot_w + 6}" y="{y + 13}">{shown}</text>',
        ]
    parts.append("</svg>")
    return "".join(parts)


def stacked_bar(title: str, counts: Mapping[str, int], width: int = 1080) -> str:
    """One 100 % bar split by ``counts``, with a legend: the whole campaign at a glance."""
    total = sum(counts.values())
    if not total:
        return f'<p class="muted">{_esc(title)}: nothing to show.</p>'
    height = 70
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_esc(title)}">',
        f'<text x="0" y="14" style="font-weight:600">{_esc(title)}</text>',
    ]
    x = 0.0
    legend_x = 0
    for label, value in counts.items():
        w = width * value / total
        color = _PALETTE.get(label, _DEFAULT_COLOR)
        parts.append(
            f'<rect x="{x:.1f}" y="22" width="{w:.1f}" height="22" fill="{color}">'
            f"<title>{_esc(label)}: {value}</title></rect>"
        )
        x += w
        text = f"{label} {value} ({value / total:.0%})"
        parts += [
            f'<rect x="{legend_x}" y="54" width="10" height="10" fill="{color}"/>',
            f'<text x="{legend_x + 14}" y="63">{_esc(text)}</text>',
        ]
        legend_x += 24 + 7 * len(text)
    parts.append("</svg>")
    return "".join(parts)


def _tile(value: str, label: str) -> str:
    return f'<div class="tile"><b>{_esc(value)}</b><span>{_esc(label)}</span></div>'


def _rates_table(title: str, rates: Mapping[str, Mapping[str, Any]]) -> str:
    head = "".join(
        f"<th>{h}</th>"
        for h in (title, "notices", "skipped", "called", "reached", "call rate", "reached rate")
    )
    body = "".join(
        f"<tr><td>{_esc(name)}</td><td>{r['notices']}</td><td>{r['skipped']}</td>"
        f"<td>{r['called']}</td><td>{r['reached']}</td><td>{_pct(r['call_rate'])}</td>"
        f"<td>{_pct(r['reached_rate'])}</td></tr>"
        for name, r in rates.items()
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _rate_bars(title: str, rates: Mapping[str, Mapping[str, Any]]) -> str:
    data = [(name, r["reached_rate"]) for name, r in rates.items() if r["reached_rate"] is not None]
    return bar_chart(title, data, percent=True)


def _synthesis_section(synthesis: Mapping[str, Any] | None) -> str:
    if not synthesis:
        return '<p class="muted">No synthesis results were found for this date.</p>'
    rows = [
        ("items", synthesis["items"]),
        ("rendered ok", synthesis["ok"]),
        ("failed", synthesis["failed"]),
        ("resumed (audio existed)", synthesis["resumed"]),
        ("by engine", ", ".join(f"{k} {v}" for k, v in synthesis["by_engine"].items()) or "–"),
        ("fallback engine used", f"{synthesis['fallback']} ({_pct(synthesis['fallback_rate'])})"),
        ("speech seconds rendered", f"{synthesis['speech_audio_s']:,.1f} s"),
        (
            "of which from the segment cache",
            f"{synthesis['cached_audio_s']:,.1f} s ({_pct(synthesis['cache_rate'])})",
        ),
        ("synthesis wall seconds", f"{synthesis['synth_seconds']:,.1f} s"),
        ("inside the engine", f"{synthesis['engine_seconds']:,.1f} s"),
        ("audio delivered", f"{synthesis['audio_seconds']:,.1f} s"),
        ("errors", ", ".join(f"{k} {v}" for k, v in synthesis["by_error"].items()) or "none"),
    ]
    body = "".join(f"<tr><td>{_esc(k)}</td><td>{_esc(v)}</td></tr>" for k, v in rows)
    shares = [
        ("fallback", synthesis["fallback_rate"] or 0.0),
        ("segment cache", synthesis["cache_rate"] or 0.0),
    ]
    chart = bar_chart("Fallback and cache rates", shares, percent=True, width=480)
    return f'<div class="grid"><table>{body}</table><div>{chart}</div></div>'


def render(report: Mapping[str, Any]) -> str:
    """The page for one campaign report (the dictionary written as ``report.json``)."""
    date = report["campaign_date"]
    by_state = report.get("by_state", {})
    skipped = by_state.get("skipped", 0)
    outcomes = report.get("by_outcome", {})
    called = sum(outcomes.values())
    reached = sum(v for k, v in outcomes.items() if k in ("completed", "confirmed", "opted_out"))
    synthesis = report.get("synthesis") or {}
    tiles = [
        _tile(f"{report['notices']:,}", "notices"),
        _tile(f"{report['notices'] - skipped:,}", "planned (not skipped)"),
        _tile(f"{report.get('calls', 0):,}", "calls placed (attempts)"),
        _tile(_pct(reached / called if called else None), "reached, of notices called"),
        _tile(_pct(synthesis.get("fallback_rate")), "fallback engine"),
        _tile(_pct(synthesis.get("cache_rate")), "speech from cache"),
        _tile(f"{synthesis.get('synth_seconds', 0):,.1f} s", "synthesis seconds"),
    ]
    reasons = sorted(report.get("by_reason", {}).items(), key=lambda kv: (-kv[1], kv[0]))
    rates_locale = report.get("rates_by_locale") or {}
    rates_type = report.get("rates_by_notice_type") or {}
    sections = [
        f"<h1>Voice notices, campaign {_esc(date)}</h1>",
        '<p class="sub">Every notice of the date, whichever run or redial settled it. '
        'Machine-readable: <a href="report.json">report.json</a>.</p>',
        f'<div class="tiles">{"".join(tiles)}</div>',
        "<h2>Where every notice ended</h2>",
        stacked_bar("Notices by ledger state", dict(sorted(by_state.items()))),
        "<h2>Outcomes and reasons</h2>",
        '<div class="grid">',
        bar_chart("Notices by final call outcome", sorted(outcomes.items()), width=500),
        bar_chart(
            "Call attempts by outcome",
            sorted(report.get("calls_by_outcome", {}).items()),
            width=500,
        ),
        "</div>",
        bar_chart("Skips and failures by reason code", reasons[:15], width=1080),
        "<h2>Rates by dialect (locale)</h2>",
        f'<div class="grid"><div>{_rates_table("locale", rates_locale)}</div>'
        f"<div>{_rate_bars('Reached rate by locale', rates_locale)}</div></div>",
        "<h2>Rates by notice type</h2>",
        f'<div class="grid"><div>{_rates_table("notice type", rates_type)}</div>'
        f"<div>{_rate_bars('Reached rate by notice type', rates_type)}</div></div>",
        "<h2>Synthesis</h2>",
        _synthesis_section(report.get("synthesis")),
        "<footer>voice-notify campaign report. Reached = completed, confirmed or opted out "
        "(the customer heard the notice); rates are over notices called. No customer data "
        "is shown on this page.</footer>",
    ]
    return (
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">'
        f"<title>Campaign {_esc(date)}: voice notices</title><style>{_CSS}</style></head>"
        f"<body>{''.join(sections)}</body></html>\n"
    )
