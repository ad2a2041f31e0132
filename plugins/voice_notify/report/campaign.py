"""The campaign report: what happened to every notice of one campaign date.

Built from the ledger database alone, one query per table for the date
(:func:`load_frames`: the ledger rows, their call attempts, the synthesis results the
dial step recorded in ``notice_voice_audit``), aggregated with pandas
(:func:`campaign_report`). Nothing is read from S3 and nothing is written, so the
report of a date is the same however often, and after whichever re-run, it is built.

Its ``capacity`` section runs the capacity model (``voice_notify.capacity``) on the date's
measured figures and puts the model's prediction beside what the ledger shows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
import sqlalchemy as sa

from voice_notify import capacity
from voice_notify.db import schema
from voice_notify.ledger import LedgerState
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
    "batch_key",
    "created_at",
    "call_with",  # a notice spoken in another notice's call (a merged call)
)
ATTEMPT_COLUMNS = (
    "ledger_id",
    "attempt",
    "call_id",
    "outcome",
    "dialing_started_at",
    "dialed_at",
    "ended_at",
)
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
# Audio bytes per item, where the worker's results carry them and the audit stores them;
# read only where the table has the column, so the report works with and without.
OPTIONAL_SYNTHESIS_COLUMNS = ("telephone_bytes", "master_bytes")


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
        synthesis=_frame(conn, schema.notice_voice_audit, _synthesis_columns(), campaign_date),
    )


def _synthesis_columns() -> tuple[str, ...]:
    present = schema.notice_voice_audit.c
    return SYNTHESIS_COLUMNS + tuple(c for c in OPTIONAL_SYNTHESIS_COLUMNS if c in present)


def load_report(
    conn: sa.Connection,
    campaign_date: dt.date,
    capacity_inputs: capacity.CapacityInputs | None = None,
) -> dict[str, Any]:
    """The report of a campaign date, from the ledger database.

    :param capacity_inputs: the capacity model's figures where the run measured none
        (default: ``CapacityInputs()``, CosyVoice3 on four GPU slots)
    """
    return campaign_report(load_frames(conn, campaign_date), campaign_date, capacity_inputs)


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
        frame(synthesis, SYNTHESIS_COLUMNS + OPTIONAL_SYNTHESIS_COLUMNS),
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


def _batches(ledger: pd.DataFrame) -> list[dict[str, Any]]:
    """Per batch, in batch order: notices by state and how many have ended (settled,
    skipped or failed), so an operator sees which batches are done and which still run."""
    batched = ledger[ledger["batch_key"].notna()]
    if batched.empty:
        return []
    terminal = {s.value for s in LedgerState if s.terminal}
    rows = []
    for key, group in batched.groupby("batch_key", sort=False):
        states = _counts(group["state"])
        rows.append(
            {
                "batch": str(key).rsplit("/", 1)[-1].removesuffix(".jsonl"),
                "notices": len(group),
                "ended": int(group["state"].isin(terminal).sum()),
                "by_state": states,
            }
        )
    return sorted(rows, key=lambda r: (len(r["batch"]), r["batch"]))


def _merged_calls(ledger: pd.DataFrame) -> dict[str, int]:
    """Calls that carried two notices of one customer (``merged_calls`` of the campaign
    file): how many, and how many notices rode in them besides their leads."""
    riders = ledger["call_with"].dropna()
    return {"calls": int(riders.nunique()), "notices_carried": len(riders)}


def _plain(series: pd.Series) -> list[Any]:
    """A column as Python values, missing ones as None (not NaN)."""
    return series.astype(object).where(series.notna(), None).tolist()


def campaign_report(
    frames: ReportFrames,
    campaign_date: dt.date,
    capacity_inputs: capacity.CapacityInputs | None = None,
) -> dict[str, Any]:
    """Counts by state, skip/failure reason, call outcome and notice type; rates by locale
    (dialect) and notice type; synthesis figures; voices and variants; the capacity model
    against the measured figures; one item per notice.

    Deterministic: the same frames give the same dictionary, key order included.
    """
    ledger = frames.ledger.sort_values("notice_id", kind="stable")
    attempts = frames.attempts
    synthesis = _synthesis(frames.synthesis)
    return {
        "campaign_date": campaign_date.isoformat(),
        "notices": len(ledger),
        "calls": int(attempts["call_id"].notna().sum()),
        "calls_by_outcome": _counts(attempts["outcome"].fillna("open")),
        "merged_calls": _merged_calls(ledger),
        "by_state": _counts(ledger["state"]),
        "by_reason": _counts(ledger["reason_code"]),
        "by_outcome": _counts(ledger["outcome"]),
        "by_notice_type": _counts(ledger["notice_type"].fillna("<none>")),
        "rates_by_locale": _rates(ledger, "locale"),
        "rates_by_notice_type": _rates(ledger, "notice_type"),
        "synthesis": synthesis,
        "voices": _voices(frames.synthesis),
        "batches": _batches(ledger),
        "capacity": capacity_section(frames, synthesis, capacity_inputs),
        "items": _items(ledger),
    }


# Call outcomes where the line was answered (a person or a machine): the model's answer rate.
ANSWERED = REACHED | {Outcome.ANSWERING_MACHINE.value}


def _mean(series: pd.Series) -> float | None:
    values = pd.to_numeric(series, errors="coerce").dropna()
    return float(values.mean()) if len(values) else None


def _span_s(start: pd.Series, end: pd.Series) -> pd.Series:
    """Seconds from ``start`` to ``end``, row by row (missing where either is)."""
    begun = pd.to_datetime(start, errors="coerce")
    ended = pd.to_datetime(end, errors="coerce")
    return (ended - begun).dt.total_seconds()


def measured_figures(frames: ReportFrames, synthesis: dict[str, Any] | None) -> dict[str, Any]:
    """The run's own figures, by the capacity model's names (None where it has none).

    Inputs: ``notices`` (items synthesized, else planned), ``cache_share``,
    ``audio_s_per_notice``, ``answer_rate``, ``call_share``, ``redial_share``,
    ``telephone_bytes`` and ``master_bytes`` (where the audit carries them). Outcomes: ``attempts``,
    ``engine_hours`` (whatever engine rendered), ``time_to_first_call_s`` and
    ``time_to_last_call_s`` (from the plan's ledger rows to the first and last dialing),
    ``channel_hours`` (dialed to ended; ``ended_at`` is when the outcome was seen, so an
    upper bound), ``storage_per_day_bytes``.
    """
    ledger, attempts, audit = frames.ledger, frames.attempts, frames.synthesis
    planned = int((ledger["state"] != "skipped").sum()) if len(ledger) else 0
    placed = attempts[attempts["call_id"].notna()]
    ended = placed[placed["outcome"].notna()]
    called = placed["ledger_id"].nunique()
    figures: dict[str, Any] = {
        "notices": synthesis["items"] if synthesis else planned,
        "cache_share": synthesis["cache_rate"] if synthesis else None,
        "audio_s_per_notice": (
            round(synthesis["audio_seconds"] / synthesis["ok"], 3)
            if synthesis and synthesis["ok"]
            else None
        ),
        "answer_rate": _ratio(ended["outcome"].isin(ANSWERED).sum(), len(ended)),
        "call_share": _ratio(called, synthesis["items"] if synthesis else planned),
        "redial_share": _ratio(len(placed) - called, called),
        "telephone_bytes": None,
        "master_bytes": None,
        "attempts": len(placed),
        "engine_hours": (round(synthesis["engine_seconds"] / 3600.0, 6) if synthesis else None),
        "time_to_first_call_s": None,
        "time_to_last_call_s": None,
        "channel_hours": None,
        "storage_per_day_bytes": None,
    }
    ok = audit[audit["synthesis_status"].eq("ok")] if len(audit) else audit
    for column in OPTIONAL_SYNTHESIS_COLUMNS:
        if column in ok:
            figures[column] = _mean(ok[column])
    if figures["telephone_bytes"] is not None:
        # No master bytes where no master is kept (VOICE_NOTIFY_KEEP_MASTER=none): zero.
        figures["storage_per_day_bytes"] = round(
            float(pd.to_numeric(ok["telephone_bytes"], errors="coerce").sum())
            + (
                float(pd.to_numeric(ok["master_bytes"], errors="coerce").fillna(0).sum())
                if "master_bytes" in ok
                else 0.0
            )
        )
    planned_at = (
        pd.to_datetime(ledger["created_at"], errors="coerce").max() if len(ledger) else None
    )
    dialing = pd.to_datetime(placed["dialing_started_at"], errors="coerce").dropna()
    if planned_at is not None and not pd.isna(planned_at) and len(dialing):
        figures["time_to_first_call_s"] = round((dialing.min() - planned_at).total_seconds(), 3)
        figures["time_to_last_call_s"] = round((dialing.max() - planned_at).total_seconds(), 3)
    held = _span_s(ended["dialed_at"], ended["ended_at"]).dropna()
    if len(held):
        figures["channel_hours"] = round(float(held.clip(lower=0).sum()) / 3600.0, 6)
    return figures


# Figures shown predicted against measured: (name, plan attribute, measured key, unit).
COMPARED = (
    ("call attempts", "attempts", "attempts", "calls"),
    ("GPU-hours (measured: the run's engines)", "gpu_hours", "engine_hours", "h"),
    ("time to first call", "time_to_first_call_s", "time_to_first_call_s", "s"),
    ("time to last call", "time_to_last_call_s", "time_to_last_call_s", "s"),
    ("channel-hours", "channel_hours", "channel_hours", "h"),
    ("storage per day", "storage_per_day_bytes", "storage_per_day_bytes", "bytes"),
)


def capacity_section(
    frames: ReportFrames,
    synthesis: dict[str, Any] | None,
    inputs: capacity.CapacityInputs | None = None,
) -> dict[str, Any] | None:
    """The capacity model on this run's measured figures, beside what the run measured.

    The model's inputs are ``inputs`` (default ``CapacityInputs()``) with every figure the
    run measured in their place (``measured_inputs`` names them); ``compared`` gives, per
    figure, the prediction and the measurement (None where the run has none). None for a
    date with nothing planned.
    """
    measured = measured_figures(frames, synthesis)
    if not measured["notices"]:
        return None
    base = inputs or capacity.CapacityInputs()
    used = capacity.with_measured(base, measured)
    plan = capacity.plan_capacity(used)
    taken = sorted(
        k for k, v in measured.items() if v is not None and hasattr(base, k) and k != "notices"
    )
    compared = []
    for label, attribute, key, unit in COMPARED:
        predicted = getattr(plan, attribute)
        actual = measured[key]
        compared.append(
            {
                "figure": label,
                "unit": unit,
                "predicted": round(float(predicted), 4),
                "measured": actual,
                "ratio": _ratio(actual, predicted) if actual is not None else None,
            }
        )
    return {
        "inputs": plan.as_dict()["inputs"],
        "measured_inputs": ["notices", *taken],
        "plan": {k: v for k, v in plan.as_dict().items() if k != "inputs"},
        "compared": compared,
    }
