"""voice_audio_retention: delete call audio past its retention period, keep the ledger."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import dag, get_current_context, task

from voice_notify.airflow.defaults import campaign_date_of, task_defaults
from voice_notify.settings import get_settings

DOC = """
### Audio retention

**Owner:** voice-notify team. **Runs:** daily at 03:30 UTC
(`VOICE_NOTIFY_RETENTION_SCHEDULE`). Needs the ledger Connection and `voice_notify_s3`.

`purge_audio` deletes the audio objects (`audio/`, `masters/`, `segments/`) last
written before midnight UTC of the logical date minus
`VOICE_NOTIFY_AUDIO_RETENTION_DAYS` (default 90), except audio of notices not settled
yet. Each deletion is recorded in `audio_deletions` first and confirmed after; the
date's list also goes to `retention/<date>/deleted.jsonl`. The dispatch ledger is not
touched: the audit view shows when each notice's audio was deleted.

**Rerunning** or backfilling a date is safe: the cutoff comes from the logical date,
never from the clock, and what is gone is not listed again.
"""


@dag(
    dag_id="voice_audio_retention",
    schedule=get_settings().retention_schedule,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    # Unpaused from the start: audio past its retention must go without anyone's step.
    is_paused_upon_creation=False,
    doc_md=DOC,
    tags=["voice-notify", "privacy", "retention"],
    default_args=task_defaults(),
)
def voice_audio_retention():
    @task
    def purge_audio() -> dict:
        from voice_notify.airflow import tasks

        return tasks.purge_audio(campaign_date_of(get_current_context()))

    purge_audio()


voice_audio_retention()
