"""The steps of the daily campaign, one function per DAG task.

Each function takes the campaign date (the run's logical date) and references
(S3 keys), returns references and counts for XCom, and is safe to run twice.
The DAG file only wires them together.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from synthesis.manifest import parse_results
from synthesis.worker import EXIT_OK
from voice_notify import ledger, retention
from voice_notify.airflow import hooks, storage
from voice_notify.airflow.hooks import gateway_from_connection
from voice_notify.db import migrate
from voice_notify.dial import dialer, ratelimit
from voice_notify.dial.results import record_synthesis
from voice_notify.extract import due_notices
from voice_notify.plan import planner
from voice_notify.plan.campaigns import CampaignConfig, load_campaign_config
from voice_notify.reasons import Reason
from voice_notify.report.campaign import load_report
from voice_notify.report.html import render
from voice_notify.settings import get_settings
from voice_notify.settle import outcomes, writeback

log = logging.getLogger(__name__)


def campaign_config() -> CampaignConfig:
    return load_campaign_config(get_settings().campaigns_file)


@cache
def _composer():
    from synthesis.text import NoticeComposer

    return NoticeComposer.load(get_settings().include_dir)


def _ledger_engine():
    engine = hooks.engine_for(get_settings().ledger_conn_id)
    migrate.ensure_current(engine)
    return engine


def extract(campaign_date: dt.date, campaign: str) -> dict[str, Any]:
    """Snapshot the CRM's due notices for the date into S3 (customer data stays out of XCom)."""
    settings = get_settings()
    config = campaign_config()
    config.notice_types_of(campaign)  # an unknown campaign fails before any work
    storage.ensure_bucket()
    count = 0

    def counted(rows):
        nonlocal count
        for row in rows:
            count += 1
            yield row

    # Streamed from a server-side cursor into S3: memory does not grow with the campaign.
    with hooks.engine_for(settings.crm_conn_id).connect() as conn:
        rows = due_notices(conn.execution_options(yield_per=5000), campaign_date, config)
        key = storage.write_jsonl(storage.due_notices_key(campaign_date, campaign), counted(rows))
    log.info("extracted %d due notices for %s (%s) into %s", count, campaign_date, campaign, key)
    return {"key": key, "count": count}


def plan(campaign_date: dt.date, campaign: str, due_key: str, batch_size: int) -> list[str]:
    """Decide every notice, record the decisions, write batch manifests; returns the key of
    every batch of the date and campaign (the same list when the plan runs again).

    The extract is streamed and planned in chunks (``plan.planner``): memory does not grow
    with the campaign. ``batch_size`` is the size of a normal campaign's batches; a large
    campaign gets larger ones so the mapped batches stay within ``[core] max_map_length``.
    """
    settings = get_settings()
    config = campaign_config()
    limits = planner.BatchLimits(
        batch_size=batch_size,
        gpu_slots=settings.synthesis_slots,
        max_map_length=_max_map_length(),
        max_batch_size=settings.max_batch_size,
    )
    storage.s3_hook().get_conn()  # the client, before the manifest writers' threads
    with _ledger_engine().connect() as conn:
        summary = planner.plan_date(
            conn,
            storage.read_lines(due_key),  # parsed where they are decided
            campaign_date,
            config.notice_types_of(campaign),
            _composer(),
            config,
            limits,
            batch_key=lambda index: storage.batch_key(campaign_date, campaign, index),
            write_manifest=storage.put_bytes,
            merge_pairs=config.merge_pairs(campaign),
            workers=settings.plan_workers,
        )
    log.info(
        "plan %s (%s): %d decisions, %d skipped %s, %d waiting for synthesis (%d merged "
        "calls), %d batches (%d new, of %s); seconds %s",
        campaign_date,
        campaign,
        summary.decisions,
        sum(summary.reasons.values()),
        {str(reason): n for reason, n in summary.reasons.most_common()},
        summary.waiting,
        summary.merged_calls,
        len(summary.batch_keys),
        summary.new_batches,
        summary.new_batch_size,
        {phase: round(s, 1) for phase, s in summary.seconds.most_common()},
    )
    return summary.batch_keys


