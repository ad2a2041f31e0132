"""Under the real scheduler: what ``dags test`` cannot show.

``dags test`` ignores pools and runs one date at a time; here ``airflow
standalone`` (scheduler, triggerer, dag-processor, API server) runs the DAGs:
the synthesis pool bounds concurrent batches, and an overlapping
``airflow backfill create`` places no duplicate call.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from voice_notify.db import schema
from voice_notify_dev import demo_crm, localrun

POOL_DAY = dt.date(2026, 11, 20)  # a dry run: synthesis only
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


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop(proc: subprocess.Popen) -> None:
    """Stop standalone and every process it started (they share its process group).

    Standalone itself may exit first while its scheduler and dag-processor are
    still shutting down, so the whole group is waited for, then forced.
    """
    pgid = proc.pid
    for sig, wait_s in ((signal.SIGINT, 30), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        if not _group_alive(pgid):
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + wait_s
        while _group_alive(pgid) and time.monotonic() < deadline:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.2)
    proc.wait(timeout=10)


@dataclass
class Standalone:
    env: dict[str, str]
    metadata: sa.Engine
    proc: subprocess.Popen
    log: Path
    crm: sa.Engine
    gateway_state: Path

    def cli(self, *args: str) -> None:
        """An ``airflow`` command next to the running scheduler.

        The metadata database is SQLite here: a command that meets the scheduler's
        write lock fails whole ("database is locked") and is simply run again.
        """
        for attempt in range(5):
            try:
                localrun.airflow(self.env, *args)
                return
            except RuntimeError as exc:
                if "database is locked" not in str(exc) or attempt == 4:
                    raise
                time.sleep(2 + attempt)

    def trigger(self, day: dt.date, conf: dict) -> None:
        self.cli(
            "dags",
            "trigger",
            "voice_notice_daily",
            "--logical-date",
            f"{day.isoformat()}T00:00:00+00:00",
            "--conf",
            json.dumps(conf),
        )

    def runs(self) -> list[sa.Row]:
        with self.metadata.connect() as conn:
            return conn.execute(
                sa.text(
                    "SELECT run_id, logical_date, state FROM dag_run "
                    "WHERE dag_id = 'voice_notice_daily' ORDER BY id"
                )
            ).all()

    def wait_backfill_finished(self, timeout_s: float) -> list[sa.Row]:
        def finished():
            with self.metadata.connect() as conn:
                backfills = conn.execute(sa.text("SELECT completed_at FROM backfill")).all()
            runs = self.runs()
            done = all(r.state in ("success", "failed") for r in runs)
            return runs if backfills and all(b.completed_at for b in backfills) and done else None

        return _wait_for(finished, timeout_s, "the backfill", self.proc, self.log)

    def wait_runs_finished(self, count: int, timeout_s: float) -> list[sa.Row]:
        def finished():
            runs = self.runs()
            done = [r for r in runs if r.state in ("success", "failed")]
            return runs if len(runs) >= count and len(done) == len(runs) else None

        return _wait_for(finished, timeout_s, f"{count} DAG runs", self.proc, self.log)


@pytest.fixture(scope="module")
def standalone(tmp_path_factory, s3_endpoint):
    """``airflow standalone`` on a seeded SQLite CRM, a simulator and the session's S3."""
    from voice_notify_dev.simulator import start_simulator

    state = tmp_path_factory.mktemp("standalone")
    crm_url = f"sqlite:///{state / 'crm.sqlite'}"
    crm = sa.create_engine(crm_url)
    demo_crm.seed(crm, demo_crm.SeedSpec(anchor_date=DAY, customers=200))
    port = localrun.free_port()
    with start_simulator(state / "gateway", seed=17, call_seconds=0.3, faults="") as simulator:
        env = localrun.airflow_environment(
            state,
            crm_url=crm_url,
            s3=s3_endpoint,
            gateway_url=simulator.url,
            extra={
                "VOICE_NOTIFY_BUCKET": f"vn-sched-{uuid.uuid4().hex[:8]}",
                "VOICE_NOTIFY_RETRY_DELAY_S": "1",
                # Only the runs the tests ask for (triggers, a backfill): no scheduled
                # run may take the notices first. The DAGs keep their schedules,
                # which a backfill needs.
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
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
        log = state / "standalone.log"
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
                            sa.text(
                                "SELECT 1 FROM serialized_dag WHERE dag_id = 'voice_notice_daily'"
                            )
                        ).first()
                    )

            _wait_for(dag_parsed, 180, "the DAG to be parsed", proc, log)
            running = Standalone(env, metadata, proc, log, crm, state / "gateway")
            # The campaign DAG is paused on creation (nobody is called before an
            # operator says so); the scheduler starts no run of a paused DAG.
            running.cli("dags", "unpause", "voice_notice_daily")
            yield running
        finally:
            _stop(proc)
            metadata.dispose()
            crm.dispose()


