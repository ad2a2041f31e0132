"""One campaign date run through the DAG's task functions in this process.

The same functions ``voice_notice_daily`` and ``voice_notice_reconcile`` call
(``voice_notify.airflow.tasks``), with real components: a demo CRM in SQLite, moto's S3
server, the synthesis worker with espeak-ng (a subprocess, as in the DAG's local mode)
and the gateway simulator. Without ``airflow dags test``'s start-up per run, a date can
be run twice in a test in well under a minute.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from voice_notify_dev import demo_crm, localrun

REPO = Path(__file__).resolve().parents[2]


@dataclass
class CampaignRun:
    """Where a campaign's data lives; ``environment()`` points the task functions at it."""

    state_dir: Path
    crm_url: str
    s3: localrun.S3Endpoint
    gateway_url: str
    bucket: str
    campaign_date: dt.date
    env: dict[str, str] = field(default_factory=dict)

    def connections(self, bucket: str | None = None) -> dict[str, str]:
        return {
            "AIRFLOW_CONN_CRM_DB": localrun.crm_connection_json(self.crm_url),
            "AIRFLOW_CONN_VOICE_NOTIFY_S3": self.s3.connection_json(),
            "AIRFLOW_CONN_VOICE_GATEWAY": localrun.gateway_connection_json(self.gateway_url, 2.0),
            "VOICE_NOTIFY_BUCKET": bucket or self.bucket,
            "VOICE_NOTIFY_INCLUDE_DIR": str(REPO / "include"),
            "VOICE_NOTIFY_CAMPAIGNS_FILE": str(REPO / "include" / "demo" / "campaigns.yaml"),
            "VOICE_NOTIFY_LEDGER_CONN_ID": "crm_db",
            "VOICE_NOTIFY_POLL_INTERVAL_S": "0.2",
        }

    @contextlib.contextmanager
    def environment(self, bucket: str | None = None) -> Iterator[None]:
        """The task functions' settings and Connections for this campaign (restored after)."""
        from voice_notify.airflow import hooks, storage
        from voice_notify.settings import get_settings

        wanted = self.connections(bucket)
        saved = {name: os.environ.get(name) for name in wanted}
        os.environ.update(wanted)
        get_settings.cache_clear()
        storage.s3_hook.cache_clear()
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            get_settings.cache_clear()
            storage.s3_hook.cache_clear()
            hooks.dispose_engines()

    def engine(self) -> sa.Engine:
        return sa.create_engine(self.crm_url)

    def s3_client(self):
        return self.s3.client()


def prepare(state_dir: Path, s3: localrun.S3Endpoint, gateway_url: str, day: dt.date):
    """A seeded demo CRM, the demo voices enrolled, a fresh bucket."""
    crm_url = f"sqlite:///{state_dir / 'crm.sqlite'}"
    engine = sa.create_engine(crm_url)
    demo_crm.seed(engine, demo_crm.SeedSpec(anchor_date=day, customers=60))
    engine.dispose()
    bucket = f"vn-run-{uuid.uuid4().hex[:10]}"
    localrun.enroll_demo_voices(crm_url, s3, bucket, day)
    return CampaignRun(state_dir, crm_url, s3, gateway_url, bucket, day)


def publish_voices(run: CampaignRun, bucket: str) -> None:
    """The demo voices in another bucket (a fresh S3, as a second ``make demo`` has)."""
    localrun.enroll_demo_voices(run.crm_url, run.s3, bucket, run.campaign_date)


def run_date(run: CampaignRun, *, batch_size: int = 200, settle_s: float = 60.0) -> dict:
    """extract → plan → synthesize → dial per batch → settle and redial until every call
    ended → report: what the two DAGs do for a date. Returns the stored report JSON."""
    from voice_notify import ledger
    from voice_notify.airflow import storage, tasks

    day = run.campaign_date
    due = tasks.extract(day, "all")
    for batch_key in tasks.plan(day, "all", due["key"], batch_size):
        results_key = tasks.synthesize_locally(batch_key)
        tasks.dial(day, batch_key, results_key, dry_run=False)
    deadline = time.monotonic() + settle_s
    while True:
        tasks.reconcile(day)
        tasks.redial_due([day])
        with tasks._ledger_engine().connect() as conn:
            rows = ledger.rows_for_date(conn, day)
        if all(ledger.LedgerState(r.state).terminal for r in rows):
            break
        if time.monotonic() > deadline:
            raise TimeoutError("calls did not end in time")
        time.sleep(0.5)
    tasks.reconcile(day)
    report = tasks.report(day)
    return json.loads(storage.read_bytes(report["key"]))