def _max_map_length() -> int:
    """Airflow's limit on the tasks one mapped task (group) may expand to."""
    from airflow.sdk.configuration import conf

    return conf.getint("core", "max_map_length", fallback=1024)


class WorkerFailed(RuntimeError):
    def __init__(self, code: int, output: str) -> None:
        super().__init__(f"synthesis worker exited {code}: {output[-2000:]}")
        self.code = code


def synthesize_locally(batch_key: str, engine: str | None = None) -> str:
    """Run the worker CLI on this machine, as the GPU pod would; returns the result key.

    :param engine: the synthesis engine (default: the ``synthesis_engine`` setting); the
        fallback engine comes from ``synthesis_fallback_engine``.
    """

    settings = get_settings()
    env = {**os.environ, **storage.worker_environment()}
    with tempfile.TemporaryDirectory(prefix="vn-worker-") as tmp:
        xcom_file = Path(tmp) / "return.json"
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "synthesis.worker",
                "--batch",
                f"s3://{settings.bucket}/{batch_key}",
                "--engine",
                engine or settings.synthesis_engine,
                "--fallback-engine",
                settings.synthesis_fallback_engine,
                "--xcom-file",
                str(xcom_file),
            ],
            env=env,
            capture_output=True,
            text=True,
            # Below the task's own timeout, so the worker's output still reaches the log.
            timeout=max(settings.task_timeout_s - 60, 60),
        )
        for line in proc.stderr.splitlines():
            log.info("worker: %s", line)
        if proc.returncode != EXIT_OK:
            raise WorkerFailed(proc.returncode, proc.stderr)
        summary = json.loads(xcom_file.read_text())
    log.info("batch %s: %s", batch_key, summary)
    return summary["results_key"]


def _now() -> dt.datetime:
    # Calls happen in real time: calling hours, caps and redial times use the
    # wall clock, never the run's logical date.
    return dt.datetime.now(dt.UTC)


def _dial_context():

    settings = get_settings()
    gateway = gateway_from_connection(settings.gateway_conn_id)
    context = dialer.DialContext(
        gateway=gateway,
        audio_url=storage.presigned_audio_url,
        config=campaign_config(),
        now=_now,
        # Shared by every dial task on every worker: the rate is the gateway's.
        rate_limiter=ratelimit.SharedRateLimiter(
            _ledger_engine(), settings.gateway_conn_id, settings.calls_per_second
        ),
        status_callback_url=settings.status_callback_url,
    )
    # Past the longest a live worker can spend placing one call (every try with its
    # look-up, and the backoff between them) no worker still holds a row in
    # ``dialing``: it is safe to look it up and resume it.
    timeout_s = float(getattr(gateway, "timeout_s", 30))
    return dataclasses.replace(
        context, resume_after_s=max(context.longest_placement_s(timeout_s) + 5, 15)
    )


def _raise_for_retry(counts) -> None:

    if counts.gateway_down:
        # Most calls failed even after the per-call retries: fail loudly (Airflow
        # still retries the task; the retry looks each call up before resending).
        raise dialer.GatewayDown(counts)
    # A few calls left after their retries are not a failed run: they stay open and
    # voice_notice_reconcile places them (counted in the task's return value).


def dial(campaign_date: dt.date, batch_key: str, results_key: str, dry_run: bool) -> dict[str, Any]:
    """Record a batch's synthesis results and place its calls (unless dry run)."""

    settings = get_settings()
    engine = _ledger_engine()
    results = parse_results(storage.read_bytes(results_key))
    with engine.begin() as conn:
        rows = ledger.rows_for_date(conn, campaign_date, batch_key=batch_key)
        synthesis = record_synthesis(conn, rows, results)
    if dry_run:
        with engine.begin() as conn:
            held = ledger.hold_for_dry_run(conn, campaign_date, batch_key)
        log.info("dry run: %d synthesized, %d held, no calls placed", synthesis.synthesized, held)
        return {"synthesized": synthesis.synthesized, "dialed": 0, "dry_run": True}
    with engine.connect() as conn:
        rows = ledger.rows_for_date(conn, campaign_date, batch_key=batch_key)
    # The batch's first attempts only: a cleared or retried dial places what its first
    # run could not, never a redial (those are voice_notice_reconcile's, at their time).
    first_attempts = [r for r in rows if r.attempt == 1]
    counts = dialer.dial_rows(
        engine, hooks.engine_for(settings.crm_conn_id), first_attempts, _dial_context()
    )
    counts.synthesized, counts.synthesis_failed = synthesis.synthesized, synthesis.synthesis_failed
    _raise_for_retry(counts)
    return counts.as_dict()


