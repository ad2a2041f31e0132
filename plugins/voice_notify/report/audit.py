"""The audit trail per notice: which voice, on which consent, rendered how, called when.

Two parts in the ledger database:

- table ``notice_voice_audit``, one row per ledger row: the voice profile, consent id,
  emotion variant and the tone rule that chose it, at plan time
  (:func:`record_voice_choices`), and what the worker reported (engine, seed, fallback,
  labels, QC, seconds, master; :func:`record_synthesis`, written where the dial step
  records a batch's results). Both are set-based; the report only reads;
- view ``notice_audit`` (created by migration 0001): the ledger row joined with that row, the
  consent record, every call attempt (one view row per attempt) and the audio's
  deletion by the retention DAG.

The CLI prints one notice as JSON for a compliance officer::

    python -m voice_notify.report.audit --notice-id 42 [--date 2026-11-26] [--db-url URL]

Without ``--db-url`` it uses the ledger's Airflow Connection. The ledger holds no phone
numbers; every string printed still passes through ``mask_phone`` wherever it looks
like one, so an id that happens to carry a number cannot leak it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from voice_notify.db import schema, staging
from voice_notify.db.sql import upsert
from voice_notify.phone import mask_numbers_in
from voice_notify.voices import registry as voice_profiles

VIEW = "notice_audit"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


_CHUNK = 5000


def _upsert_many(conn: sa.Connection, rows: list[dict[str, Any]], update: Sequence[str]) -> int:
    """Insert audit rows, or set ``update`` on the ones that exist: set-based, in chunks."""
    if not rows:
        return 0
    table, keys, update = schema.notice_voice_audit, ("ledger_id",), (*update, "updated_at")
    statement = None if conn.dialect.name == "postgresql" else upsert(conn, table, keys, update)
    for start in range(0, len(rows), _CHUNK):
        if statement is None:  # COPY, then one INSERT ... SELECT ... ON CONFLICT
            staging.insert_copied(conn, table, rows[start : start + _CHUNK], keys, update)
        else:
            conn.execute(statement, rows[start : start + _CHUNK])
    return len(rows)


@dataclass(frozen=True)
class VoiceChoice:
    """What the plan chose for one ledger row: the voice, the consent relied on (None for
    the standard voice), the dialect instruct, and the emotion variant and its rule."""

    ledger_id: int
    notice_id: int
    campaign_date: dt.date
    voice_profile: str
    consent_id: str | None = None
    instruct: str | None = None
    emotion: str | None = None
    tone_rule: str | None = None


_CHOICE_FIELDS = ("voice_profile", "consent_id", "instruct", "emotion", "tone_rule")


def record_voice_choices(conn: sa.Connection, choices: Iterable[VoiceChoice]) -> int:
    """The plan's voice choices, set-based; a re-plan of a row replaces its choice."""
    now = _utcnow()
    rows = [
        {
            "ledger_id": c.ledger_id,
            "notice_id": c.notice_id,
            "campaign_date": c.campaign_date,
            **{name: getattr(c, name) for name in _CHOICE_FIELDS},
            "updated_at": now,
        }
        for c in choices
    ]
    return _upsert_many(conn, rows, _CHOICE_FIELDS)


def voice_choices(
    rows: Iterable[sa.Row], decisions: Mapping[int, Any], campaign_date: dt.date
) -> list[VoiceChoice]:
    """The choice of every waiting ledger row from its plan decision (``by notice id``)."""
    out = []
    for row in rows:
        decision = decisions[row.notice_id]
        consent = decision.consent
        cloned = consent is not None and consent.allowed
        out.append(
            VoiceChoice(
                ledger_id=row.id,
                notice_id=row.notice_id,
                campaign_date=campaign_date,
                voice_profile=decision.voice.profile,
                consent_id=consent.consent_id if cloned else None,
                instruct=decision.voice.instruct,
                emotion=(decision.voice.emotion or "normal") if cloned else None,
                tone_rule=decision.tone_rule if cloned else None,
            )
        )
    return out


def record_voice_choice(
    conn: sa.Connection,
    ledger_id: int,
    notice_id: int,
    campaign_date: dt.date,
    decision: voice_profiles.ConsentDecision,
    instruct: str | None = None,
    emotion: str | None = None,
) -> None:
    """One row's choice of a cloned voice and the consent it relied on (a refused consent
    is not recorded as relied on)."""
    record_voice_choices(
        conn,
        [
            VoiceChoice(
                ledger_id,
                notice_id,
                campaign_date,
                decision.profile_id or "standard",
                decision.consent_id if decision.allowed else None,
                instruct,
                emotion,
            )
        ],
    )


_RESULT_FIELDS = (
    "engine",
    "seed",
    "fallback",
    "synthesis_status",
    "error_code",
    "labels",
    "qc",
    "synth_seconds",
    "speech_audio_s",
    "cached_audio_s",
    "master_key",
    "duration_s",
    "engine_seconds",
    "resumed",
    "render_attempts",
    "telephone_bytes",
    "master_bytes",
)


def _json(value: Any) -> str | None:
    return json.dumps(value, ensure_ascii=False) if value else None


