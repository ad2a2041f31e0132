"""The campaign report: what happened to every notice of one campaign date.

Built from the ledger database alone, one query per table for the date
(:func:`load_frames`: the ledger rows, their call attempts, the synthesis results the
dial step recorded in ``notice_voice_audit``), aggregated with pandas
(:func:`campaign_report`). Nothing is read from S3 and nothing is written, so the
report of a date is the same however often, and after whichever re-run, it is built.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
import sqlalchemy as sa

from voice_notify.db import schema
from voice_notify.settle.outcomes import Outcome

# Call outcomes where the customer heard the notice.
REACHED = frozenset(o.value for o in Outcome if o.reached)

LEDGER_COLUMNS = (
    "id",
    "notice_id",
    "notice_type",
    "locale",
    "state",
    "reason_code",
    "outcome",
    "audio_key",
)
ATTEMPT_COLUMNS = ("ledger_id", "attempt", "call_id", "outcome")
SYNTHESIS_COLUMNS = (
    "ledger_id",
    "voice_profile",
    "emotion",
    "synthesis_status",
    "error_code",
    "engine",
    "fallback",
    "resumed",
    "speech_audio_s",
    "cached_audio_s",
    "synth_seconds",
    "engine_seconds",
    "duration_s",
)


@dataclass(frozen=True)
class ReportFrames:
    """A date's ledger rows, call attempts and audit rows (voice choice, synthesis)."""

    ledger: pd.DataFrame
    attempts: pd.DataFrame
    synthesis: pd.DataFrame


def _frame(conn: sa.Connection, table: sa.Table, columns: tuple[str, ...], day: dt.date):
    query = sa.select(*(table.c[name] for name in columns)).where(table.c.campaign_date == day)
    rows = conn.execute(query).fetchall()
    # Column-wise: several times faster than building the frame from row objects.
    values = list(zip(*rows, strict=True)) if rows else [()] * len(columns)
    frame = {name: pd.Series(v, dtype=object) for name, v in zip(columns, values, strict=True)}
    return pd.DataFrame(frame)


def load_frames(conn: sa.Connection, campaign_date: dt.date) -> ReportFrames:
    """One query per table for the date: the ledger, its attempts, its audit rows."""
    return ReportFrames(
        ledger=_frame(conn, schema.dispatch_ledger, LEDGER_COLUMNS, campaign_date),
        attempts=_frame(conn, schema.call_attempts, ATTEMPT_COLUMNS, campaign_date),
        synthesis=_frame(conn, schema.notice_voice_audit, SYNTHESIS_COLUMNS, campaign_date),
    )


def load_report(conn: sa.Connection, campaign_date: dt.date) -> dict[str, Any]:
    """The report of a campaign date, from the ledger database."""
    return campaign_report(load_frames(conn, campaign_date), campaign_date)


def frames_from_records(
    ledger: Iterable[Mapping[str, Any]],
    attempts: Iterable[Mapping[str, Any]] = (),
    synthesis: Iterable[Mapping[str, Any]] = (),
) -> ReportFrames:
    """Frames from plain records (tests, tools); absent columns are empty."""

    def frame(records: Iterable[Mapping[str, Any]], columns: tuple[str, ...]) -> pd.DataFrame:
        return pd.DataFrame([dict(r) for r in records]).reindex(columns=list(columns))

    return ReportFrames(
        frame(ledger, LEDGER_COLUMNS),
        frame(attempts, ATTEMPT_COLUMNS),
        frame(synthesis, SYNTHESIS_COLUMNS),
    )


def _counts(series: pd.Series) -> dict[str, int]:
    """Value counts as a sorted plain dictionary (missing values left out)."""
    counts = series.dropna().astype(str).value_counts()
    return {str(k): int(v) for k, v in sorted(counts.items())}


def _ratio(part: float, whole: float) -> float | None:
    return round(float(part) / float(whole), 4) if whole else None


