"""Benchmark: one campaign date of N notices through the real task functions, stage by stage.

``python -m voice_notify_dev.bench_scale --notices 100000 [--url postgresql+psycopg2://...]
[--synthesize-sample 200]`` (``make bench-scale``). Creates a scratch CRM database on the
PostgreSQL server of ``--url`` (dropped afterwards; a ``sqlite:///`` URL is used as it is),
seeds N customers with one notice each, all due on the campaign date, unique names, starts
moto's S3 server and the gateway simulator (calls of ``--call-seconds``), and runs what
``voice_notice_daily`` and ``voice_notice_reconcile`` run, through the same functions
(``voice_notify.airflow.tasks``) with Connections from ``AIRFLOW_CONN_*`` variables:

- ``extract``, ``plan`` (batches of ``--batch-size``, the DAG's default 50);
- ``synthesize``: the real worker (espeak-ng, a subprocess per batch, as the DAG's local
  mode) on the first batches, ``--synthesize-sample`` items or a few more; the rest is
  NOT synthesized: its figures (marked ``*``) are extrapolated from the sample, and
  ``synthesize (reuse)`` writes result manifests that give every other item the audio of
  a sampled item (bench scaffolding, not product code), so that every notice is dialled;
- ``dial``: every batch's ``dial`` (the sampled audio reused), ``--dial-workers``
  processes at once, as the ``voice_gateway`` pool runs them;
- ``settle``: one settle pass over the dial stage's outcomes; ``redials``: redials
  (``voice_notice_reconcile``'s) and settle passes until every notice of the date is
  terminal; ``write_back``; ``report``.

Each stage runs in a child process of its own (its workers are grandchildren), so the peak
RSS printed is that stage's largest process, from ``wait4``. Per stage: wall seconds, peak
RSS, rows and rows/s, the task instances the DAG would create for it (``len(plan)`` mapped
``synthesize`` and ``dial`` each, one per fixed task) and the bytes it added to S3. Then the
capacity model (``voice_notify.capacity``): the deployment's plan for this date's measured
figures, and the model with this machine's settings against what the run measured.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from voice_notify import capacity
from voice_notify_dev import localrun

DEFAULT_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
DAY = dt.date(2026, 11, 26)
CAMPAIGN = "all"
# wait_for_calls, reconcile and report besides extract and plan: the DAG's fixed tasks.
FIXED_TASKS = ("extract", "plan", "wait_for_calls", "reconcile", "report")


# ---------------------------------------------------------------------------- stages
# Each runs in a child process: ``python -m voice_notify_dev.bench_scale --stage NAME``,
# with the run's context (a JSON file) and the Connections in its environment.


def _stage_seed(ctx: dict[str, Any]) -> dict[str, Any]:
    from voice_notify.db import migrate
    from voice_notify_dev import demo_crm, demo_voices

    engine = sa.create_engine(ctx["crm_url"])
    spec = demo_crm.SeedSpec(
        anchor_date=DAY,
        customers=ctx["notices"],
        due_days=(0, 1),
        unique_names=True,
        dirty_rows=False,
    )
    seeded = demo_crm.seed(engine, spec)
    migrate.upgrade(engine)
    import boto3

    client = boto3.client("s3")
    client.create_bucket(Bucket=ctx["bucket"])
    voices = demo_voices.enroll_demo_profiles(engine, client, ctx["bucket"], DAY)
    engine.dispose()
    return {"rows": seeded["notices"], "voices": voices}


def _stage_extract(ctx: dict[str, Any]) -> dict[str, Any]:
    from voice_notify.airflow import tasks

    due = tasks.extract(DAY, CAMPAIGN)
    return {"rows": due["count"], "due_key": due["key"]}


def _stage_plan(ctx: dict[str, Any]) -> dict[str, Any]:
    from voice_notify.airflow import tasks

    keys = tasks.plan(DAY, CAMPAIGN, ctx["due_key"], ctx["batch_size"])
    with tasks._ledger_engine().connect() as conn:
        states = dict(
            conn.execute(
                sa.text(
                    "SELECT state, count(*) FROM dispatch_ledger WHERE campaign_date = :d "
                    "GROUP BY state"
                ),
                {"d": DAY},
            ).all()
        )
    return {"rows": sum(states.values()), "batch_keys": keys, "states": states}


def _stage_synthesize(ctx: dict[str, Any]) -> dict[str, Any]:
    from synthesis.manifest import parse_results
    from voice_notify.airflow import storage, tasks

    results_keys, items, ok, engine_s, synth_s = [], 0, 0, 0.0, 0.0
    client = storage.s3_hook().get_conn()
    telephone_bytes = master_bytes = 0
    for batch_key in ctx["sample_batches"]:
        results_key = tasks.synthesize_locally(batch_key)
        results_keys.append(results_key)
        for result in parse_results(storage.read_bytes(results_key)).values():
            items += 1
            engine_s += result.engine_seconds
            synth_s += result.synth_seconds
            if result.status != "ok":
                continue
            ok += 1
            # The sizes the worker reports where it does, else the objects' own.
            telephone_bytes += getattr(result, "telephone_bytes", None) or _size(
                client, ctx["bucket"], result.audio_key
            )
            master_bytes += getattr(result, "master_bytes", None) or _size(
                client, ctx["bucket"], result.master_key
            )
    return {
        "rows": items,
        "ok": ok,
        "results_keys": results_keys,
        "engine_seconds": engine_s,
        "synth_seconds": synth_s,
        "telephone_bytes": telephone_bytes,
        "master_bytes": master_bytes,
    }


def _size(client: Any, bucket: str, key: str | None) -> int:
    return client.head_object(Bucket=bucket, Key=key)["ContentLength"] if key else 0


def _stage_reuse(ctx: dict[str, Any]) -> dict[str, Any]:
    """Result manifests for the batches not synthesized: each item gets the audio of a
    sampled item (round robin), marked ``resumed`` (nothing was rendered for it) and with a
    warning naming the bench. Scaffolding: the dial step then has audio for every notice."""
    from synthesis.manifest import BatchItem, ResultItem, dump_lines, parse_lines, parse_results
    from synthesis.manifest import results_key_for as results_key_of
    from voice_notify.airflow import storage

    donors: list[ResultItem] = []
    for key in ctx["sample_results"]:
        donors += [r for r in parse_results(storage.read_bytes(key)).values() if r.status == "ok"]
    if not donors:
        raise RuntimeError("no sampled item was synthesized: nothing to reuse")
    written = 0
    for index, batch_key in enumerate(ctx["rest_batches"]):
        items = [BatchItem.from_json(line) for line in parse_lines(storage.read_bytes(batch_key))]
        results = []
        for n, item in enumerate(items):
            donor = donors[(index + n) % len(donors)]
            results.append(
                replace(
                    donor,
                    ledger_id=item.ledger_id,
                    notice_id=item.notice_id,
                    seed=item.seed,
                    resumed=True,
                    synth_seconds=0.0,
                    engine_seconds=0.0,
                    warnings=[f"bench_scale: audio of notice {donor.notice_id} reused"],
                )
            )
        storage.write_bytes(results_key_of(batch_key), dump_lines(results))
        written += len(results)
    return {"rows": written}


def _stage_dial(ctx: dict[str, Any]) -> dict[str, Any]:
    from synthesis.manifest import results_key_for as results_key_of
    from voice_notify.airflow import tasks

    part, parts = ctx["part"], ctx["parts"]
    totals: dict[str, int] = {}
    for batch_key in ctx["batch_keys"][part::parts]:
        counts = tasks.dial(DAY, batch_key, results_key_of(batch_key), dry_run=False)
        for name, value in counts.items():
            if isinstance(value, int) and not isinstance(value, bool):
                totals[name] = totals.get(name, 0) + value
    return {"rows": totals.get("dialed", 0), "counts": totals}


def _stage_settle(ctx: dict[str, Any]) -> dict[str, Any]:
    """One settle pass over the outcomes of the dial stage's calls (wait_for_calls' pass,
    without the triggerer's wait: the simulator's calls end in a fraction of a second)."""
    from voice_notify.airflow import tasks

    return {"rows": tasks.settle([DAY]).get("settled", 0)}


def _stage_redials(ctx: dict[str, Any]) -> dict[str, Any]:
    """voice_notice_reconcile's redials and settle passes, until every notice of the date
    is terminal: mostly dialing (the redials are placed by one process)."""
    from voice_notify import ledger
    from voice_notify.airflow import tasks

    settled = redials = passes = 0
    deadline = time.monotonic() + ctx["settle_timeout_s"]
    while True:
        passes += 1
        counts = tasks.settle([DAY])
        settled += counts.get("settled", 0)
        redialled = tasks.redial_due([DAY])
        redials += redialled.get("dialed", 0)
        with tasks._ledger_engine().connect() as conn:
            rows = ledger.rows_for_date(conn, DAY)
        if all(ledger.LedgerState(r.state).terminal for r in rows):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"calls still open after {ctx['settle_timeout_s']} s")
        time.sleep(ctx["poll_s"])
    return {"rows": settled, "redials": redials, "passes": passes}


def _stage_write_back(ctx: dict[str, Any]) -> dict[str, Any]:
    from voice_notify.airflow import tasks

    counts = tasks.write_back([DAY])
    rows = sum(v for v in counts.values() if isinstance(v, int) and not isinstance(v, bool))
    return {"rows": rows, "counts": counts}


def _stage_report(ctx: dict[str, Any]) -> dict[str, Any]:
    from voice_notify.airflow import storage, tasks

    stored = tasks.report(DAY)
    report = json.loads(storage.read_bytes(stored["key"]))
    return {"rows": report["notices"], "report": {k: v for k, v in report.items() if k != "items"}}


STAGES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "seed": _stage_seed,
    "extract": _stage_extract,
    "plan": _stage_plan,
    "synthesize": _stage_synthesize,
    "synthesize (reuse)": _stage_reuse,
    "dial": _stage_dial,
    "settle": _stage_settle,
    "redials": _stage_redials,
    "write_back": _stage_write_back,
    "report": _stage_report,
}


def _run_stage_here(name: str, context_path: Path, out_path: Path) -> int:
    ctx = json.loads(context_path.read_text())
    if os.environ.get("VOICE_NOTIFY_BENCH_PROFILE"):
        # Where a stage's time goes: cProfile's statistics beside its result.
        import cProfile

        profiler = cProfile.Profile()
        result = profiler.runcall(STAGES[name], ctx)
        profiler.dump_stats(str(out_path.with_suffix(".prof")))
    else:
        result = STAGES[name](ctx)
    out_path.write_text(json.dumps(result, default=str))
    return 0


# ---------------------------------------------------------------------- the harness


@dataclass
class StageFigures:
    name: str
    wall_s: float
    peak_rss_kib: int
    rows: int
    task_instances: int | None
    s3_bytes: int
    result: dict[str, Any] = field(default_factory=dict)
    extrapolated: bool = False
    note: str = ""

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.wall_s if self.wall_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "stage": self.name,
            "wall_s": round(self.wall_s, 3),
            "peak_rss_mib": round(self.peak_rss_kib / 1024, 1),
            "rows": self.rows,
            "rows_per_s": round(self.rows_per_s, 1),
            "task_instances": self.task_instances,
            "s3_bytes": self.s3_bytes,
            "extrapolated": self.extrapolated,
            "note": self.note,
        }


class Bench:
    """The services and the scratch database of one bench run, and its stage runner."""

    def __init__(self, args: argparse.Namespace, state_dir: Path) -> None:
        self.args = args
        self.state_dir = state_dir
        self.bucket = f"vn-bench-{uuid.uuid4().hex[:8]}"
        self.context: dict[str, Any] = {
            "notices": args.notices,
            "batch_size": args.batch_size,
            "bucket": self.bucket,
            "settle_timeout_s": args.settle_timeout_s,
            "poll_s": 0.5,
        }
        self.env: dict[str, str] = {}
        self.stages: list[StageFigures] = []
        self.s3 = None

    def s3_total_bytes(self) -> int:
        client = self.s3.client()
        total = 0
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            total += sum(obj["Size"] for obj in page.get("Contents", []))
        return total

    def _s3_bytes_or_zero(self) -> int:
        try:
            return self.s3_total_bytes()
        except Exception:  # the bucket does not exist before the seed stage
            return 0

    def run(
        self,
        name: str,
        *,
        task_instances: int | None,
        parts: int = 1,
        extra: dict[str, Any] | None = None,
    ) -> StageFigures:
        """Run a stage in ``parts`` child processes at once; wall, peak RSS and S3 bytes."""
        before = self._s3_bytes_or_zero()
        children = []
        started = time.perf_counter()
        slug = name.replace(" ", "_").replace("(", "").replace(")", "")
        for part in range(parts):
            ctx = {**self.context, **(extra or {}), "part": part, "parts": parts}
            context_path = self.state_dir / f"{slug}-{part}.context.json"
            context_path.write_text(json.dumps(ctx, default=str))
            out_path = self.state_dir / f"{slug}-{part}.result.json"
            out_path.unlink(missing_ok=True)
            log_path = self.state_dir / f"{slug}-{part}.log"
            with log_path.open("w") as log_file:
                command = [sys.executable, "-m", "voice_notify_dev.bench_scale", "--stage", name]
                command += ["--context", str(context_path), "--out", str(out_path)]
                proc = subprocess.Popen(
                    command,
                    env=self.env,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                )
            children.append((proc, out_path, log_path))
        peak, results = 0, []
        for proc, out_path, log_path in children:
            # wait4: this child's own resource use, its waited-for workers included.
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            peak = max(peak, usage.ru_maxrss)
            if proc.returncode != 0:
                tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
                raise RuntimeError(f"stage {name} exited {proc.returncode}; log tail:\n{tail}")
            results.append(json.loads(out_path.read_text()))
        wall = time.perf_counter() - started
        merged: dict[str, Any] = results[0] if parts == 1 else {"parts": results}
        rows = sum(int(r.get("rows", 0)) for r in results)
        figures = StageFigures(
            name, wall, peak, rows, task_instances, self._s3_bytes_or_zero() - before, merged
        )
        self.stages.append(figures)
        print(
            f"  {name}: {wall:.1f} s, peak RSS {peak / 1024:.0f} MiB, {rows:,} rows "
            f"({figures.rows_per_s:,.0f}/s), S3 +{capacity.size(figures.s3_bytes)}",
            flush=True,
        )
        return figures


def _server_database(url: str) -> tuple[sa.URL, Callable[[], None]]:
    """A scratch database on the server of ``url`` and how to drop it; SQLite as it is."""
    server = sa.make_url(url)
    if server.get_backend_name() == "sqlite":
        return server, lambda: None
    if server.get_backend_name() != "postgresql":
        raise SystemExit("--url must be a PostgreSQL server URL or a sqlite:/// file")
    name = f"vn_bench_scale_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return server.set(database=name), drop


def _environment(bench: Bench, crm_url: sa.URL, gateway_url: str) -> dict[str, str]:
    args = bench.args
    env = localrun.airflow_environment(
        bench.state_dir,
        crm_url=crm_url.render_as_string(hide_password=False),
        s3=bench.s3,
        gateway_url=gateway_url,
        extra={
            "VOICE_NOTIFY_BUCKET": bench.bucket,
            "VOICE_NOTIFY_LEDGER_CONN_ID": "crm_db",
            "VOICE_NOTIFY_CALLS_PER_SECOND": str(args.calls_per_second),
            "VOICE_NOTIFY_POLL_INTERVAL_S": "0.5",
            "VOICE_NOTIFY_RECONCILE_LOOKBACK_DAYS": "1",
            # boto3's standard environment, for the seed's enrollment (as the worker has).
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_S3": bench.s3.url,
        },
    )
    # Warnings and above: the per-notice INFO lines of 100,000 notices would be the run.
    env["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
    return env


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    """The whole run; returns every figure (what ``--json`` writes)."""
    from voice_notify_dev.simulator import start_simulator

    state_dir = Path(tempfile.mkdtemp(prefix="vn-bench-scale-"))
    crm_url, drop = _server_database(args.url)
    if crm_url.get_backend_name() == "sqlite" and crm_url.database:
        Path(crm_url.database).unlink(missing_ok=True)
    bench = Bench(args, state_dir)
    bench.context["crm_url"] = crm_url.render_as_string(hide_password=False)
    started = time.perf_counter()
    try:
        bench.s3 = localrun.start_s3(state_dir / "s3.log")
        with start_simulator(
            state_dir / "gateway", seed=7, call_seconds=args.call_seconds, faults=""
        ) as sim:
            bench.env = _environment(bench, crm_url, sim.url)
            bench.env["AIRFLOW_CONN_VOICE_GATEWAY"] = localrun.gateway_connection_json(
                sim.url, 10.0
            )
            figures = _stages(bench)
    finally:
        if bench.s3 is not None:
            bench.s3.stop()
        drop()
        if not args.keep:
            shutil.rmtree(state_dir, ignore_errors=True)
    figures["wall_s"] = round(time.perf_counter() - started, 1)
    figures["state_dir"] = str(state_dir) if args.keep else None
    return figures


def _stages(bench: Bench) -> dict[str, Any]:
    args = bench.args
    print(
        f"bench-scale: {args.notices:,} notices due {DAY} on "
        f"{sa.make_url(bench.context['crm_url']).get_backend_name()}, batches of "
        f"{args.batch_size}, synthesizing a sample of {args.synthesize_sample}",
        flush=True,
    )
    bench.run("seed", task_instances=None).note = "not a DAG task: CRM rows, demo voices"
    extract = bench.run("extract", task_instances=1)
    bench.context["due_key"] = extract.result["due_key"]
    plan = bench.run("plan", task_instances=1)
    keys = plan.result["batch_keys"]
    bench.context["batch_keys"] = keys
    batches = len(keys)
    sample_batches = keys[: max(1, math.ceil(args.synthesize_sample / args.batch_size))]
    synth = bench.run(
        "synthesize", task_instances=batches, extra={"sample_batches": sample_batches}
    )
    rest = keys[len(sample_batches) :]
    reuse = bench.run(
        "synthesize (reuse)",
        task_instances=None,
        extra={"sample_results": synth.result["results_keys"], "rest_batches": rest},
    )
    reuse.note = "bench scaffolding: sampled audio reused for the rest"
    planned = sum(v for k, v in plan.result["states"].items() if k not in ("skipped", "failed"))
    sampled = synth.rows
    scale = planned / sampled if sampled else 0.0
    synth.note = (
        f"real worker on {sampled:,} items ({len(sample_batches)} batches); "
        f"* = extrapolated to {planned:,}"
    )
    extrapolated = StageFigures(
        "synthesize, all items*",
        synth.wall_s * scale,
        synth.peak_rss_kib,
        planned,
        batches,
        int(synth.s3_bytes * scale),
        extrapolated=True,
        note=f"the sample x {scale:,.1f}, one worker at a time",
    )
    bench.stages.insert(bench.stages.index(reuse), extrapolated)
    dial = bench.run("dial", task_instances=batches, parts=args.dial_workers)
    dial.note = (
        f"{args.dial_workers} dial tasks at once, limit {args.calls_per_second:g} calls/s; "
        "every notice dialled, with the audio of a sampled item"
    )
    bench.run("settle", task_instances=1).note = "one settle pass: the dial stage's outcomes"
    redials = bench.run("redials", task_instances=None)
    redials.note = (
        f"reconcile's redials ({redials.result['redials']:,}) and settle passes "
        f"({redials.result['passes']}) until every notice is terminal"
    )
    bench.run("write_back", task_instances=1).note = "reconcile's CRM write-back"
    report = bench.run("report", task_instances=1)
    body = report.result["report"]
    figures = {
        "notices": args.notices,
        "batches": batches,
        "task_instances": 2 * batches + len(FIXED_TASKS),
        "stages": [s.as_dict() for s in bench.stages],
        "report": {k: body[k] for k in ("notices", "calls", "by_state", "by_outcome")},
        "synthesis": {
            "sampled_items": sampled,
            "sampled_ok": synth.result["ok"],
            "synth_seconds": synth.result["synth_seconds"],
            "engine_seconds": synth.result["engine_seconds"],
            "telephone_bytes": synth.result["telephone_bytes"],
            "master_bytes": synth.result["master_bytes"],
            "planned": planned,
        },
    }
    figures["capacity"] = _capacity(bench, figures, body, synth, dial)
    return figures


def _capacity(
    bench: Bench,
    figures: dict[str, Any],
    report: dict[str, Any],
    synth: StageFigures,
    dial: StageFigures,
) -> dict[str, Any]:
    """The model twice: the deployment's plan (CosyVoice3 defaults, with this date's
    measured shares, audio seconds and bytes), and the model with this machine's settings
    (the sample's seconds per notice on one worker, the bench's rate, the simulator's call
    length) against what the run measured."""
    args = bench.args
    section = report.get("capacity") or {"inputs": {}, "measured_inputs": []}
    measured = {name: section["inputs"][name] for name in section["measured_inputs"]}
    ok = figures["synthesis"]["sampled_ok"]
    if ok:
        measured["telephone_bytes"] = figures["synthesis"]["telephone_bytes"] / ok
        measured["master_bytes"] = figures["synthesis"]["master_bytes"] / ok
    planned = figures["synthesis"]["planned"]
    deployment = capacity.with_measured(
        capacity.CapacityInputs(batch_size=args.batch_size), measured
    )
    # The engine's own seconds per notice (the model's GPU seconds); the worker's wall
    # time per notice beside it shows what the model leaves out (start-up, QC, S3).
    engine_per_notice = figures["synthesis"]["engine_seconds"] / synth.rows if synth.rows else 0.0
    wall_per_notice = synth.wall_s / synth.rows if synth.rows else 0.0
    uncached = deployment.audio_s_per_notice * (1.0 - deployment.cache_share)
    here = replace(
        deployment,
        real_time_factor=engine_per_notice / uncached if uncached else 0.0,
        gpu_slots=1,
        calls_per_second=args.calls_per_second,
        trunk_channels=1_000_000,
        avg_call_s=args.call_seconds,
        ring_s=args.call_seconds,
    )
    here_plan = capacity.plan_capacity(here)
    first_attempts = planned * here.call_share
    # Everything the synthesis put in S3 (audio, masters, the segment cache, results),
    # per sampled item, for every planned notice.
    stored = synth.s3_bytes / synth.rows * planned if synth.rows else None
    compared = [
        ("synthesis, one worker*", here_plan.synthesis_s, wall_per_notice * planned, "s"),
        (
            "dialing the first attempts",
            (first_attempts - 1) / here_plan.dial_rate if first_attempts > 1 else 0.0,
            dial.wall_s,
            "s",
        ),
        ("call attempts", here_plan.attempts, report["calls"], "calls"),
        ("S3 bytes of synthesis*", here_plan.storage_per_day_bytes, stored, "bytes"),
    ]
    return {
        "measured_inputs": sorted(measured),
        "deployment": capacity.plan_capacity(deployment).as_dict(),
        "this_machine": here_plan.as_dict(),
        "compared": [
            {
                "figure": name,
                "unit": unit,
                "predicted": round(predicted, 3),
                "measured": None if value is None else round(value, 3),
                "ratio": round(value / predicted, 3) if value is not None and predicted else None,
            }
            for name, predicted, value, unit in compared
        ],
    }


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "–"
    if unit == "s":
        return capacity.duration(value)
    if unit == "bytes":
        return capacity.size(value)
    return f"{value:,.0f}"


#: The issue's targets on this machine kind: (stage, wall seconds, peak RSS MiB or None).
TARGETS = (("plan", 20.0, 500.0), ("settle", 60.0, None), ("report", 10.0, None))


def target_lines(stages: list[dict[str, Any]]) -> list[str]:
    """Each target against its stage's figures: met or not."""
    by_name = {stage["stage"]: stage for stage in stages}
    lines = []
    for name, seconds, rss in TARGETS:
        stage = by_name.get(name)
        if stage is None:
            continue
        met = stage["wall_s"] <= seconds and (rss is None or stage["peak_rss_mib"] <= rss)
        limit = f"<= {seconds:g} s" + ("" if rss is None else f", <= {rss:g} MiB")
        lines.append(
            f"  {name}: {stage['wall_s']:.1f} s, {stage['peak_rss_mib']:.0f} MiB "
            f"(target {limit}): {'met' if met else 'NOT met'}"
        )
    return lines


