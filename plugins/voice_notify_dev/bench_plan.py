"""The plan step at volume: seed N due notices, extract them, time ``tasks.plan``.

Creates a fresh database on a server (``--server-url``, default the machine's
PostgreSQL), seeds the demo CRM with ``--notices`` customers, one notice each, all due
on the campaign date (the dispatch ledger beside them), starts moto's S3 server, enrolls
the demo voices, runs ``tasks.extract`` and then ``tasks.plan`` in a fresh process of its
own, and prints one JSON line: the plan's wall seconds, its peak RSS (``VmHWM``) and
the RSS of the same process just before the plan (imports done), the number of batches
returned, and the same for a second plan of the date (``--rerun``).

    python -m voice_notify_dev.bench_plan --notices 100000 [--server-url URL] [--rerun]

The database is dropped at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from voice_notify_dev import demo_crm, localrun

DAY = dt.date(2026, 11, 26)
REPO = Path(demo_crm.__file__).resolve().parents[2]

# Runs in a process of its own: its peak RSS is the plan's (plus the imports).
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent across exec.
_PLAN_PROBE = """
import datetime as dt, json, logging, re, sys, time
from pathlib import Path
from voice_notify.airflow import tasks
task_log = logging.getLogger("voice_notify")  # INFO to stderr, as into a task's log
task_log.setLevel(logging.INFO)
task_log.addHandler(logging.StreamHandler(sys.stderr))
def hwm_mb():
    return int(re.search(r"VmHWM:\\s+(\\d+)", Path("/proc/self/status").read_text())[1]) // 1024
# Loaded before the clock starts, as in a task's process: the composer's lexicons, and
# Airflow's configuration (its import alone takes over a second; a task has it loaded).
tasks._composer()
tasks._max_map_length()
before = hwm_mb()
started, cpu = time.perf_counter(), time.process_time()
args = (dt.date.fromisoformat(sys.argv[1]), "all", sys.argv[2], int(sys.argv[3]))
if len(sys.argv) > 4:  # --profile: where the plan's own time goes
    import cProfile, pstats
    profile = cProfile.Profile()
    keys = profile.runcall(tasks.plan, *args)
    with open(sys.argv[4], "w") as out:
        for order in ("tottime", "cumulative"):
            pstats.Stats(profile, stream=out).sort_stats(order).print_stats(60)
else:
    keys = tasks.plan(*args)
seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
print(json.dumps({"seconds": round(seconds, 2), "cpu_s": round(cpu, 2), "rss_before_mb": before,
                  "rss_peak_mb": hwm_mb(), "batches": len(keys), "first": keys[:1],
                  "last": keys[-1:]}))
"""


def _admin(server: sa.URL, statement: str) -> None:
    engine = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(statement))
    finally:
        engine.dispose()


def _seed(url: sa.URL, notices: int) -> int:
    from voice_notify.db.sql import make_engine

    engine = make_engine(url)
    try:
        demo_crm.seed(engine, demo_crm.SeedSpec(anchor_date=DAY, customers=notices))
        with engine.begin() as conn:
            # Every notice due on the campaign date: all of them are the plan's.
            conn.execute(demo_crm.notices.update().values(due_date=DAY))
            return conn.execute(sa.select(sa.func.count()).select_from(demo_crm.notices)).scalar()
    finally:
        engine.dispose()


def _environment(crm_url: sa.URL, s3: localrun.S3Endpoint, bucket: str) -> dict[str, str]:
    return {
        "AIRFLOW_CONN_CRM_DB": localrun.crm_connection_json(crm_url),
        "AIRFLOW_CONN_VOICE_NOTIFY_S3": s3.connection_json(),
        "VOICE_NOTIFY_BUCKET": bucket,
        "VOICE_NOTIFY_INCLUDE_DIR": str(REPO / "include"),
        "VOICE_NOTIFY_CAMPAIGNS_FILE": str(REPO / "include" / "demo" / "campaigns.yaml"),
        "VOICE_NOTIFY_LEDGER_CONN_ID": "crm_db",
    }


def _plan(env: dict[str, str], due_key: str, batch_size: int, profile: str = "") -> dict:
    argv = [sys.executable, "-c", _PLAN_PROBE, DAY.isoformat(), due_key, str(batch_size)]
    proc = subprocess.run(
        argv + ([profile] if profile else []),
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"plan failed: {proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    lines = proc.stderr.splitlines()
    result["log_lines"] = len(lines)
    result["summary"] = [line for line in lines if line.startswith("plan ")][-1:]
    return result


def _dial_query_plan(url: sa.URL, batch_keys: list[str]) -> str:
    """PostgreSQL's plan for the dial step's query of one batch (it should use an index)."""
    from voice_notify import ledger
    from voice_notify.db.sql import make_engine

    if not batch_keys or url.get_backend_name() != "postgresql":
        return ""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("ANALYZE dispatch_ledger"))
            statement = sa.select(ledger.schema.dispatch_ledger).where(
                ledger.schema.dispatch_ledger.c.campaign_date == DAY,
                ledger.schema.dispatch_ledger.c.batch_key == batch_keys[0],
            )
            sql = statement.compile(engine, compile_kwargs={"literal_binds": True})
            lines = conn.execute(sa.text(f"EXPLAIN {sql}")).scalars()
            return " | ".join(line.strip() for line in lines)
    finally:
        engine.dispose()


def run(
    server_url: str, notices: int, batch_size: int, rerun: bool, keep: bool, profile: str = ""
) -> dict:
    server = sa.make_url(server_url)
    name = f"vn_bench_plan_{uuid.uuid4().hex[:8]}"
    _admin(server, f'CREATE DATABASE "{name}"')
    url = server.set(database=name)
    with tempfile.TemporaryDirectory(prefix="vn-bench-plan-") as tmp:
        s3 = localrun.start_s3(Path(tmp) / "s3.log")
        try:
            seeded = _seed(url, notices)
            bucket = f"vn-bench-{uuid.uuid4().hex[:8]}"
            localrun.enroll_demo_voices(url.render_as_string(False), s3, bucket, DAY)
            env = _environment(url, s3, bucket)
            os.environ.update(env)
            from voice_notify.airflow import storage, tasks
            from voice_notify.settings import get_settings

            get_settings.cache_clear()
            storage.s3_hook.cache_clear()

            started = time.perf_counter()
            due = tasks.extract(DAY, "all")
            out = {
                "notices": seeded,
                "extracted": due["count"],
                "extract_s": round(time.perf_counter() - started, 2),
                "plan": _plan(env, due["key"], batch_size, profile),
            }
            if rerun:
                out["rerun"] = _plan(env, due["key"], batch_size)
            out["dial_query_plan"] = _dial_query_plan(url, out["plan"]["first"])
            return out
        finally:
            s3.stop()
            if not keep:
                from voice_notify.airflow import hooks

                hooks.dispose_engines()
                _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notices", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument(
        "--server-url", default="postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
    )
    parser.add_argument("--rerun", action="store_true", help="plan the date a second time")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument("--profile", default="", help="write the plan's cProfile here")
    args = parser.parse_args(argv)
    result = run(
        args.server_url, args.notices, args.batch_size, args.rerun, args.keep, args.profile
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