def record_synthesis(conn: sa.Connection, results: Iterable[tuple[Any, Any]]) -> int:
    """The worker's result of each ledger row, set-based: ``(ledger row, ResultItem)`` pairs.

    Called where a batch's results are recorded (``voice_notify.dial.results``), once per
    row when the row leaves ``planned``, so a later resumed rendering never replaces the
    figures of the one that made the audio. The plan's voice choice is left as it is.
    """
    now = _utcnow()
    rows = [
        {
            "ledger_id": row.id,
            "notice_id": row.notice_id,
            "campaign_date": row.campaign_date,
            "engine": result.engine,
            "seed": result.seed,
            "fallback": bool(result.fallback),
            "synthesis_status": result.status,
            "error_code": result.error_code,
            "labels": _json(result.labels),
            "qc": _json(result.qc),
            "synth_seconds": result.synth_seconds,
            "speech_audio_s": result.speech_audio_s,
            "cached_audio_s": result.cached_audio_s,
            "master_key": result.master_key,
            "duration_s": result.duration_s,
            "engine_seconds": result.engine_seconds,
            "resumed": bool(result.resumed),
            "render_attempts": result.attempts,
            "telephone_bytes": result.telephone_bytes,
            "master_bytes": result.master_bytes,
            "updated_at": now,
        }
        for row, result in results
    ]
    return _upsert_many(conn, rows, _RESULT_FIELDS)


# -- reading ------------------------------------------------------------------------------


def masked(value: Any) -> Any:
    """``value`` with every phone-like run of digits masked, dates as ISO text (nested)."""
    return _masked(value)


# Fields that hold times, dates and our own keys (idempotency keys vn-<notice>-<date>-<n>,
# content-addressed S3 keys), never a customer's number: left as they are (each can hold
# a long run of digits). Any other text is masked, a gateway's call id included (some
# embed the number).
_NOT_FREE_TEXT = ("_at", "_on", "date", "_key")


def _masked(value: Any, field: str = "") -> Any:
    if isinstance(value, str):
        return value if field.endswith(_NOT_FREE_TEXT) else mask_numbers_in(value)
    if isinstance(value, dict):
        return {k: _masked(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, field) for v in value]
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return value


def _json_field(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def notice_audit(
    conn: sa.Connection, notice_id: int, campaign_date: dt.date | None = None
) -> list[dict[str, Any]]:
    """The audit record of a notice, one entry per campaign date it was planned on."""
    query = sa.text(
        f"SELECT * FROM {VIEW} WHERE notice_id = :notice_id"
        + (" AND campaign_date = :campaign_date" if campaign_date else "")
        + " ORDER BY campaign_date, attempt"
    )
    params: dict[str, Any] = {"notice_id": notice_id}
    if campaign_date:
        params["campaign_date"] = campaign_date
    records: dict[int, dict[str, Any]] = {}
    for row in conn.execute(query, params).mappings():
        record = records.get(row["ledger_id"])
        if record is None:
            record = records[row["ledger_id"]] = {
                "notice_id": row["notice_id"],
                "campaign_date": row["campaign_date"],
                "customer_id": row["customer_id"],
                "notice_type": row["notice_type"],
                "locale": row["locale"],
                "state": row["state"],
                "reason_code": row["reason_code"],
                "outcome": row["notice_outcome"],
                "voice": {
                    "profile": row["voice_profile"],
                    "instruct": row["instruct"],
                    "emotion": row["emotion"],
                    "tone_rule": row["tone_rule"],
                    "consent_id": row["consent_id"],
                    "consented_by": row["consented_by"],
                    "consent_document_ref": row["consent_document_ref"],
                    "consent_granted_on": row["consent_granted_on"],
                    "consent_expires_on": row["consent_expires_on"],
                    "consent_revoked_at": row["consent_revoked_at"],
                    "consent_revoked_reason": row["consent_revoked_reason"],
                },
                "synthesis": {
                    "engine": row["engine"],
                    "seed": row["seed"],
                    "status": row["synthesis_status"],
                    "error_code": row["synthesis_error"],
                    "fallback": None if row["fallback"] is None else bool(row["fallback"]),
                    "labels": _json_field(row["labels"]),
                    "qc": _json_field(row["qc"]),
                    "synth_seconds": row["synth_seconds"],
                    "audio_key": row["audio_key"],
                    "master_key": row["master_key"],
                    "audio_deleted_at": row["audio_deleted_at"],
                },
                "attempts": [],
            }
        if row["attempt"] is not None:
            record["attempts"].append(
                {
                    "attempt": row["attempt"],
                    "idempotency_key": row["idempotency_key"],
                    "gateway": row["gateway"],
                    "call_id": row["call_id"],
                    "outcome": row["attempt_outcome"],
                    "key_pressed": row["key_pressed"],
                    "answered_by": row["answered_by"],
                    "dialing_started_at": row["dialing_started_at"],
                    "dialed_at": row["dialed_at"],
                    "ended_at": row["ended_at"],
                }
            )
    return [_masked(r) for r in records.values()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="audit record of one notice, as JSON")
    parser.add_argument("--notice-id", type=int, required=True)
    parser.add_argument("--date", type=dt.date.fromisoformat, default=None)
    parser.add_argument("--db-url", default=None, help="ledger database (default: Connection)")
    args = parser.parse_args(argv)
    if args.db_url:
        from voice_notify.db.sql import make_engine

        engine = make_engine(args.db_url)
    else:
        from voice_notify.airflow.hooks import engine_for  # a Connection needs Airflow
        from voice_notify.settings import get_settings

        engine = engine_for(get_settings().ledger_conn_id)
    with engine.connect() as conn:
        records = notice_audit(conn, args.notice_id, args.date)
    json.dump(records, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")
    return 0 if records else 1


if __name__ == "__main__":
    sys.exit(main())
