"""The campaign report: what happened to every notice of one campaign date."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa


def campaign_report(
    rows: Sequence[sa.Row], attempts: Sequence[sa.Row], campaign_date: dt.date
) -> dict[str, Any]:
    """Counts by state, by skip/failure reason, by call outcome and by notice type.

    ``rows`` are the date's ledger rows, ``attempts`` its call attempts (redials included).
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
