"""voice_notice_daily: one campaign date of due notices, from the CRM to phone calls and back."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Param, dag, get_current_context, task, task_group

from voice_notify.airflow.defaults import campaign_date_of, task_defaults
from voice_notify.airflow.sensors import CallOutcomesSensor
from voice_notify.settings import get_settings

DOC = """
### Daily voice notices

**Owner:** voice-notify team. **Runs:** daily at 06:00 UTC (`VOICE_NOTIFY_DAILY_SCHEDULE`), one run
per campaign date (the logical date; a run triggered without one uses the day it runs),
finished before calling hours. **Starts paused:** a new deployment calls nobody until an
operator unpauses it.

1. `extract` snapshots the CRM's due notices (Connection `crm_db`, SQL in
   `include/sql/`) into S3 (Connection `voice_notify_s3`).
2. `plan` checks eligibility (opt-out, phone, variables, notice type), renders
   and normalizes the text, records every decision in the dispatch ledger and
   writes batch manifests; it returns every batch of the date, the same list on every
   run (rows keep their batch; newly planned rows go into new batches).
3. `batch` runs once per batch: `batch.synthesize` (pool `cosyvoice_gpu`), then
   `batch.dial` (pool `voice_gateway`) for that batch alone, so a batch is dialled as
   soon as it is synthesized and a failed batch stops only itself. `dial` places the
   batch's first attempts through the `voice_gateway` Connection, re-checking opt-out,
   do-not-call, calling hours and caps; redials belong to `voice_notice_reconcile`.
4. `wait_for_calls` (deferrable) waits until the calls have ended, from the
   gateway's callbacks or by polling it.
5. `reconcile` settles outcomes, schedules redials and writes back to the CRM;
   `report` stores the campaign report.

**Re-running** a task, one mapped batch, a whole date or a backfill is safe: the
ledger holds one row per notice and date, a notice is dialled only by the row holding
its dial claim, and a cleared `dial` re-places only its batch's first attempts that
were never placed. Whatever a clear leaves open, `voice_notice_reconcile` settles.
**Backfills** run in date order with one active run: create them with
`max_active_runs` 1 (the backfill's own setting overrides the DAG's).
**Params:** `campaign` (a name from `include/campaigns.yaml`), `dry_run` (stop before
dialing), `batch_size` (the batch of a normal campaign: a small one gets smaller batches
to fill the `cosyvoice_gpu` slots, a large one larger batches so the mapped tasks stay
within half of `[core] max_map_length`; `plan` fails naming the setting when even
`VOICE_NOTIFY_MAX_BATCH_SIZE` is not enough).
"""


@dag(
    dag_id="voice_notice_daily",
    schedule=get_settings().daily_schedule,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=True,
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
        from voice_notify.airflow import tasks

        return tasks.extract(campaign_date_of(get_current_context()), params["campaign"])

    @task
    def plan(due: dict, params=None) -> list[str]:
        from voice_notify.airflow import tasks

        return tasks.plan(
            campaign_date_of(get_current_context()),
            params["campaign"],
            due["key"],
            params["batch_size"],
        )

    @task(pool=get_settings().synthesis_pool, map_index_template="{{ batch_label }}")
    def synthesize(batch_key: str) -> dict:
        from voice_notify.airflow import tasks

        get_current_context()["batch_label"] = batch_key.rsplit("/", 1)[-1]
        return {"batch_key": batch_key, "results_key": tasks.synthesize_locally(batch_key)}

    @task(pool="voice_gateway", map_index_template="{{ batch_label }}")
    def dial(synthesized: dict, params=None) -> dict:
        from voice_notify.airflow import tasks

        context = get_current_context()
        context["batch_label"] = synthesized["batch_key"].rsplit("/", 1)[-1]
        return tasks.dial(
            campaign_date_of(context),
            synthesized["batch_key"],
            synthesized["results_key"],
            params["dry_run"],
        )

    @task_group
    def batch(batch_key: str):
        if get_settings().synthesis_mode == "kubernetes":
            # The same step on the GPU node pool: one pod per batch (airflow.operators).
            from voice_notify.airflow.operators import SynthesisPodOperator

            synthesized = SynthesisPodOperator(
                task_id="synthesize",
                batch_key=batch_key,
                pool=get_settings().synthesis_pool,
                map_index_template="{{ batch_label }}",
            ).output
        else:
            synthesized = synthesize(batch_key)
        return dial(synthesized)

    wait_for_calls = CallOutcomesSensor(
        task_id="wait_for_calls",
        max_wait_s=get_settings().call_timeout_s,
        poll_interval_s=get_settings().poll_interval_s,
        # Calls of the batches that did go out still end and are settled.
        trigger_rule="all_done",
    )

    @task(trigger_rule="all_done")
    def reconcile() -> dict:
        from voice_notify.airflow import tasks

        return tasks.reconcile(campaign_date_of(get_current_context()))

    @task(trigger_rule="all_done")
    def report() -> dict:
        from voice_notify.airflow import tasks

        return tasks.report(campaign_date_of(get_current_context()))

    batches = batch.expand(batch_key=plan(extract()))
    batches >> wait_for_calls >> reconcile() >> report()


voice_notice_daily()
