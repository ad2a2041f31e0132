"""Settings read once, from the environment, with defaults that run the demo.

Secrets never live here: database, S3 and gateway credentials come from
Airflow Connections named by the ``*_CONN_ID`` settings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parents[2]


class SynthesisMode(StrEnum):
    """Where the ``synthesize`` task runs the worker CLI."""

    LOCAL = "local"  # a subprocess on the Airflow worker (the demo, espeak-ng)
    KUBERNETES = "kubernetes"  # a pod on the GPU node pool (CosyVoice3)


@dataclass(frozen=True)
class Settings:
    """Deployment settings of voice-notify.

    :param include_dir: SQL, templates, campaign config and lexicons
    :param bucket: the S3 bucket for batches, audio and reports
    """

    include_dir: Path
    campaigns_file: Path
    bucket: str
    s3_conn_id: str
    crm_conn_id: str
    ledger_conn_id: str
    gateway_conn_id: str
    synthesis_pool: str
    presign_expiry_s: int
    poll_interval_s: float
    call_timeout_s: float
    calls_per_second: float
    status_callback_url: str | None
    reconcile_lookback_days: int
    daily_schedule: str | None
    reconcile_schedule: str | None
    task_retries: int
    retry_delay_s: float
    # The longest any task may run before Airflow fails it (and retries it).
    task_timeout_s: float = 6 * 3600
    # Synthesis (added with the GPU pods): where the worker runs and with what.
    synthesis_mode: SynthesisMode = SynthesisMode.LOCAL
    synthesis_engine: str = "espeak"
    synthesis_fallback_engine: str = "espeak"
    synthesis_image: str = "voice-notify/synthesis:0.1.0"
    synthesis_namespace: str = "voice-notify"
    synthesis_model_dir: str = "/models/Fun-CosyVoice3-0.5B-2512"
    # How the synthesis worker keeps the 24 kHz master: flac, wav or none.
    keep_master: str = "flac"
    # Privacy (added with voice profiles): how long audio is kept, when the purge runs.
    audio_retention_days: int = 90
    retention_schedule: str | None = "30 3 * * *"
    # Batch sizing (added with plans of any size): the synthesis pool's slots, so a small
    # campaign still fills them, and the largest batch one synthesis task may take.
    synthesis_slots: int = 4
    max_batch_size: int = 2000
    # Processes deciding the plan's chunks beside the task's own (1: the task alone).
    plan_workers: int = 2

    def __post_init__(self) -> None:
        if not self.include_dir.is_dir():
            raise ValueError(
                f"VOICE_NOTIFY_INCLUDE_DIR={self.include_dir} is not a directory; "
                "point it at the project's include/ folder"
            )
        if not self.campaigns_file.is_file():
            raise ValueError(f"VOICE_NOTIFY_CAMPAIGNS_FILE={self.campaigns_file} does not exist")
        if self.presign_expiry_s < 3600:
            # A presigned URL must outlive the gateway's queue; an hour is the floor.
            raise ValueError("VOICE_NOTIFY_PRESIGN_EXPIRY_S must be at least 3600")
        if self.synthesis_engine not in ("espeak", "cosyvoice3"):
            raise ValueError("VOICE_NOTIFY_SYNTHESIS_ENGINE must be espeak or cosyvoice3")
        if self.synthesis_slots < 1:
            raise ValueError("VOICE_NOTIFY_SYNTHESIS_SLOTS must be at least 1")
        if self.max_batch_size < 1:
            raise ValueError("VOICE_NOTIFY_MAX_BATCH_SIZE must be at least 1")
        if self.plan_workers < 1:
            raise ValueError("VOICE_NOTIFY_PLAN_WORKERS must be at least 1")
        if self.audio_retention_days < 1:
            # Audio of today's calls is still being dialled and redialled.
            raise ValueError("VOICE_NOTIFY_AUDIO_RETENTION_DAYS must be at least 1")


def _schedule(cron: str) -> str | None:
    return None if cron.strip().lower() in ("", "none") else cron


@cache
def get_settings() -> Settings:
    """The settings of this process (read once; tests call ``get_settings.cache_clear()``)."""
    env = os.environ.get
    crm_conn_id = env("VOICE_NOTIFY_CRM_CONN_ID", "crm_db")
    include_dir = Path(env("VOICE_NOTIFY_INCLUDE_DIR", str(_REPO_ROOT / "include")))
    return Settings(
        include_dir=include_dir,
        campaigns_file=Path(
            env("VOICE_NOTIFY_CAMPAIGNS_FILE", str(include_dir / "campaigns.yaml"))
        ),
        bucket=env("VOICE_NOTIFY_BUCKET", "voice-notify"),
        s3_conn_id=env("VOICE_NOTIFY_S3_CONN_ID", "voice_notify_s3"),
        crm_conn_id=crm_conn_id,
        # The ledger may live in the CRM database or in a database of its own.
        ledger_conn_id=env("VOICE_NOTIFY_LEDGER_CONN_ID", crm_conn_id),
        gateway_conn_id=env("VOICE_NOTIFY_GATEWAY_CONN_ID", "voice_gateway"),
        synthesis_pool=env("VOICE_NOTIFY_SYNTHESIS_POOL", "cosyvoice_gpu"),
        presign_expiry_s=int(env("VOICE_NOTIFY_PRESIGN_EXPIRY_S", str(24 * 3600))),
        # Between settle passes of wait_for_calls, deferred in the triggerer; the demo and
        # the tests (a simulator's calls last a fraction of a second) set it lower.
        poll_interval_s=float(env("VOICE_NOTIFY_POLL_INTERVAL_S", "30")),
        call_timeout_s=float(env("VOICE_NOTIFY_CALL_TIMEOUT_S", "120")),
        calls_per_second=float(env("VOICE_NOTIFY_CALLS_PER_SECOND", "20")),
        # The public URL of the API server's callback endpoint, e.g.
        # https://airflow.example/voice-notify/callbacks/http; unset: poll the gateway.
        status_callback_url=env("VOICE_NOTIFY_STATUS_CALLBACK_URL") or None,
        # How many past campaign dates voice_notice_reconcile looks at.
        reconcile_lookback_days=int(env("VOICE_NOTIFY_RECONCILE_LOOKBACK_DAYS", "3")),
        # When the daily campaign runs (cron); "none" leaves it to triggers only.
        daily_schedule=_schedule(env("VOICE_NOTIFY_DAILY_SCHEDULE", "0 6 * * *")),
        reconcile_schedule=_schedule(env("VOICE_NOTIFY_RECONCILE_SCHEDULE", "15 * * * *")),
        # Airflow retries of every task; the demo and tests shorten the delay.
        task_retries=int(env("VOICE_NOTIFY_TASK_RETRIES", "2")),
        retry_delay_s=float(env("VOICE_NOTIFY_RETRY_DELAY_S", "120")),
        # A hung worker or engine must not hold a pool slot and the date forever.
        task_timeout_s=float(env("VOICE_NOTIFY_TASK_TIMEOUT_S", str(6 * 3600))),
        # local: the worker runs beside Airflow; kubernetes: one GPU pod per batch.
        synthesis_mode=SynthesisMode(env("VOICE_NOTIFY_SYNTHESIS_MODE", "local").lower()),
        # espeak-ng everywhere; cosyvoice3 only where the weights are mounted.
        synthesis_engine=env("VOICE_NOTIFY_SYNTHESIS_ENGINE", "espeak"),
        synthesis_fallback_engine=env("VOICE_NOTIFY_SYNTHESIS_FALLBACK_ENGINE", "espeak"),
        synthesis_image=env("VOICE_NOTIFY_SYNTHESIS_IMAGE", "voice-notify/synthesis:0.1.0"),
        synthesis_namespace=env("VOICE_NOTIFY_SYNTHESIS_NAMESPACE", "voice-notify"),
        synthesis_model_dir=env(
            "VOICE_NOTIFY_SYNTHESIS_MODEL_DIR", "/models/Fun-CosyVoice3-0.5B-2512"
        ),
        keep_master=env("VOICE_NOTIFY_KEEP_MASTER", "flac").strip().lower() or "flac",
        # Audio (telephone files, masters, segment cache) older than this many days
        # before the retention run's logical date is deleted; the ledger is kept.
        audio_retention_days=int(env("VOICE_NOTIFY_AUDIO_RETENTION_DAYS", "90")),
        retention_schedule=_schedule(env("VOICE_NOTIFY_RETENTION_SCHEDULE", "30 3 * * *")),
        # The slots of the synthesis pool (``airflow pools set cosyvoice_gpu 4``): a plan
        # makes at least this many batches when there is work enough for them.
        synthesis_slots=int(env("VOICE_NOTIFY_SYNTHESIS_SLOTS", "4")),
        # The largest batch the plan may make when a campaign is too big for batch_size
        # within Airflow's [core] max_map_length mapped tasks.
        max_batch_size=int(env("VOICE_NOTIFY_MAX_BATCH_SIZE", "2000")),
        # Text and eligibility are CPU work the task's process would do alone while it
        # waits on the database: worker processes decide chunks while it writes.
        plan_workers=int(env("VOICE_NOTIFY_PLAN_WORKERS", "2")),
    )