def _rates(ledger: pd.DataFrame, column: str) -> dict[str, dict[str, Any]]:
    """Per group: notices, skipped, called, reached, confirmed; and their rates.

    ``reached_rate`` and ``confirm_rate`` are over called; ``call_rate`` over notices.
    """
    if ledger.empty:
        return {}
    flags = pd.DataFrame(
        {
            "group": ledger[column].fillna("<none>").astype(str),
            "notices": 1,
            "skipped": ledger["state"].eq("skipped"),
            "called": ledger["outcome"].notna() | ledger["state"].isin(("dialed", "completed")),
            "reached": ledger["outcome"].isin(REACHED),
            "confirmed": ledger["outcome"].eq(Outcome.CONFIRMED.value),
        }
    )
    sums = flags.groupby("group", sort=True).sum()
    return {
        str(name): {
            "notices": int(row.notices),
            "skipped": int(row.skipped),
            "called": int(row.called),
            "reached": int(row.reached),
            "confirmed": int(row.confirmed),
            "call_rate": _ratio(row.called, row.notices),
            "reached_rate": _ratio(row.reached, row.called),
            "confirm_rate": _ratio(row.confirmed, row.called),
        }
        for name, row in sums.iterrows()
    }


def _seconds(series: pd.Series) -> float:
    return round(float(pd.to_numeric(series, errors="coerce").fillna(0.0).sum()), 2)


def _synthesis(synthesis: pd.DataFrame) -> dict[str, Any] | None:
    """Fallback and cache rates and seconds, from the recorded worker results."""
    items = synthesis[synthesis["synthesis_status"].notna()]
    if items.empty:
        return None
    ok = items[items["synthesis_status"].eq("ok")]
    fallback = ok["fallback"].fillna(False).astype(bool)
    rendered = ok[~ok["resumed"].fillna(False).astype(bool)]
    speech = _seconds(rendered["speech_audio_s"])
    cached = _seconds(rendered["cached_audio_s"])
    return {
        "items": len(items),
        "ok": len(ok),
        "failed": len(items) - len(ok),
        "by_error": _counts(items["error_code"]),
        "by_engine": _counts(ok["engine"]),
        "fallback": int(fallback.sum()),
        "fallback_rate": _ratio(fallback.sum(), len(ok)),
        "resumed": len(ok) - len(rendered),
        "speech_audio_s": speech,
        "cached_audio_s": cached,
        # Share of speech served from the segment cache (seconds, rendered items only).
        "cache_rate": _ratio(cached, speech),
        "synth_seconds": _seconds(items["synth_seconds"]),
        "engine_seconds": _seconds(items["engine_seconds"]),
        "audio_seconds": _seconds(ok["duration_s"]),
    }


def _voices(synthesis: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Planned notices by voice profile and the emotion variant that spoke."""
    chosen = synthesis[synthesis["voice_profile"].notna()]
    if chosen.empty:
        return {}
    pairs = pd.DataFrame(
        {
            "profile": chosen["voice_profile"].astype(str),
            "emotion": chosen["emotion"].fillna("-").astype(str),
        }
    )
    table = pairs.groupby(["profile", "emotion"], sort=True).size()
    out: dict[str, dict[str, int]] = {}
    for (profile, emotion), count in table.items():
        out.setdefault(str(profile), {})[str(emotion)] = int(count)
    return out


def _items(ledger: pd.DataFrame) -> list[dict[str, Any]]:
    """Per notice, without customer data: what a person checks against the audio."""
    columns = ("notice_id", "notice_type", "state", "reason_code", "outcome", "audio_key")
    values = [_plain(ledger[c]) for c in columns]
    return [
        {**dict(zip(columns, row, strict=True)), "notice_id": int(row[0])}
        for row in zip(*values, strict=True)
    ]


def _plain(series: pd.Series) -> list[Any]:
    """A column as Python values, missing ones as None (not NaN)."""
    return series.astype(object).where(series.notna(), None).tolist()


def campaign_report(frames: ReportFrames, campaign_date: dt.date) -> dict[str, Any]:
    """Counts by state, skip/failure reason, call outcome and notice type; rates by locale
    (dialect) and notice type; synthesis figures; voices and variants; one item per notice.

    Deterministic: the same frames give the same dictionary, key order included.
    """
    ledger = frames.ledger.sort_values("notice_id", kind="stable")
    attempts = frames.attempts
    return {
        "campaign_date": campaign_date.isoformat(),
        "notices": len(ledger),
        "calls": int(attempts["call_id"].notna().sum()),
        "calls_by_outcome": _counts(attempts["outcome"].fillna("open")),
        "by_state": _counts(ledger["state"]),
        "by_reason": _counts(ledger["reason_code"]),
        "by_outcome": _counts(ledger["outcome"]),
        "by_notice_type": _counts(ledger["notice_type"].fillna("<none>")),
        "rates_by_locale": _rates(ledger, "locale"),
        "rates_by_notice_type": _rates(ledger, "notice_type"),
        "synthesis": _synthesis(frames.synthesis),
        "voices": _voices(frames.synthesis),
        "items": _items(ledger),
    }