def print_figures(figures: dict[str, Any]) -> None:
    """The stage table, then the capacity plan and the model against the run."""
    print()
    print(
        f"{figures['notices']:,} notices, {figures['batches']:,} batches: the DAG would run "
        f"{figures['task_instances']:,} task instances (2 x {figures['batches']:,} mapped "
        f"synthesize + dial, {len(FIXED_TASKS)} fixed); whole bench {figures['wall_s']:.0f} s"
    )
    header = f"{'stage':<24}{'wall':>10}{'peak RSS':>11}{'rows':>10}{'rows/s':>10}"
    header += f"{'tasks':>7}{'S3 bytes':>12}"
    print(header)
    for stage in figures["stages"]:
        tasks = "" if stage["task_instances"] is None else f"{stage['task_instances']:,}"
        print(
            f"{stage['stage']:<24}{stage['wall_s']:>9.1f}s{stage['peak_rss_mib']:>8.0f} MiB"
            f"{stage['rows']:>10,}{stage['rows_per_s']:>10,.0f}{tasks:>7}"
            f"{capacity.size(stage['s3_bytes']):>12}"
        )
    for stage in figures["stages"]:
        if stage["note"]:
            print(f"  {stage['stage']}: {stage['note']}")
    print("targets:")
    for line in target_lines(figures["stages"]):
        print(line)
    report = figures["report"]
    print(
        f"report: {report['notices']:,} notices, {report['calls']:,} calls; by state "
        + ", ".join(f"{k}={v:,}" for k, v in report["by_state"].items())
    )
    plan = figures["capacity"]
    print()
    print(
        "capacity plan for this date as deployed (CosyVoice3 defaults; measured here: "
        + ", ".join(plan["measured_inputs"])
        + "):"
    )
    deployment = capacity.plan_capacity(capacity.CapacityInputs(**plan["deployment"]["inputs"]))
    for line in capacity.format_table(capacity.plan_rows(deployment)).splitlines():
        print("  " + line)
    print()
    print(
        "the model with this machine's settings (espeak-ng's engine seconds per notice on one "
        "worker, the bench's call rate, the simulator's call length) against this run "
        "(* = extrapolated from the sample):"
    )
    print(f"  {'figure':<30}{'predicted':>16}{'measured':>16}{'ratio':>8}")
    for row in plan["compared"]:
        ratio = "–" if row["ratio"] is None else f"{row['ratio']:.2f}"
        print(
            f"  {row['figure']:<30}{_value(row['predicted'], row['unit']):>16}"
            f"{_value(row['measured'], row['unit']):>16}{ratio:>8}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notices", type=int, default=100_000)
    parser.add_argument(
        "--url",
        default=os.environ.get("VOICE_NOTIFY_BENCH_POSTGRES_URL", DEFAULT_URL),
        help="a PostgreSQL server (a scratch database is made and dropped) or sqlite:///FILE",
    )
    parser.add_argument("--synthesize-sample", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--dial-workers", type=int, default=4, help="dial tasks at once")
    parser.add_argument("--calls-per-second", type=float, default=500.0)
    parser.add_argument("--call-seconds", type=float, default=0.2, help="simulated call length")
    parser.add_argument("--settle-timeout-s", type=float, default=3600.0)
    parser.add_argument("--json", type=Path, default=None, help="also write every figure here")
    parser.add_argument("--keep", action="store_true", help="keep the state folder (logs)")
    parser.add_argument("--stage", choices=sorted(STAGES), help=argparse.SUPPRESS)
    parser.add_argument("--context", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage:
        return _run_stage_here(args.stage, args.context, args.out)
    if args.notices < 1 or args.synthesize_sample < 1:
        parser.error("--notices and --synthesize-sample must be at least 1")
    if shutil.which("espeak-ng") is None:
        print("espeak-ng is missing: run `make bench-scale` (it installs it)")
        return 2
    figures = run_bench(args)
    print_figures(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