def settle(dates: list[dt.date]) -> dict[str, Any]:
    """One pass over the open calls of these dates: callbacks first, else the gateway."""

    settings = get_settings()
    counts = outcomes.settle_calls(
        _ledger_engine(),
        dates,
        gateway_from_connection(settings.gateway_conn_id),
        campaign_config(),
        _now(),
    )
    return counts.as_dict()


def write_back(dates: list[dt.date]) -> dict[str, Any]:
    """Write the settled notices and ended attempts of these dates back to the CRM."""

    with _ledger_engine().connect() as conn:
        plan = writeback.load_write_back(conn, dates)
    return writeback.write_back(hooks.engine_for(get_settings().crm_conn_id), plan)


def reconcile(campaign_date: dt.date) -> dict[str, Any]:
    """Settle what ended (redials get scheduled) and write the date back to the CRM."""
    settled = settle([campaign_date])
    return {"settle": settled, "write_back": write_back([campaign_date])}


def recent_dates(today: dt.date) -> list[dt.date]:
    """The campaign dates voice_notice_reconcile looks after."""
    days = get_settings().reconcile_lookback_days
    return [today - dt.timedelta(days=n) for n in range(days + 1)]


def redial_due(dates: list[dt.date]) -> dict[str, Any]:
    """Dial the rows of these dates whose redial (or calling window) has come."""

    engine = _ledger_engine()
    with engine.connect() as conn:
        rows = [
            row
            for day in dates
            for row in ledger.rows_for_date(
                conn, day, [ledger.LedgerState.SYNTHESIZED, ledger.LedgerState.DIALING]
            )
            # A dry run's rows wait for a real run of their date, never for a redial pass.
            if row.reason_code != Reason.DRY_RUN
        ]
    counts = dialer.dial_rows(
        engine, hooks.engine_for(get_settings().crm_conn_id), rows, _dial_context()
    )
    _raise_for_retry(counts)
    return counts.as_dict()


def report(campaign_date: dt.date) -> dict[str, Any]:
    """The date's report as JSON (machines) and HTML (people) beside it, rewritten each time.

    Built from the ledger database alone (ledger rows, call attempts, the synthesis results
    the dial step recorded): every run of the date, whatever S3 still holds, gives the same
    report. Reads only.
    """

    with _ledger_engine().connect() as conn:
        body = load_report(conn, campaign_date)
    key = storage.write_bytes(
        storage.report_key(campaign_date),
        json.dumps(body, ensure_ascii=False, indent=2).encode("utf-8"),
    )
    html_key = key.removesuffix(".json") + ".html"
    storage.s3_hook().get_conn().put_object(
        Bucket=get_settings().bucket,
        Key=html_key,
        Body=render(body).encode("utf-8"),
        ContentType="text/html; charset=utf-8",
    )
    log.info("report %s: s3://%s/%s", campaign_date, get_settings().bucket, html_key)
    return {
        "key": key,
        "html_key": html_key,
        "notices": body["notices"],
        "by_state": body["by_state"],
    }


def purge_audio(logical_date: dt.date) -> dict[str, Any]:
    """The retention task: audio older than the retention days before the logical date."""

    settings = get_settings()
    engine = _ledger_engine()
    result = retention.purge_audio(
        engine,
        storage.s3_hook().get_conn(),
        storage.ensure_bucket(),
        logical_date,
        settings.audio_retention_days,
    )
    return result.as_dict()
