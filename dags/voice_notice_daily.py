"""voice_notice_daily: one campaign date of due notices, from the CRM to phone calls and back."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Param, dag, get_current_context, task

from voice_notify.airflow.sensors import CallOutcomesSensor
from voice_notify.settings import get_settings, task_defaults

DOC = """
### Daily voice notices

**Owner:** voice-notify team. **Runs:** daily at 06:00 UTC (`VOICE_NOTIFY_DAILY_SCHEDULE`), one run
per campaign date (the logical date), finished before calling hours.

1. `extract` snapshots the CRM's due notices (Connection `crm_db`, SQL in
   `include/sql/`) into S3 (Connection `voice_notify_s3`).
2. `plan` checks eligibility (opt-out, phone, variables, notice type), renders
   and normalizes the text, records every decision in the dispatch ledger and
   writes batch manifests.
3. `synthesize` runs once per batch in pool `cosyvoice_gpu`.
4. `dial` records a batch's synthesis results and places its calls through the
   `voice_gateway` Connection, re-checking opt-out, do-not-call, calling hours
   and caps.
5. `wait_for_calls` (deferrable) waits until the calls have ended, from the
   gateway's callbacks or by polling it.
6. `reconcile` settles outcomes, schedules redials (dialled later by
   `voice_notice_reconcile`) and writes back to the CRM; `report` stores the
   campaign report.

**Re-running** a task, one mapped batch, a whole date or a backfill is safe:
the ledger holds one row per notice and date, and a notice is dialled only by
the row holding its dial claim. **Params:** `campaign` (a name from
`include/campaigns.yaml`), `dry_run` (stop before dialing), `batch_size`.
"""


def _campaign_date() -> dt.date:
    # A plain date: the logical date is a pendulum object some DB drivers reject.
    logical = get_current_context()["logical_date"]
    return dt.date(logical.year, logical.month, logical.day)


@dag(
    dag_id="voice_notice_daily",
    schedule=get_settings().daily_schedule,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=DOC,
    tags=["voice-notify", "campaign"],
    default_args=task_defaults(),
    params={
        "campaign": Param("all", type="string", description="campaign from include/campaigns.yaml"),
        "dry_run": Param(False, type="boolean", description="plan and synthesize, place no calls"),
        "batch_size": Param(50, type="integer", minimum=1, maximum=2000),
    },
)
def voice_notice_daily():
    @task
    def extract(params=None) -> dict:
        from voice_notify.airflow import tasks as pipeline

        return pipeline.extract(_campaign_date(), params["campaign"])

    @task
    def plan(due: dict, params=None) -> list[str]:
        from voice_notify.airflow import tasks as pipeline

        return pipeline.plan(_campaign_date(), params["campaign"], due["key"], params["batch_size"])

    @task(pool="cosyvoice_gpu", map_index_template="{{ batch_label }}")
    def synthesize(batch_key: str) -> dict:
        from voice_notify.airflow import tasks as pipeline

        get_current_context()["batch_label"] = batch_key.rsplit("/", 1)[-1]
        return {"batch_key": batch_key, "results_key": pipeline.synthesize_locally(batch_key)}

    @task(map_index_template="{{ batch_label }}")
    def dial(synthesized: dict, params=None) -> dict:
        from voice_notify.airflow import tasks as pipeline

        get_current_context()["batch_label"] = synthesized["batch_key"].rsplit("/", 1)[-1]
        return pipeline.dial(
            _campaign_date(),
            synthesized["batch_key"],
            synthesized["results_key"],
            params["dry_run"],
        )

    wait_for_calls = CallOutcomesSensor(
        task_id="wait_for_calls",
        campaign_dates="{{ ds }}",
        max_wait_s=get_settings().call_timeout_s,
        poll_interval_s=get_settings().poll_interval_s,
        trigger_rule="none_failed",
    )

    @task(trigger_rule="none_failed")
    def reconcile() -> dict:
        from voice_notify.airflow import tasks as pipeline

        return pipeline.reconcile(_campaign_date())

    @task(trigger_rule="none_failed")
    def report() -> dict:
        from voice_notify.airflow import tasks as pipeline

        return pipeline.report(_campaign_date())

    batches = plan(extract())
    if get_settings().synthesis_mode == "kubernetes":
        # The same mapped task on the GPU node pool: one pod per batch (airflow.operators).
        from voice_notify.airflow.operators import SynthesisPodOperator

        synthesized = (
            SynthesisPodOperator.partial(
                task_id="synthesize", pool="cosyvoice_gpu", map_index_template="{{ batch_label }}"
            )
            .expand(batch_key=batches)
            .output
        )
    else:
        synthesized = synthesize.expand(batch_key=batches)
    dialed = dial.expand(synthesized=synthesized)
    dialed >> wait_for_calls >> reconcile() >> report()


voice_notice_daily()
