"""voice_profile_enroll: check a consenting agent's recording and add it to the voice registry."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Param, dag, get_current_context, task

from voice_notify.airflow.defaults import run_day, task_defaults

DOC = """
### Enroll a voice profile

**Owner:** voice-notify team. **Runs:** on trigger only, once per recording (one emotion
variant of one profile). Needs the ledger Connection (`crm_db` or
`VOICE_NOTIFY_LEDGER_CONN_ID`) and `voice_notify_s3`.

1. `validate` reads the recording (`recording` param: `s3://bucket/key`, a key in the
   bucket, `include:<path>`, or `synthetic:<espeak variant>` for trials), stages it at
   `voices/<id>/enroll/<sha256>.wav` and checks it: 3–30 s, ≥ 16 kHz, no clipping,
   speech present, noise level, transcript, denylisted names (public figures,
   government bodies; `include/voices/denylist.yaml`), a consent record.
2. `embed` computes the speaker embedding (resemblyzer) and rejects a second speaker,
   a denylisted voice, or a warm/serious variant in another voice than the profile's.
3. `store` records the profile, the variant and the consent in the ledger database
   (`voice_profiles`, `voice_consents`) and publishes `voices/<id>/profile.json` and
   the prompt (`prompt.wav`, `prompt-warm.wav`, `prompt-serious.wav`).

A rejection fails the run without retries and is recorded with its reason code in
`voice_enrollments` (a denylist hit also marks the profile denied). **Rerunning** is
safe: every step is keyed on the recording's sha256. Enroll `normal` first; the consent
params are needed when the profile has no consent yet. Revoke a consent with
`voice_notify.voices.registry.revoke_consent`: the next plan stops using the voice.
"""


@dag(
    dag_id="voice_profile_enroll",
    schedule=None,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    # Unpaused: it only runs when triggered with a recording, and a paused DAG's
    # triggered runs would wait forever.
    is_paused_upon_creation=False,
    doc_md=DOC,
    tags=["voice-notify", "voice-profiles", "compliance"],
    default_args=task_defaults(),
    params={
        "profile_id": Param("", type="string", pattern="^[a-z0-9][a-z0-9_-]{0,63}$"),
        "speaker": Param("", type="string", minLength=1, description="the consenting agent"),
        "recording": Param("", type="string", minLength=1, description="where the WAV is"),
        "transcript": Param("", type="string", minLength=1, description="what is said in it"),
        "emotion": Param("normal", enum=["normal", "warm", "serious"]),
        "language": Param("cmn", enum=["cmn", "yue", "en"]),
        "locales": Param(["cmn"], type="array", description="cmn, yue, en, or cmn-<dialect>"),
        "notice_types": Param(
            ["repayment_reminder", "appointment_confirmation", "pension_arrival", "policy_renewal"],
            type="array",
        ),
        "consent_id": Param("", type="string", description="empty: use the recorded consent"),
        "consented_by": Param("", type="string"),
        "consent_granted_on": Param("", type="string", description="YYYY-MM-DD"),
        "consent_expires_on": Param("", type="string", description="YYYY-MM-DD or empty"),
        "consent_document_ref": Param("", type="string", description="signed document"),
    },
)
def voice_profile_enroll():
    def _on() -> dt.date:
        # A manual trigger may have no logical date; then the day it runs.
        return run_day(get_current_context())

    @task
    def validate(params=None) -> dict:
        from voice_notify.airflow import voice_tasks

        return voice_tasks.validate_task(params, _on())

    @task
    def embed(staged: dict, params=None) -> dict:
        from voice_notify.airflow import voice_tasks

        return voice_tasks.embed_task(params, staged, _on())

    @task
    def store(embedded: dict, params=None) -> dict:
        from voice_notify.airflow import voice_tasks

        return voice_tasks.store_task(params, embedded, _on())

    store(embed(validate()))


voice_profile_enroll()
