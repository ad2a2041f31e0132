"""The campaign report as one HTML page a person reads: counts, rates, voices, synthesis.

Rendered from the same dictionary as ``report.json`` (``voice_notify.report.campaign``)
with the Jinja template ``templates/report.html.j2`` (autoescaped), stored beside the
JSON as ``reports/<date>/report.html``. Charts are inline SVG (``report.charts``): no
script, no web font, no CDN, so the page renders offline and from an S3 download.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from functools import cache
from typing import Any

import jinja2

from voice_notify import capacity
from voice_notify.report import charts


@cache
def environment() -> jinja2.Environment:
    """The report's (and the console's) Jinja environment: autoescaped, strict."""
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(
            [
                jinja2.PackageLoader("voice_notify.report", "templates"),
                jinja2.PackageLoader("voice_notify.console", "templates"),
            ]
        ),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
        keep_trailing_newline=True,
    )
    env.filters["pct"] = charts.percent
    # JSON as people read it (Chinese as written); the page's autoescape still applies.
    env.filters["json"] = lambda value: json.dumps(value, ensure_ascii=False, sort_keys=True)
    env.filters["when"] = _when
    return env


def _when(value: Any) -> str:
    """A timestamp to the second (the ledger's are naive UTC)."""
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, str) and len(value) > 19 and value[10] == "T":
        return value[:19].replace("T", " ")
    return "" if value is None else str(value)


def _synthesis_rows(synthesis: Mapping[str, Any]) -> list[tuple[str, str]]:
    pct = charts.percent
    return [
        ("items", str(synthesis["items"])),
        ("rendered ok", str(synthesis["ok"])),
        ("failed", str(synthesis["failed"])),
        ("resumed (audio existed)", str(synthesis["resumed"])),
        ("by engine", ", ".join(f"{k} {v}" for k, v in synthesis["by_engine"].items()) or "–"),
        ("fallback engine used", f"{synthesis['fallback']} ({pct(synthesis['fallback_rate'])})"),
        ("speech seconds rendered", f"{synthesis['speech_audio_s']:,.1f} s"),
        (
            "of which from the segment cache",
            f"{synthesis['cached_audio_s']:,.1f} s ({pct(synthesis['cache_rate'])})",
        ),
        ("synthesis wall seconds", f"{synthesis['synth_seconds']:,.1f} s"),
        ("inside the engine", f"{synthesis['engine_seconds']:,.1f} s"),
        ("audio delivered", f"{synthesis['audio_seconds']:,.1f} s"),
        ("errors", ", ".join(f"{k} {v}" for k, v in synthesis["by_error"].items()) or "none"),
    ]


def _figure(value: Any, unit: str) -> str:
    if value is None:
        return "–"
    if unit == "s":
        return capacity.duration(float(value))
    if unit == "bytes":
        return capacity.size(float(value))
    if unit == "h":
        return f"{float(value):,.3f} h"
    return f"{float(value):,.0f}"


def _capacity_rows(section: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The report's capacity section as the page's rows (units as people read them)."""
    if not section:
        return None
    measured = set(section["measured_inputs"])
    return {
        "measured_inputs": section["measured_inputs"],
        "compared": [
            {
                "name": row["figure"],
                "predicted": _figure(row["predicted"], row["unit"]),
                "measured": _figure(row["measured"], row["unit"]),
                "ratio": "–" if row["ratio"] is None else f"{row['ratio']:.2f}",
            }
            for row in section["compared"]
        ],
        "inputs": [
            (f"{name}{' (measured)' if name in measured else ''}", "–" if v is None else str(v))
            for name, v in section["inputs"].items()
        ],
    }


def _rate_section(heading: str, name: str, rates: Mapping[str, Mapping[str, Any]]) -> dict:
    data = [(k, r["reached_rate"]) for k, r in rates.items() if r["reached_rate"] is not None]
    return {
        "heading": heading,
        "name": name,
        "rates": rates,
        "chart": charts.bar_chart(f"Reached rate by {name}", data, percent_scale=True),
        "chart_title": f"Reached rate by {name}",
    }


def render(report: Mapping[str, Any]) -> str:
    """The page for one campaign report (the dictionary written as ``report.json``)."""
    by_state = report.get("by_state", {})
    outcomes = report.get("by_outcome", {})
    called = sum(outcomes.values())
    reached = sum(v for k, v in outcomes.items() if k in ("completed", "confirmed", "opted_out"))
    synthesis = report.get("synthesis") or {}
    pct = charts.percent
    tiles = [
        (f"{report['notices']:,}", "notices"),
        (f"{report['notices'] - by_state.get('skipped', 0):,}", "planned (not skipped)"),
        (f"{report.get('calls', 0):,}", "calls placed (attempts)"),
        (
            f"{(report.get('merged_calls') or {}).get('calls', 0):,}",
            "merged calls (two notices, one call)",
        ),
        (pct(reached / called if called else None), "reached, of notices called"),
        (pct(synthesis.get("fallback_rate")), "fallback engine"),
        (pct(synthesis.get("cache_rate")), "speech from cache"),
        (f"{synthesis.get('synth_seconds', 0):,.1f} s", "synthesis seconds"),
    ]
    reasons = sorted(report.get("by_reason", {}).items(), key=lambda kv: (-kv[1], kv[0]))
    context = {
        "report": report,
        "tiles": tiles,
        "state_chart": charts.stacked_bar(
            "Notices by ledger state", dict(sorted(by_state.items()))
        ),
        "outcome_chart": charts.bar_chart(
            "Notices by final call outcome", sorted(outcomes.items()), width=520
        ),
        "attempt_chart": charts.bar_chart(
            "Call attempts by outcome",
            sorted(report.get("calls_by_outcome", {}).items()),
            width=520,
        ),
        "reason_chart": charts.bar_chart(
            "Skips and failures by reason code", reasons[:15], width=1040
        ),
        "rate_sections": [
            _rate_section(
                "Rates by dialect (locale)", "locale", report.get("rates_by_locale") or {}
            ),
            _rate_section(
                "Rates by notice type", "notice type", report.get("rates_by_notice_type") or {}
            ),
        ],
        "synthesis_rows": _synthesis_rows(synthesis) if synthesis else [],
        "capacity": _capacity_rows(report.get("capacity")),
        "share_chart": charts.bar_chart(
            "Fallback and cache rates",
            [
                ("fallback", synthesis.get("fallback_rate") or 0.0),
                ("segment cache", synthesis.get("cache_rate") or 0.0),
            ],
            percent_scale=True,
            width=480,
        )
        if synthesis
        else None,
    }
    context["report"] = {**report, "voices": report.get("voices") or {}}
    return environment().get_template("report.html.j2").render(context)
