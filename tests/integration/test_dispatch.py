"""Dial and reconcile against the real gateway simulator, on each CRM backend."""

from __future__ import annotations

import datetime as dt
import io
import json

import boto3
import numpy as np
import pytest
import soundfile as sf
import sqlalchemy as sa

from voice_notify import demo_crm, dispatch, ledger, reasons, reconcile
from voice_notify.campaigns import CallingHours
from voice_notify.gateway.base import CallState
from voice_notify.gateway.simulator_client import SimulatorGateway
from voice_notify.ledger import LedgerState

DAY = dt.date(2026, 11, 26)
ALL_DAY = CallingHours(start=dt.time(0), end=None)
NOON_UTC = dt.datetime(2026, 11, 26, 4, 0, tzinfo=dt.UTC)  # 12:00 in Shanghai


@pytest.fixture
def audio_url(s3_bucket: str):
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)
    buffer = io.BytesIO()
    sf.write(buffer, tone, 8000, subtype="ULAW", format="WAV")
    client = boto3.client("s3")
    client.put_object(Bucket=s3_bucket, Key="audio/tone.wav", Body=buffer.getvalue())

    def url(key: str) -> str:
        return client.generate_presigned_url(
            "get_object", Params={"Bucket": s3_bucket, "Key": key}, ExpiresIn=3600
        )

    return url


def _crm(engine: sa.Engine, n: int = 6) -> None:
    demo_crm.create_schema(engine)
    ledger.ensure_schema(engine)
    with engine.begin() as conn:
        conn.execute(
            demo_crm.customers.insert(),
            [
                {"id": i, "name": f"曾{i}", "phone": f"1381234{i:04d}", "voice_opt_out": False}
                for i in range(1, n + 1)
            ],
        )
        conn.execute(
            demo_crm.notices.insert(),
            [
                {
                    "id": i,
                    "customer_id": i,
                    "notice_type": "pension_arrival",
                    "variables": json.dumps({"amount": "100"}),
                    "due_date": DAY,
                }
                for i in range(1, n + 1)
            ],
        )


def _synthesized(engine: sa.Engine, notice_ids, day: dt.date = DAY) -> list[sa.Row]:
    with engine.begin() as conn:
        ledger.record_plan(
            conn,
            [
                {
                    "notice_id": i,
                    "campaign_date": day,
                    "state": LedgerState.PLANNED,
                    "notice_type": "pension_arrival",
                }
                for i in notice_ids
            ],
        )
        for row in ledger.rows_for_date(conn, day):
            ledger.transition(conn, row.id, LedgerState.SYNTHESIZED, audio_key="audio/tone.wav")
        return ledger.rows_for_date(conn, day)


def _ctx(gateway, audio_url, day: dt.date = DAY, hours: CallingHours = ALL_DAY):
    return dispatch.DialContext(
        campaign_date=day,
        gateway=gateway,
        audio_url=audio_url,
        calling_hours=hours,
        now=lambda: NOON_UTC,
        rate_limiter=dispatch.RateLimiter(200),
    )


def _calls(simulator) -> list[dict]:
    path = simulator.state_dir / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_each_notice_is_called_once_across_retries_and_dates(db_engine, simulator, audio_url):
    _crm(db_engine)
    gateway = SimulatorGateway(simulator.url)
    rows = _synthesized(db_engine, [1, 2, 3])
    counts = dispatch.dial_rows(db_engine, db_engine, rows, _ctx(gateway, audio_url))
    assert counts.dialed == 3
    # A retried task sees the same rows again (stale copies): nothing new is placed.
    again = dispatch.dial_rows(db_engine, db_engine, rows, _ctx(gateway, audio_url))
    assert again.dialed == 0
    # An overlapping backfill date planned the same notices: the claim stops it.
    later = DAY + dt.timedelta(days=1)
    other = _synthesized(db_engine, [1, 2, 3], later)
    blocked = dispatch.dial_rows(db_engine, db_engine, other, _ctx(gateway, audio_url, later))
    assert blocked.reasons == {reasons.ALREADY_CONTACTED: 3}
    keys = [c["idempotency_key"] for c in _calls(simulator)]
    assert sorted(keys) == sorted(dispatch.idempotency_key(i, DAY, 1) for i in (1, 2, 3))


def test_a_call_left_in_dialing_is_looked_up_not_resent(db_engine, simulator, audio_url):
    _crm(db_engine)
    gateway = SimulatorGateway(simulator.url)
    rows = _synthesized(db_engine, [4])
    dispatch.dial_rows(db_engine, db_engine, rows, _ctx(gateway, audio_url))
    # Simulate a worker that died after the gateway accepted but before recording it.
    with db_engine.begin() as conn:
        conn.execute(ledger.dispatch_ledger.update().values(state="dialing", call_id=None))
        stuck = ledger.rows_for_date(conn, DAY)
    counts = dispatch.dial_rows(db_engine, db_engine, stuck, _ctx(gateway, audio_url))
    assert counts.dialed == 1
    assert len(_calls(simulator)) == 1
    with db_engine.connect() as conn:
        assert ledger.rows_for_date(conn, DAY)[0].call_id == _calls(simulator)[0]["call_id"]


