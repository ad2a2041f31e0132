"""Under the real scheduler (``dags test`` ignores pools): synthesis respects its pool."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from voice_notify import demo_crm, localrun

DAY = dt.date(2026, 11, 25)
POOL_SLOTS = 2
# A launcher that restores SIGINT (ignored in processes started from a
# non-interactive shell) so `airflow standalone` can be stopped cleanly.
_LAUNCHER = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def _max_overlap(intervals: list[tuple[dt.datetime, dt.datetime]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = peak = 0
    for _, delta in events:  # an end sorts before a start at the same instant
        running += delta
        peak = max(peak, running)
    return peak


def _wait_for(predicate, timeout_s: float, what: str, proc: subprocess.Popen, log: Path):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"airflow standalone exited: {log.read_text()[-3000:]}")
        value = predicate()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}: {log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGINT, 30), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        if proc.poll() is not None:
            return
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue


@pytest.mark.scheduler
def test_synthesis_never_exceeds_the_gpu_pool(tmp_path, s3_endpoint, simulator):
    crm_url = f"sqlite:///{tmp_path / 'crm.sqlite'}"
    demo_crm.seed(sa.create_engine(crm_url), demo_crm.SeedSpec(anchor_date=DAY, customers=200))
    port = localrun.free_port()
    env = localrun.airflow_environment(
        tmp_path,
        crm_url=crm_url,
        s3=s3_endpoint,
        gateway_url=simulator.url,
        extra={
            "VOICE_NOTIFY_BUCKET": f"vn-pool-{uuid.uuid4().hex[:8]}",
            "VOICE_NOTIFY_RETRY_DELAY_S": "1",
            # Only the triggered run: no scheduled run may take the notices first.
            "VOICE_NOTIFY_DAILY_SCHEDULE": "none",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        },
    )
    localrun.prepare_airflow(env, pool_slots=POOL_SLOTS)
    metadata = sa.create_engine(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    airflow_bin = str(Path(sys.executable).with_name("airflow"))
    log = tmp_path / "standalone.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", _LAUNCHER, airflow_bin, "standalone"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def dag_parsed() -> bool:
            with metadata.connect() as conn:
                return bool(
                    conn.execute(
                        sa.text("SELECT 1 FROM serialized_dag WHERE dag_id = 'voice_notice_daily'")
                    ).first()
                )

        _wait_for(dag_parsed, 180, "the DAG to be parsed", proc, log)
        localrun.airflow(
            env,
            "dags",
            "trigger",
            "voice_notice_daily",
            "--logical-date",
            f"{DAY.isoformat()}T00:00:00+00:00",
            "--conf",
            json.dumps({"dry_run": True, "batch_size": 6}),
        )

        def run_finished() -> str | None:
            state = localrun.dag_run_state(env, "voice_notice_daily", DAY.isoformat())
            return state if state in ("success", "failed") else None

        assert _wait_for(run_finished, 600, "the DAG run", proc, log) == "success"
        with metadata.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT start_date, end_date, pool, state FROM task_instance "
                    "WHERE dag_id = 'voice_notice_daily' AND task_id = 'synthesize'"
                )
            ).all()
    finally:
        _stop(proc)
        metadata.dispose()

    assert len(rows) >= 4, "the seed should give several batches"
    assert {r.pool for r in rows} == {"cosyvoice_gpu"}
    assert {r.state for r in rows} == {"success"}
    spans = [
        (dt.datetime.fromisoformat(str(r.start_date)), dt.datetime.fromisoformat(str(r.end_date)))
        for r in rows
    ]
    # Exactly the pool: it held more batches back (parallelism is 8), and never let more run.
    assert _max_overlap(spans) == POOL_SLOTS
