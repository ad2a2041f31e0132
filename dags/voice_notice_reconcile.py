"""voice_notice_reconcile: late call outcomes and due redials of recent campaign dates."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import dag, get_current_context, task

from voice_notify.airflow.defaults import task_defaults
from voice_notify.airflow.sensors import CallOutcomesSensor
from voice_notify.settings import get_settings

DOC = """
### Reconcile voice notices

**Owner:** voice-notify team. **Runs:** hourly (`VOICE_NOTIFY_RECONCILE_SCHEDULE`),
over the last `VOICE_NOTIFY_RECONCILE_LOOKBACK_DAYS` campaign dates.

1. `settle_late` records outcomes that arrived after the daily run stopped
   waiting (callbacks or polling) and schedules redials per notice type.
2. `redial` dials rows whose redial time or calling window has come, through
   the same compliance gate and exactly-once rules as the daily `dial`.
3. `wait_for_calls` (deferrable) waits for those calls; `write_back` writes
   every settled notice and ended attempt of the dates to the CRM and
   rewrites each date's report.

Safe to run at any time and any number of times: it works from the ledger.
"""


def _dates() -> list[dt.date]:
    from voice_notify.airflow import tasks as pipeline
    from voice_notify.airflow.defaults import run_day

    # The end of the hour it looks after; a manual trigger: the day it runs.
    return pipeline.recent_dates(run_day(get_current_context(), "data_interval_end"))


@dag(
    dag_id="voice_notice_reconcile",
    schedule=get_settings().reconcile_schedule,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    # Unpaused from the start: it settles what a clear or a slow network left open.
    is_paused_upon_creation=False,
    doc_md=DOC,
    tags=["voice-notify", "reconcile"],
    default_args=task_defaults(),
)
def voice_notice_reconcile():
    @task
    def settle_late() -> dict:
        from voice_notify.airflow import tasks as pipeline

        dates = _dates()
        return {"dates": [d.isoformat() for d in dates], **pipeline.settle(dates)}

    @task
    def redial(settled: dict) -> dict:
        from voice_notify.airflow import tasks as pipeline

        dates = [dt.date.fromisoformat(d) for d in settled["dates"]]
        return {"dates": settled["dates"], **pipeline.redial_due(dates)}

    wait_for_calls = CallOutcomesSensor(
        task_id="wait_for_calls",
        campaign_dates="{{ ti.xcom_pull(task_ids='settle_late')['dates'] | join(',') }}",
        max_wait_s=get_settings().call_timeout_s,
        poll_interval_s=get_settings().poll_interval_s,
        # A gateway outage fails redial; what did end still settles and reaches the CRM.
        trigger_rule="all_done",
    )

    @task(trigger_rule="all_done")
    def write_back(settled: dict) -> dict:
        from voice_notify.airflow import tasks as pipeline

        dates = [dt.date.fromisoformat(d) for d in settled["dates"]]
        settled = pipeline.settle(dates)
        written = pipeline.write_back(dates)
        reports = [pipeline.report(d)["key"] for d in dates]
        return {"settle": settled, "write_back": written, "reports": reports}

    settled = settle_late()
    redial(settled) >> wait_for_calls >> write_back(settled)


voice_notice_reconcile()
