"""The per-notice audit view and CLI, on each ledger database backend."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from synthesis.manifest import ResultItem
from voice_notify import ledger
from voice_notify.db import migrate, schema
from voice_notify.report import audit
from voice_notify.voices import registry as vp

DAY = dt.date(2026, 11, 26)
REPO = Path(__file__).resolve().parents[2]
TYPES = ("repayment_reminder",)


def _stock(engine: sa.Engine) -> int:
    """One notice: planned with a consenting voice, rendered, called twice, audio purged."""
    migrate.upgrade(engine)
    now = dt.datetime(2026, 11, 26, 8, 0)
    with engine.begin() as conn:
        spec = vp.ProfileSpec("agent-a", "林芳", "cmn", ("cmn",), TYPES)
        vp.upsert_profile(conn, spec, DAY)
        consent = vp.ConsentRecord(
            "c-a", "agent-a", "林芳", dt.date(2026, 1, 1), TYPES, ("cmn",), "dms://c-a"
        )
        vp.record_consent(conn, consent)
        conn.execute(
            schema.dispatch_ledger.insert(),
            {
                "notice_id": 42,
                "campaign_date": DAY,
                "customer_id": 7,
                "notice_type": "repayment_reminder",
                "locale": "cmn",
                "state": "completed",
                "outcome": "confirmed",
                "attempt": 2,
                "audio_key": "audio/ab/ab12.wav",
                "created_at": now,
                "updated_at": now,
            },
        )
        ledger_id = conn.execute(sa.select(schema.dispatch_ledger.c.id)).scalar_one()
        decision = vp.consent_for(conn, "agent-a", "repayment_reminder", "cmn", DAY)
        audit.record_voice_choice(
            conn, ledger_id, 42, DAY, decision, instruct="sichuan", emotion="warm"
        )
        for attempt, outcome in ((1, "no_answer"), (2, "confirmed")):
            conn.execute(
                schema.call_attempts.insert(),
                {
                    "ledger_id": ledger_id,
                    "notice_id": 42,
                    "customer_id": 7,
                    "campaign_date": DAY,
                    "attempt": attempt,
                    "idempotency_key": f"vn-42-2026-11-26-{attempt}",
                    "gateway": "simulator",
                    # A gateway that puts the callee in its call id must not leak it.
                    "call_id": f"call-{attempt}-+8613812345678",
                    "outcome": outcome,
                    "dialing_started_at": now + dt.timedelta(hours=attempt),
                },
            )
        rows = ledger.rows_for_date(conn, DAY)
        result = ResultItem(
            ledger_id=ledger_id,
            notice_id=42,
            status="ok",
            engine="espeak-ng 1.51",
            seed=1234,
            audio_key="audio/ab/ab12.wav",
            duration_s=12.5,
            fallback=True,
            labels={"implicit": {"Label": "1", "ContentProducer": "voice-notify"}},
            qc={"similarity": 0.95},
            synth_seconds=0.8,
            master_key="masters/ab/ab12.wav",
        )
        audit.record_synthesis(conn, [(rows[0], result)])
        conn.execute(
            schema.audio_deletions.insert(),
            {
                "object_key": "audio/ab/ab12.wav",
                "last_modified": now,
                "cutoff": now,
                "logical_date": DAY,
                "recorded_at": now,
                "deleted_at": dt.datetime(2027, 3, 1),
            },
        )
    return ledger_id


def test_audit_view_gives_voice_consent_synthesis_and_attempts(db_engine) -> None:
    _stock(db_engine)
    migrate.upgrade(db_engine)  # a second upgrade finds the view there and changes nothing
    with db_engine.connect() as conn:
        records = audit.notice_audit(conn, 42, DAY)
        assert audit.notice_audit(conn, 42, DAY - dt.timedelta(days=1)) == []
        view_rows = conn.execute(sa.text("SELECT COUNT(*) FROM notice_audit")).scalar()
    assert view_rows == 2  # one per attempt
    (record,) = records
    assert record["voice"]["profile"] == "agent-a"
    assert record["voice"]["consent_id"] == "c-a"
    assert record["voice"]["consent_document_ref"] == "dms://c-a"
    assert record["voice"]["consent_revoked_at"] is None
    assert (record["voice"]["instruct"], record["voice"]["emotion"]) == ("sichuan", "warm")
    assert record["synthesis"]["master_key"] == "masters/ab/ab12.wav"
    synthesis = record["synthesis"]
    assert (synthesis["engine"], synthesis["seed"], synthesis["fallback"]) == (
        "espeak-ng 1.51",
        1234,
        True,
    )
    assert synthesis["labels"]["implicit"]["ContentProducer"] == "voice-notify"
    assert synthesis["audio_deleted_at"].startswith("2027-03-01")
    assert [a["outcome"] for a in record["attempts"]] == ["no_answer", "confirmed"]
    text = json.dumps(records, ensure_ascii=False)
    assert "13812345678" not in text and "+86*******5678" in text
    assert "vn-42-2026-11-26-1" in text  # ids stay readable


def test_audit_cli_prints_json(tmp_path) -> None:
    from voice_notify.db.sql import make_engine

    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    engine = make_engine(url)
    _stock(engine)
    engine.dispose()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), str(REPO)])}
    command = [sys.executable, "-m", "voice_notify.report.audit", "--db-url", url, "--notice-id"]
    found = subprocess.run(
        [*command, "42", "--date", "2026-11-26"], capture_output=True, text=True, env=env
    )
    assert found.returncode == 0, found.stderr
    (record,) = json.loads(found.stdout)
    assert record["notice_id"] == 42 and len(record["attempts"]) == 2
    assert "13812345678" not in found.stdout
    missing = subprocess.run([*command, "999"], capture_output=True, text=True, env=env)
    assert missing.returncode == 1 and json.loads(missing.stdout) == []
