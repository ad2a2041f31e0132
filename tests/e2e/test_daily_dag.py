"""The daily DAG end to end through ``airflow dags test``, on each CRM backend.

Real components throughout: the CRM database, moto's S3 server, espeak-ng and
the gateway simulator (the only fake, at the telephone network).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from collections import Counter
from pathlib import Path

import boto3
import numpy as np
import pytest
import soundfile as sf
import sqlalchemy as sa

from tests.conftest import database_url, drop_database
from voice_notify import ledger
from voice_notify.db import schema
from voice_notify.plan import eligibility as planning
from voice_notify.plan.campaigns import load_campaign_config
from voice_notify_dev import demo_crm, localrun

DAY = dt.date(2026, 11, 26)
INCLUDE = Path(__file__).resolve().parents[2] / "include"
TERMINAL = {"completed", "failed", "skipped"}


def _calls(simulator) -> list[dict]:
    path = simulator.state_dir / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _expected_notices(engine: sa.Engine) -> set[int]:
    """The notices today's campaign must decide, computed from the CRM independently."""
    config = load_campaign_config(INCLUDE / "campaigns.yaml")
    with engine.connect() as conn:
        rows = conn.execute(sa.select(demo_crm.notices)).mappings().all()
    return {
        r["id"]
        for r in rows
        if planning.in_window({**r, "notice_id": r["id"]}, DAY, config) and r["due_date"] >= DAY
    }


def _assert_no_phone_number_in_logs(engine: sa.Engine, log_dir: Path) -> None:
    """Every task log of the run, searched for every customer's number in any form."""
    with engine.connect() as conn:
        phones = [p for p in conn.execute(sa.select(demo_crm.customers.c.phone)).scalars() if p]
    forms = set()
    for phone in phones:
        digits = re.sub(r"\D", "", phone)
        forms.update({phone, digits, digits[-11:], "+86" + digits[-11:]})
    forms = {f for f in forms if len(re.sub(r"\D", "", f)) >= 7}
    logs = sorted(log_dir.glob("*.log"))
    assert logs
    for log in logs:
        text = log.read_text(errors="replace")
        if log.name == "daily.log":
            assert "+86*******" in text  # numbers are logged, masked
        leaked = sorted(f for f in forms if f in text)
        assert leaked == [], f"{log.name} shows phone numbers: {leaked[:3]}"


def _run_campaign(env: dict[str, str], log_dir: Path) -> None:
    """The daily run for DAY, then one reconcile run (late outcomes and redials)."""
    localrun.dags_test(env, "voice_notice_daily", DAY.isoformat(), log_dir / "daily.log")
    state = localrun.dag_run_state(env, "voice_notice_daily", DAY.isoformat())
    assert state == "success", (log_dir / "daily.log").read_text()[-4000:]
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    env = {**env, "VOICE_NOTIFY_RECONCILE_LOOKBACK_DAYS": str((now.date() - DAY).days + 1)}
    localrun.dags_test(env, "voice_notice_reconcile", now.isoformat(), log_dir / "reconcile.log")
    state = localrun.dag_run_state(env, "voice_notice_reconcile", now.date().isoformat())
    assert state == "success", (log_dir / "reconcile.log").read_text()[-4000:]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "mariadb"])
def test_daily_campaign_end_to_end(backend, tmp_path, campaign_env, simulator, s3_endpoint):
    url = database_url(backend, tmp_path)
    engine = sa.create_engine(url)
    try:
        demo_crm.seed(engine, demo_crm.SeedSpec(anchor_date=DAY, customers=200))
        expected = _expected_notices(engine)
        env = campaign_env(url.render_as_string(hide_password=False))
        _run_campaign(env, tmp_path / "first")
        _assert_no_phone_number_in_logs(engine, tmp_path / "first")
        with engine.connect() as conn:
            rows = ledger.rows_for_date(conn, DAY)
            notices = {r.id: r for r in conn.execute(sa.select(demo_crm.notices))}
            attempts = conn.execute(sa.select(demo_crm.contact_attempts)).all()
            call_attempts = conn.execute(sa.select(schema.call_attempts)).all()

        # Every notice of the campaign ends in exactly one terminal state with a reason.
        assert {r.notice_id for r in rows} == expected
        assert len(rows) == len(expected)
        for row in rows:
            assert row.state in TERMINAL, row
            assert row.reason_code or row.outcome, row
            crm = notices[row.notice_id]
            assert crm.status in ("delivered", "undelivered", "skipped")
            assert crm.status_reason in (row.reason_code, row.outcome)
        reasons = Counter(r.reason_code for r in rows if r.reason_code)
        for code in (
            "invalid_phone",
            "missing_variable",
            "unknown_notice_type",
            "invalid_variable",
            "opted_out",
        ):
            assert reasons[code] >= 1, (code, reasons)
        assert reasons["variable_too_long"] + reasons["text_too_long"] >= 1

        # Each (notice, attempt) reached the gateway once; redials only as the
        # demo policy allows (at most 2 attempts); every call is in the CRM.
        calls = _calls(simulator)
        per_key = Counter(c["idempotency_key"] for c in calls)
        assert calls and max(per_key.values()) == 1
        per_notice = Counter(c["metadata"]["notice_id"] for c in calls)
        assert max(per_notice.values()) <= 2
        assert len(attempts) == len(calls) == sum(1 for a in call_attempts if a.call_id)
        assert {c["call_id"] for c in calls} == {a.call_id for a in attempts}
        assert all(c["to"].startswith("+") for c in calls)

        # Every audio file is 8 kHz μ-law WAV that decodes and is not silent.
        client = boto3.client(
            "s3",
            endpoint_url=s3_endpoint.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        bucket = env["VOICE_NOTIFY_BUCKET"]
        audio_keys = {r.audio_key for r in rows if r.audio_key}
        assert audio_keys
        for key in audio_keys:
            data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            info = sf.info(io.BytesIO(data))
            assert (info.samplerate, info.subtype, info.format) == (8000, "ULAW", "WAV")
            audio, _ = sf.read(io.BytesIO(data))
            assert float(np.sqrt(np.mean(audio**2))) > 0.01

        # A second run of the same date places zero calls and changes no outcome.
        _run_campaign(env, tmp_path / "again")
        assert len(_calls(simulator)) == len(calls)
        with engine.connect() as conn:
            again = ledger.rows_for_date(conn, DAY)
        assert [(r.state, r.outcome) for r in again] == [(r.state, r.outcome) for r in rows]
    finally:
        engine.dispose()
        drop_database(url)
