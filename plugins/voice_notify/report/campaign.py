"""The campaign report: what happened to every notice of one campaign date."""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from voice_notify.settle.outcomes import Outcome

# Call outcomes where the customer heard the notice.
_REACHED = frozenset(o.value for o in Outcome if o.reached)


def campaign_report(
    rows: Sequence[sa.Row],
    attempts: Sequence[sa.Row],
    campaign_date: dt.date,
    synthesis: Mapping[int, Any] | None = None,
) -> dict[str, Any]:
    """Counts by state, by skip/failure reason, by call outcome and by notice type;
    rates by locale (dialect) and notice type; synthesis figures.

    ``rows`` are the date's ledger rows, ``attempts`` its call attempts (redials
    included), ``synthesis`` the worker's ``ResultItem`` by ledger id (from the result
    manifests; None: no synthesis section).
    """
    by_state = Counter(r.state for r in rows)
    by_reason = Counter(r.reason_code for r in rows if r.reason_code)
    by_outcome = Counter(r.outcome for r in rows if r.outcome)
    by_type = Counter(r.notice_type for r in rows)
    return {
        "campaign_date": campaign_date.isoformat(),
        "notices": len(rows),
        "calls": sum(1 for a in attempts if a.call_id),
        "calls_by_outcome": dict(sorted(Counter(a.outcome or "open" for a in attempts).items())),
        "by_state": dict(sorted(by_state.items())),
        "by_reason": dict(sorted(by_reason.items())),
        "by_outcome": dict(sorted(by_outcome.items())),
        "by_notice_type": dict(sorted(by_type.items())),
        "rates_by_locale": _rates(rows, lambda r: r.locale),
        "rates_by_notice_type": _rates(rows, lambda r: r.notice_type),
        "synthesis": _synthesis(synthesis) if synthesis is not None else None,
        # Per notice, without customer data: what a person checks against the audio.
        "items": [
            {
                "notice_id": r.notice_id,
                "notice_type": r.notice_type,
                "state": r.state,
                "reason_code": r.reason_code,
                "outcome": r.outcome,
                "audio_key": r.audio_key,
            }
            for r in rows
        ],
    }


def _ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


def _rates(rows: Sequence[sa.Row], group) -> dict[str, dict[str, Any]]:
    """Per group: notices, planned (not skipped), called, reached; and their rates.

    ``reached_rate`` is reached over called; ``call_rate`` is called over notices.
    """
    counts: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        c = counts[group(r) or "<none>"]
        c["notices"] += 1
        c["skipped"] += r.state == "skipped"
        called = r.outcome is not None or r.state in ("dialed", "completed")
        c["called"] += called
        c["reached"] += r.outcome in _REACHED
        c["confirmed"] += r.outcome == "confirmed"
    return {
        name: {
            **dict(c),
            "call_rate": _ratio(c["called"], c["notices"]),
            "reached_rate": _ratio(c["reached"], c["called"]),
            "confirm_rate": _ratio(c["confirmed"], c["called"]),
        }
        for name, c in sorted(counts.items())
    }


def _synthesis(results: Mapping[int, Any]) -> dict[str, Any]:
    """Fallback and cache rates and seconds, from the worker's result items."""
    items = list(results.values())
    ok = [i for i in items if i.status == "ok"]
    rendered = [i for i in ok if not i.resumed]
    speech = sum(i.speech_audio_s for i in rendered)
    cached = sum(i.cached_audio_s for i in rendered)
    return {
        "items": len(items),
        "ok": len(ok),
        "failed": len(items) - len(ok),
        "by_error": dict(sorted(Counter(i.error_code for i in items if i.error_code).items())),
        "by_engine": dict(sorted(Counter(i.engine for i in ok).items())),
        "fallback": sum(1 for i in ok if i.fallback),
        "fallback_rate": _ratio(sum(1 for i in ok if i.fallback), len(ok)),
        "resumed": len(ok) - len(rendered),
        "speech_audio_s": round(speech, 2),
        "cached_audio_s": round(cached, 2),
        # Share of speech served from the segment cache (seconds, rendered items only).
        "cache_rate": _ratio(cached, speech),
        "synth_seconds": round(sum(i.synth_seconds for i in items), 2),
        "engine_seconds": round(sum(i.engine_seconds for i in items), 2),
        "audio_seconds": round(sum(i.duration_s or 0.0 for i in ok), 2),
    }
