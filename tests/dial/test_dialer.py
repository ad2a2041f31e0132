"""Dial and reconcile against the real gateway simulator, on each CRM backend."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from pathlib import Path

import sqlalchemy as sa

from tests.support.crm_rows import seed_customers, synthesized_rows
from voice_notify import ledger
from voice_notify.db import schema
from voice_notify.dial import dialer as dispatch
from voice_notify.dial import ratelimit
from voice_notify.gateway.base import CallEvent, CallState, CallStatus
from voice_notify.gateway.http import SimulatorGateway
from voice_notify.plan import compliance
from voice_notify.plan.campaigns import CallingHours, Caps, load_campaign_config
from voice_notify.reasons import Reason
from voice_notify.settle import intake, writeback
from voice_notify.settle import outcomes as reconcile
from voice_notify_dev import demo_crm
from voice_notify_dev.simulator import start_simulator

DAY = dt.date(2026, 11, 26)
ALL_DAY = CallingHours(start=dt.time(0), end=None)
NOON_UTC = dt.datetime(2026, 11, 26, 4, 0, tzinfo=dt.UTC)  # 12:00 in Shanghai
RETRY_LATER = NOON_UTC + dt.timedelta(minutes=2)  # past the resume grace of a dialing row
INCLUDE = Path(__file__).resolve().parents[2] / "include"
DEMO_CONFIG = load_campaign_config(INCLUDE / "demo" / "campaigns.yaml")


def _crm(engine: sa.Engine, n: int = 6) -> None:
    seed_customers(engine, {i: f"1381234{i:04d}" for i in range(1, n + 1)}, DAY)


def _synthesized(engine: sa.Engine, notice_ids, day: dt.date = DAY) -> list[sa.Row]:
    return synthesized_rows(engine, notice_ids, day, "audio/tone.wav")


def _ctx(gateway, audio_url, hours: CallingHours = ALL_DAY, now=NOON_UTC, config=DEMO_CONFIG):
    return dispatch.DialContext(
        gateway=gateway,
        audio_url=audio_url,
        config=replace(config, calling_hours=hours),
        now=lambda: now,
        rate_limiter=ratelimit.RateLimiter(200),
        retry_initial_s=0.01,  # the per-call retries' backoff, short for tests
        retry_max_s=0.05,
    )


def _calls(simulator) -> list[dict]:
    path = simulator.state_dir / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _rows(engine: sa.Engine, day: dt.date = DAY) -> dict[int, sa.Row]:
    with engine.connect() as conn:
        return {r.notice_id: r for r in ledger.rows_for_date(conn, day)}


def _settle_all(engine, gateway, config=DEMO_CONFIG, now=NOON_UTC) -> reconcile.ReconcileCounts:
    import time

    deadline = time.monotonic() + 20
    while True:
        counts = reconcile.settle_calls(engine, [DAY], gateway, config, now)
        if counts.still_open == 0 or time.monotonic() > deadline:
            return counts
        time.sleep(0.05)


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
    blocked = dispatch.dial_rows(db_engine, db_engine, other, _ctx(gateway, audio_url))
    assert blocked.reasons == {Reason.ALREADY_CONTACTED: 3}
    keys = [c["idempotency_key"] for c in _calls(simulator)]
    assert sorted(keys) == sorted(dispatch.idempotency_key(i, DAY, 1) for i in (1, 2, 3))
    with db_engine.connect() as conn:
        attempts = conn.execute(sa.select(schema.call_attempts)).all()
    assert sorted(a.idempotency_key for a in attempts) == sorted(keys)
    assert {a.call_id for a in attempts} == {c["call_id"] for c in _calls(simulator)}


def test_a_call_left_in_dialing_is_looked_up_not_resent(db_engine, simulator, audio_url):
    _crm(db_engine)
    gateway = SimulatorGateway(simulator.url)
    rows = _synthesized(db_engine, [4])
    dispatch.dial_rows(db_engine, db_engine, rows, _ctx(gateway, audio_url))
    # A worker that died after the gateway accepted but before recording it.
    with db_engine.begin() as conn:
        conn.execute(schema.dispatch_ledger.update().values(state="dialing", call_id=None))
        stuck = ledger.rows_for_date(conn, DAY)
    # Right away, the row may still be in another worker's hands: left alone.
    young = dispatch.dial_rows(db_engine, db_engine, stuck, _ctx(gateway, audio_url))
    assert young.reasons == {"dialing_in_progress": 1} and young.dialed == 0
    counts = dispatch.dial_rows(
        db_engine, db_engine, stuck, _ctx(gateway, audio_url, now=RETRY_LATER)
    )
    assert counts.dialed == 1
    assert len(_calls(simulator)) == 1
    assert _rows(db_engine)[4].call_id == _calls(simulator)[0]["call_id"]


def test_dial_time_checks(db_engine, simulator, audio_url):
    _crm(db_engine)
    with db_engine.begin() as conn:
        conn.execute(sa.text("UPDATE customers SET voice_opt_out = TRUE WHERE id = 1"))
        conn.execute(sa.text("UPDATE customers SET phone = 'gone' WHERE id = 2"))
        conn.execute(sa.text("UPDATE notices SET status = 'delivered' WHERE id = 3"))
        compliance.add_do_not_call(conn, "+8613812340004", "regulator_list", NOON_UTC)
    gateway = SimulatorGateway(simulator.url)
    rows = _synthesized(db_engine, [1, 2, 3, 4, 5])
    night = CallingHours(start=dt.time(20), end=dt.time(21))
    counts = dispatch.dial_rows(db_engine, db_engine, rows, _ctx(gateway, audio_url, hours=night))
    assert counts.reasons == {
        Reason.OPTED_OUT_BEFORE_DIAL: 1,
        Reason.INVALID_PHONE: 1,
        Reason.NOTICE_NO_LONGER_DUE: 1,
        Reason.ON_DO_NOT_CALL: 1,
        Reason.OUTSIDE_CALLING_HOURS: 1,
    }
    assert counts.waiting == 1 and counts.dialed == 0
    assert _calls(simulator) == []
    rows = _rows(db_engine)
    assert {n: r.state for n, r in rows.items()} == {
        1: "skipped",
        2: "skipped",
        3: "skipped",
        4: "skipped",
        5: "synthesized",
    }
    # Noon in Shanghai, window 20:00-21:00: it waits for 20:00 local = 12:00 UTC.
    assert rows[5].next_attempt_at == dt.datetime(2026, 11, 26, 12, 0)
    # Before that time a dial pass leaves it alone; at that time it is called.
    early = dispatch.dial_rows(db_engine, db_engine, [rows[5]], _ctx(gateway, audio_url))
    assert early.dialed == 0 and early.reasons == {"redial_not_due": 1}
    at_eight = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
    late = dispatch.dial_rows(
        db_engine, db_engine, [rows[5]], _ctx(gateway, audio_url, hours=night, now=at_eight)
    )
    assert late.dialed == 1


def test_caps_hold_a_second_call_to_the_same_customer(db_engine, simulator, audio_url):
    _crm(db_engine)
    with db_engine.begin() as conn:
        conn.execute(sa.text("UPDATE notices SET customer_id = 1 WHERE id = 2"))
    gateway = SimulatorGateway(simulator.url)
    rows = _synthesized(db_engine, [1, 2])
    with db_engine.begin() as conn:
        conn.execute(schema.dispatch_ledger.update().values(customer_id=1))
        rows = ledger.rows_for_date(conn, DAY)
    config = replace(DEMO_CONFIG, caps=Caps(per_minute=1, per_hour=5))
    counts = dispatch.dial_rows(db_engine, db_engine, rows, _ctx(gateway, audio_url, config=config))
    assert counts.dialed == 1 and counts.reasons == {Reason.CAP_REACHED: 1}
    waiting = next(r for r in _rows(db_engine).values() if r.state == "synthesized")
    assert waiting.next_attempt_at == dt.datetime(2026, 11, 26, 4, 1)


def test_an_unreachable_gateway_leaves_rows_for_a_retry(db_engine, audio_url):
    from voice_notify_dev.localrun import free_port

    _crm(db_engine)
    gateway = SimulatorGateway(f"http://127.0.0.1:{free_port()}", timeout_s=0.5)
    rows = _synthesized(db_engine, [5])
    counts = dispatch.dial_rows(db_engine, db_engine, rows, _ctx(gateway, audio_url))
    assert counts.transient == counts.left_for_reconcile == 1
    assert counts.gateway_down  # one of one call: the gateway looks down
    row = _rows(db_engine)[5]
    assert row.state == "dialing"
    assert row.idempotency_key == dispatch.idempotency_key(5, DAY, 1)


def test_a_stuck_call_the_gateway_never_saw_is_rechecked_before_resending(
    db_engine, simulator, audio_url
):
    from voice_notify_dev.localrun import free_port

    _crm(db_engine)
    down = SimulatorGateway(f"http://127.0.0.1:{free_port()}", timeout_s=0.5)
    rows = _synthesized(db_engine, [1, 2])
    assert dispatch.dial_rows(db_engine, db_engine, rows, _ctx(down, audio_url)).transient == 2
    with db_engine.begin() as conn:
        conn.execute(sa.text("UPDATE customers SET voice_opt_out = TRUE WHERE id = 1"))
        stuck = ledger.rows_for_date(conn, DAY)
    gateway = SimulatorGateway(simulator.url)
    counts = dispatch.dial_rows(
        db_engine, db_engine, stuck, _ctx(gateway, audio_url, now=RETRY_LATER)
    )
    assert counts.dialed == 1 and counts.reasons == {Reason.OPTED_OUT_BEFORE_DIAL: 1}
    assert [c["metadata"]["notice_id"] for c in _calls(simulator)] == ["2"]
    assert _calls(simulator)[0]["idempotency_key"] == dispatch.idempotency_key(2, DAY, 1)


def test_reconcile_settles_calls_and_writes_back(db_engine, simulator, audio_url):
    _crm(db_engine)
    gateway = SimulatorGateway(simulator.url)
    rows = _synthesized(db_engine, [1, 2, 3, 4, 5, 6])
    dispatch.dial_rows(db_engine, db_engine, rows, _ctx(gateway, audio_url))
    no_redials = replace(
        DEMO_CONFIG,
        notice_types={
            k: replace(v, redial=replace(v.redial, max_attempts=1))
            for k, v in DEMO_CONFIG.notice_types.items()
        },
    )
    counts = _settle_all(db_engine, gateway, config=no_redials)
    assert counts.still_open == 0 and counts.redials == 0
    with db_engine.connect() as conn:
        plan = writeback.load_write_back(conn, [DAY])
    assert writeback.write_back(db_engine, plan)["attempts"] == 6
    assert writeback.write_back(db_engine, plan)["attempts"] == 6  # a re-run upserts
    with db_engine.connect() as conn:
        attempts = conn.execute(sa.select(demo_crm.contact_attempts)).all()
        notices = {r.id: r for r in conn.execute(sa.select(demo_crm.notices))}
        opted = {r.id for r in conn.execute(sa.select(demo_crm.customers)) if r.voice_opt_out}
    assert len(attempts) == 6
    for row in _rows(db_engine).values():
        status = gateway.call_status(row.call_id)
        expected = reconcile.outcome_of(status, "1", "9")
        assert row.outcome == expected
        notice = notices[row.notice_id]
        if status.state == CallState.COMPLETED:
            assert (notice.status, notice.status_reason) == ("delivered", expected)
        else:
            assert (notice.status, notice.status_reason) == ("undelivered", expected)
        assert (row.notice_id in opted) == (expected == "opted_out")


def test_busy_calls_are_redialled_with_a_new_key_up_to_the_limit(db_engine, tmp_path, audio_url):
    _crm(db_engine)
    with start_simulator(tmp_path / "busy", seed=3, call_seconds=0.1, outcomes="busy=1") as sim:
        gateway = SimulatorGateway(sim.url)
        rows = _synthesized(db_engine, [1])
        dispatch.dial_rows(db_engine, db_engine, rows, _ctx(gateway, audio_url))
        first = _settle_all(db_engine, gateway)
        assert first.redials == 1
        row = _rows(db_engine)[1]
        assert (row.state, row.attempt, row.reason_code) == ("synthesized", 2, "busy")
        # Within the minute a per-minute cap holds the redial; after it, it goes.
        capped = replace(DEMO_CONFIG, caps=Caps(per_minute=1))
        held = dispatch.dial_rows(
            db_engine, db_engine, [row], _ctx(gateway, audio_url, config=capped)
        )
        assert held.reasons == {Reason.CAP_REACHED: 1}
        later = NOON_UTC + dt.timedelta(minutes=2)
        row = _rows(db_engine)[1]
        redial = dispatch.dial_rows(
            db_engine, db_engine, [row], _ctx(gateway, audio_url, now=later, config=capped)
        )
        assert redial.dialed == 1
        second = _settle_all(db_engine, gateway)
        assert second.redials == 0
        row = _rows(db_engine)[1]
        assert (row.state, row.attempt, row.reason_code) == ("failed", 2, "busy")
        assert [c["idempotency_key"] for c in _calls(sim)] == [
            dispatch.idempotency_key(1, DAY, 1),
            dispatch.idempotency_key(1, DAY, 2),
        ]
    with db_engine.connect() as conn:
        plan = writeback.load_write_back(conn, [DAY])
    writeback.write_back(db_engine, plan)
    with db_engine.connect() as conn:
        attempts = conn.execute(
            sa.select(demo_crm.contact_attempts).order_by(demo_crm.contact_attempts.c.attempt_no)
        ).all()
    assert [(a.attempt_no, a.outcome) for a in attempts] == [(1, "busy"), (2, "busy")]


def test_stored_callbacks_decide_even_out_of_order_and_repeated(db_engine, simulator, audio_url):
    _crm(db_engine)
    gateway = SimulatorGateway(simulator.url)
    rows = _synthesized(db_engine, [1])
    dispatch.dial_rows(db_engine, db_engine, rows, _ctx(gateway, audio_url))
    call_id = _rows(db_engine)[1].call_id
    events = [
        CallEvent(call_id, "completed", 4, answered_by="human"),  # the last one, first
        CallEvent(call_id, "digits", 3, key_pressed="9"),
        CallEvent(call_id, "ringing", 1),
        CallEvent(call_id, "completed", 4, answered_by="human"),  # a repeat
    ]
    assert intake.store_events(db_engine, events, "test") == 3
    assert intake.store_events(db_engine, events[:2], "test") == 0
    # No gateway: the outcome comes from the callbacks alone.
    counts = reconcile.settle_calls(db_engine, [DAY], None, DEMO_CONFIG, NOON_UTC)
    assert counts.outcomes == {"opted_out": 1}
    assert _rows(db_engine)[1].state == "completed"


def test_outcome_names() -> None:
    def status(state, key=None, answered_by=None):
        return CallStatus("c", "k", state, key_pressed=key, answered_by=answered_by)

    assert reconcile.outcome_of(status(CallState.COMPLETED, "1"), "1", "9") == "confirmed"
    assert reconcile.outcome_of(status(CallState.COMPLETED, "9"), "1", "9") == "opted_out"
    assert reconcile.outcome_of(status(CallState.COMPLETED), "1", "9") == "completed"
    machine = status(CallState.COMPLETED, answered_by="machine")
    assert reconcile.outcome_of(machine, "1", "9") == "answering_machine"
    assert reconcile.outcome_of(status(CallState.BUSY), "1", "9") == "busy"
    assert reconcile.outcome_of(status(CallState.NO_ANSWER), "1", "9") == "no_answer"