def test_dial_time_checks(db_engine, simulator, audio_url):
    _crm(db_engine)
    with db_engine.begin() as conn:
        conn.execute(sa.text("UPDATE customers SET voice_opt_out = TRUE WHERE id = 1"))
        conn.execute(sa.text("UPDATE customers SET phone = 'gone' WHERE id = 2"))
        conn.execute(sa.text("UPDATE notices SET status = 'delivered' WHERE id = 3"))
    gateway = SimulatorGateway(simulator.url)
    rows = _synthesized(db_engine, [1, 2, 3, 4])
    night = CallingHours(start=dt.time(20), end=dt.time(21))
    counts = dispatch.dial_rows(db_engine, db_engine, rows, _ctx(gateway, audio_url, hours=night))
    assert counts.reasons == {
        reasons.OPTED_OUT_BEFORE_DIAL: 1,
        reasons.INVALID_PHONE: 1,
        reasons.NOTICE_NO_LONGER_DUE: 1,
    }
    assert counts.waiting == 1 and counts.dialed == 0
    assert _calls(simulator) == []
    with db_engine.connect() as conn:
        states = {r.notice_id: r.state for r in ledger.rows_for_date(conn, DAY)}
    assert states == {1: "skipped", 2: "skipped", 3: "skipped", 4: "synthesized"}


def test_an_unreachable_gateway_leaves_rows_for_a_retry(db_engine, audio_url):
    from voice_notify.localrun import free_port

    _crm(db_engine)
    gateway = SimulatorGateway(f"http://127.0.0.1:{free_port()}", timeout_s=0.5)
    rows = _synthesized(db_engine, [5])
    counts = dispatch.dial_rows(db_engine, db_engine, rows, _ctx(gateway, audio_url))
    assert counts.transient == 1
    with db_engine.connect() as conn:
        row = ledger.rows_for_date(conn, DAY)[0]
    assert row.state == "dialing"
    assert row.idempotency_key == dispatch.idempotency_key(5, DAY, 1)


def test_reconcile_settles_calls_and_writes_back(db_engine, simulator, audio_url):
    _crm(db_engine)
    gateway = SimulatorGateway(simulator.url)
    rows = _synthesized(db_engine, [1, 2, 3, 4, 5, 6])
    dispatch.dial_rows(db_engine, db_engine, rows, _ctx(gateway, audio_url))
    counts = reconcile.settle_calls(
        db_engine,
        DAY,
        gateway,
        confirm_key="1",
        optout_key="9",
        timeout_s=20,
        poll_interval_s=0.05,
    )
    assert counts.settled == 6 and counts.still_open == 0
    with db_engine.connect() as conn:
        settled = ledger.rows_for_date(conn, DAY)
    plan = reconcile.build_write_back(settled)
    assert reconcile.write_back(db_engine, plan)["attempts"] == 6
    assert reconcile.write_back(db_engine, plan)["attempts"] == 6  # a re-run upserts
    with db_engine.connect() as conn:
        attempts = conn.execute(sa.select(demo_crm.contact_attempts)).all()
        notices = {r.id: r for r in conn.execute(sa.select(demo_crm.notices))}
        opted = {r.id for r in conn.execute(sa.select(demo_crm.customers)) if r.voice_opt_out}
    assert len(attempts) == 6
    for row in settled:
        status = gateway.call_status(row.call_id)
        expected = reconcile.outcome_of(status, "1", "9")
        assert row.outcome == expected
        notice = notices[row.notice_id]
        if status.state == CallState.COMPLETED:
            assert (notice.status, notice.status_reason) == ("delivered", expected)
        else:
            assert (notice.status, notice.status_reason) == ("undelivered", expected)
        assert (row.notice_id in opted) == (expected == "opted_out")


def test_outcome_names() -> None:
    from voice_notify.gateway.base import CallStatus

    def status(state, key=None):
        return CallStatus("c", "k", state, key_pressed=key)

    assert reconcile.outcome_of(status(CallState.COMPLETED, "1"), "1", "9") == "confirmed"
    assert reconcile.outcome_of(status(CallState.COMPLETED, "9"), "1", "9") == "opted_out"
    assert reconcile.outcome_of(status(CallState.COMPLETED), "1", "9") == "completed"
    assert reconcile.outcome_of(status(CallState.BUSY), "1", "9") == "busy"
    assert reconcile.outcome_of(status(CallState.NO_ANSWER), "1", "9") == "no_answer"


def test_a_stuck_call_the_gateway_never_saw_is_rechecked_before_resending(
    db_engine, simulator, audio_url
):
    from voice_notify.localrun import free_port

    _crm(db_engine)
    down = SimulatorGateway(f"http://127.0.0.1:{free_port()}", timeout_s=0.5)
    rows = _synthesized(db_engine, [1, 2])
    assert dispatch.dial_rows(db_engine, db_engine, rows, _ctx(down, audio_url)).transient == 2
    with db_engine.begin() as conn:
        conn.execute(sa.text("UPDATE customers SET voice_opt_out = TRUE WHERE id = 1"))
        stuck = ledger.rows_for_date(conn, DAY)
    gateway = SimulatorGateway(simulator.url)
    counts = dispatch.dial_rows(db_engine, db_engine, stuck, _ctx(gateway, audio_url))
    assert counts.dialed == 1 and counts.reasons == {reasons.OPTED_OUT_BEFORE_DIAL: 1}
    assert [c["metadata"]["notice_id"] for c in _calls(simulator)] == ["2"]
    assert _calls(simulator)[0]["idempotency_key"] == dispatch.idempotency_key(2, DAY, 1)
