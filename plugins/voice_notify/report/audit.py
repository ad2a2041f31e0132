"""The audit trail per notice: which voice, on which consent, rendered how, called when.

Two parts in the ledger database:

- table ``notice_voice_audit``, one row per ledger row: the voice profile and consent
  id chosen at plan time (:func:`record_voice_choice`), and what the worker reported
  (engine, seed, fallback, labels, QC, synthesis seconds; :func:`record_synthesis`,
  filled by the ``report`` step from the result manifests);
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
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from voice_notify.db import schema
from voice_notify.db.sql import insert_ignoring_duplicates
from voice_notify.phone import mask_phone
from voice_notify.voices import registry as voice_profiles

VIEW = "notice_audit"
_PHONE_LIKE = re.compile(r"(?<![\w])\+?\d{7,15}(?![\w])")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _upsert(conn: sa.Connection, key: Mapping[str, Any], values: Mapping[str, Any]) -> None:
    """Insert the row if absent, then set ``values`` (fields left None are not touched)."""
    now = _utcnow()
    conn.execute(
        insert_ignoring_duplicates(conn, schema.notice_voice_audit, ("ledger_id",)),
        {**key, "updated_at": now},
    )
    changes = {k: v for k, v in values.items() if v is not None}
    if changes:
        conn.execute(
            schema.notice_voice_audit.update()
            .where(schema.notice_voice_audit.c.ledger_id == key["ledger_id"])
            .values(**changes, updated_at=now)
        )


def record_voice_choice(
    conn: sa.Connection,
    ledger_id: int,
    notice_id: int,
    campaign_date: dt.date,
    decision: voice_profiles.ConsentDecision,
    instruct: str | None = None,
) -> None:
    """What the plan chose for a notice: the profile and the consent it relied on."""
    _upsert(
        conn,
        {"ledger_id": ledger_id, "notice_id": notice_id, "campaign_date": campaign_date},
        {
            "voice_profile": decision.profile_id or None,
            "consent_id": decision.consent_id,
            "instruct": instruct,
        },
    )


def record_synthesis(
    conn: sa.Connection,
    rows: Iterable[sa.Row],
    results: Mapping[int, Any],
    voices: Mapping[int, tuple[str, str | None]] | None = None,
) -> int:
    """Store the worker's result per ledger row (``ResultItem`` by ledger id).

    :param voices: ``{ledger_id: (profile, instruct)}`` from the batch manifests
    """
    voices = voices or {}
    stored = 0
    for row in rows:
        result = results.get(row.id)
        profile, instruct = voices.get(row.id, (None, None))
        if result is None and profile is None:
            continue
        values: dict[str, Any] = {"voice_profile": profile, "instruct": instruct}
        if result is not None:
            values.update(
                engine=result.engine,
                seed=result.seed,
                fallback=bool(result.fallback),
                synthesis_status=result.status,
                error_code=result.error_code,
                labels=json.dumps(result.labels, ensure_ascii=False) if result.labels else None,
                qc=json.dumps(result.qc, ensure_ascii=False) if result.qc else None,
                synth_seconds=result.synth_seconds,
                speech_audio_s=result.speech_audio_s,
                cached_audio_s=result.cached_audio_s,
            )
        _upsert(
            conn,
            {"ledger_id": row.id, "notice_id": row.notice_id, "campaign_date": row.campaign_date},
            values,
        )
        stored += 1
    return stored


# -- reading ------------------------------------------------------------------------------


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return _PHONE_LIKE.sub(lambda m: mask_phone(m.group(0)), value)
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
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