@pytest.mark.scheduler
def test_synthesis_never_exceeds_the_gpu_pool(standalone: Standalone) -> None:
    standalone.trigger(POOL_DAY, {"dry_run": True, "batch_size": 6})
    runs = standalone.wait_runs_finished(1, 600)
    assert [r.state for r in runs] == ["success"]
    with standalone.metadata.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT start_date, end_date, pool, state FROM task_instance "
                "WHERE dag_id = 'voice_notice_daily' AND task_id = 'batch.synthesize'"
            )
        ).all()
    assert len(rows) >= 4, "the seed should give several batches"
    assert {r.pool for r in rows} == {"cosyvoice_gpu"}
    assert {r.state for r in rows} == {"success"}
    spans = [
        (dt.datetime.fromisoformat(str(r.start_date)), dt.datetime.fromisoformat(str(r.end_date)))
        for r in rows
    ]
    # Exactly the pool: it held more batches back (parallelism is 8), and never let more run.
    assert _max_overlap(spans) == POOL_SLOTS


def _calls(state_dir: Path) -> list[dict]:
    path = state_dir / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.scheduler
def test_an_overlapping_backfill_places_no_duplicate_call(standalone: Standalone) -> None:
    before = len(standalone.runs())
    standalone.trigger(DAY, {})
    standalone.wait_runs_finished(before + 1, 600)
    first_calls = _calls(standalone.gateway_state)
    assert first_calls, "the campaign should have placed calls"

    # The days around DAY and DAY itself again (the backfill's runs are at the
    # schedule's 06:00, the triggered one at midnight: two runs of one date).
    standalone.cli(
        "backfill",
        "create",
        "--dag-id",
        "voice_notice_daily",
        "--from-date",
        (DAY - dt.timedelta(days=1)).isoformat(),
        "--to-date",
        (DAY + dt.timedelta(days=1)).isoformat(),
        "--reprocess-behavior",
        "completed",
    )
    runs = standalone.wait_backfill_finished(900)
    assert len(runs) >= before + 3, runs
    assert {r.state for r in runs} == {"success"}, runs
    day_runs = [r for r in runs if str(r.logical_date).startswith(DAY.isoformat())]
    assert len(day_runs) == 2

    calls = _calls(standalone.gateway_state)
    per_key = Counter(c["idempotency_key"] for c in calls)
    assert max(per_key.values()) == 1
    # DAY's notices were called once, by DAY's first run; the backfill's DAY added none.
    first_keys = {c["idempotency_key"] for c in first_calls}
    day_keys = {k for k in per_key if k.endswith(f"-{DAY.isoformat()}-1")}
    assert day_keys == first_keys
    # No notice was called from two campaign dates.
    dates_per_notice: dict[str, set[str]] = {}
    for call in calls:
        dates_per_notice.setdefault(call["metadata"]["notice_id"], set()).add(
            call["idempotency_key"].split("-", 2)[2][:10]
        )
    assert all(len(dates) == 1 for dates in dates_per_notice.values())
    with standalone.crm.connect() as conn:
        claims = conn.execute(sa.select(schema.notice_dial_claims)).all()
        attempts = conn.execute(sa.select(schema.call_attempts)).all()
    assert len({c.notice_id for c in claims}) == len(claims)
    assert {a.idempotency_key for a in attempts} == set(per_key)
