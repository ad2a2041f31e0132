"""Exactly-once, and green runs, under faults, through Airflow itself.

Invariant, checked from the simulator's own call log and the CRM: each
(notice, attempt) reaches the gateway at most once, every notice of the
campaign ends in a terminal state with a reason, and the daily and reconcile
runs succeed (the dial step retries per call and leaves what it cannot place
to reconcile; only a gateway that looks down fails a task).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import sqlalchemy as sa

from tests.conftest import database_url, drop_database
from voice_notify import ledger
from voice_notify_dev import demo_crm, localrun
from voice_notify_dev.simulator import start_simulator

DAY = dt.date(2026, 11, 26)
TERMINAL = {"completed", "failed", "skipped"}
# Every fault the simulator knows, at rates that hit most batches.
FAULT_MIX = (
    "timeout_after_accept=0.1,error_before_accept=0.1,error_after_accept=0.1,"
    "slow_audio_fetch=0.05,duplicate_callback=0.2,late_callback=0.2,out_of_order_callback=0.2"
)


def _calls(state_dir: Path) -> list[dict]:
    path = state_dir / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _reconcile_until_settled(env: dict, engine: sa.Engine, log_dir: Path, runs: int = 4) -> None:
    """voice_notice_reconcile until no row of DAY is left open (bounded)."""
    for n in range(runs):
        with engine.connect() as conn:
            open_rows = [r for r in ledger.rows_for_date(conn, DAY) if r.state not in TERMINAL]
        if not open_rows:
            return
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        run_env = {**env, "VOICE_NOTIFY_RECONCILE_LOOKBACK_DAYS": str((now.date() - DAY).days + 1)}
        localrun.dags_test(
            run_env, "voice_notice_reconcile", now.isoformat(), log_dir / f"reconcile-{n}.log"
        )
        # Green under faults: calls the dial step could not place are counted, not failed.
        state = localrun.dag_run_state(run_env, "voice_notice_reconcile", now.date().isoformat())
        assert state == "success", (log_dir / f"reconcile-{n}.log").read_text()[-3000:]


def _assert_exactly_once(engine: sa.Engine, calls: list[dict]) -> None:
    with engine.connect() as conn:
        rows = ledger.rows_for_date(conn, DAY)
        attempts = conn.execute(sa.select(demo_crm.contact_attempts)).all()
    assert rows
    open_rows = [(r.notice_id, r.state) for r in rows if r.state not in TERMINAL]
    assert open_rows == []
    assert all(r.reason_code or r.outcome for r in rows)
    per_key = Counter(c["idempotency_key"] for c in calls)
    assert calls and max(per_key.values()) == 1, per_key.most_common(3)
    per_notice = Counter(c["metadata"]["notice_id"] for c in calls)
    assert max(per_notice.values()) <= 2  # the demo policy's attempts
    assert {a.call_id for a in attempts} == {c["call_id"] for c in calls}


def test_a_fault_mix_ends_terminal_with_no_duplicate_call(tmp_path, airflow_state, s3_endpoint):
    url = database_url("sqlite", tmp_path)
    engine = sa.create_engine(url)
    demo_crm.seed(engine, demo_crm.SeedSpec(anchor_date=DAY, customers=150))
    with start_simulator(
        tmp_path / "gateway", seed=13, call_seconds=0.3, faults=FAULT_MIX, fault_delay_s=2.5
    ) as sim:
        env = localrun.airflow_environment(
            airflow_state,
            crm_url=str(url),
            s3=s3_endpoint,
            gateway_url=sim.url,
            extra={
                "VOICE_NOTIFY_BUCKET": f"vn-faults-{uuid.uuid4().hex[:8]}",
                "AIRFLOW_CONN_VOICE_GATEWAY": localrun.gateway_connection_json(sim.url, 1.0),
                "VOICE_NOTIFY_TASK_RETRIES": "3",
                "VOICE_NOTIFY_RETRY_DELAY_S": "1",
            },
        )
        localrun.dags_test(env, "voice_notice_daily", DAY.isoformat(), tmp_path / "daily.log")
        # A green daily run: per-call retries inside the dial step, leftovers to reconcile.
        state = localrun.dag_run_state(env, "voice_notice_daily", DAY.isoformat())
        assert state == "success", (tmp_path / "daily.log").read_text()[-3000:]
        _reconcile_until_settled(env, engine, tmp_path)
        calls = _calls(sim.state_dir)
    _assert_exactly_once(engine, calls)
    engine.dispose()


def test_two_runs_of_one_date_at_once(tmp_path, s3_endpoint, simulator):
    url = database_url("postgresql", tmp_path)
    engine = sa.create_engine(url)
    try:
        demo_crm.seed(engine, demo_crm.SeedSpec(anchor_date=DAY, customers=150))
        bucket = f"vn-twice-{uuid.uuid4().hex[:8]}"
        envs = []
        for name in ("a", "b"):
            env = localrun.airflow_environment(
                tmp_path / name,
                crm_url=url.render_as_string(hide_password=False),
                s3=s3_endpoint,
                gateway_url=simulator.url,
                extra={"VOICE_NOTIFY_BUCKET": bucket, "VOICE_NOTIFY_RETRY_DELAY_S": "1"},
            )
            localrun.prepare_airflow(env)
            envs.append(env)
        airflow_bin = str(Path(sys.executable).with_name("airflow"))
        runs = [
            subprocess.Popen(
                [airflow_bin, "dags", "test", "voice_notice_daily", DAY.isoformat()],
                env=env,
                stdout=(tmp_path / f"run-{i}.log").open("w"),
                stderr=subprocess.STDOUT,
            )
            for i, env in enumerate(envs)
        ]
        for run in runs:
            run.wait(timeout=900)
        for env in envs:
            assert localrun.dag_run_state(env, "voice_notice_daily", DAY.isoformat()) == "success"
        _reconcile_until_settled(envs[0], engine, tmp_path)
        _assert_exactly_once(engine, _calls(simulator.state_dir))
    finally:
        engine.dispose()
        drop_database(url)
