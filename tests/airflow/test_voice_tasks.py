"""The voice_profile_enroll DAG's tasks, through Airflow Connections to SQLite and S3."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from airflow.sdk.exceptions import AirflowFailException

from tests.voices.conftest import ALL_TYPES, DAY
from voice_notify.airflow import voice_tasks
from voice_notify.db import schema
from voice_notify.voices import checks
from voice_notify.voices import registry as vp

PROMPT = "您好，我是您的客户经理，很高兴为您服务，有任何问题都可以随时联系我。"


@pytest.fixture
def connections(task_connections):
    return task_connections


def _params(**changes) -> dict:
    return {
        "profile_id": "agent-t",
        "speaker": "周婷",
        "recording": "synthetic:f5",
        "transcript": PROMPT,
        "emotion": "normal",
        "language": "cmn",
        "locales": ["cmn"],
        "notice_types": list(ALL_TYPES),
        "consent_id": "consent-t-1",
        "consented_by": "周婷",
        "consent_granted_on": "2026-01-01",
        "consent_expires_on": "",
        "consent_document_ref": "dms://consents/t-1",
        **changes,
    }


def test_validate_embed_store_enrolls_and_reruns_safely(connections, s3_bucket) -> None:
    import boto3

    params = _params()
    staged = voice_tasks.validate_task(params, DAY)
    assert staged["staged_key"] == f"voices/agent-t/enroll/{staged['sha256']}.wav"
    assert voice_tasks.validate_task(params, DAY) == staged  # a retried task
    embedded = voice_tasks.embed_task(params, staged, DAY)
    assert embedded["metrics"]["halves_similarity"] >= checks.SINGLE_SPEAKER_MIN_SIMILARITY
    stored = voice_tasks.store_task(params, embedded, DAY)
    assert stored == voice_tasks.store_task(params, embedded, DAY)
    assert stored["consent_id"] == "consent-t-1"
    with connections.connect() as conn:
        assert vp.consent_for(conn, "agent-t", "pension_arrival", "cmn", DAY).allowed
    document = boto3.client("s3").get_object(Bucket=s3_bucket, Key="voices/agent-t/profile.json")
    assert json.loads(document["Body"].read())["consent_id"] == "consent-t-1"


def test_a_rejection_fails_the_run_and_is_recorded(connections) -> None:
    params = _params(profile_id="tax-line", speaker="国家税务总局 热线")
    with pytest.raises(AirflowFailException, match="denylist_name"):
        voice_tasks.validate_task(params, DAY)
    with connections.connect() as conn:
        decided = conn.execute(
            sa.select(schema.voice_enrollments.c.outcome, schema.voice_enrollments.c.reason_code)
        ).all()
        assert decided == [("rejected", "denylist_name")]
        refusal = vp.consent_for(conn, "tax-line", "repayment_reminder", "cmn", DAY)
    assert refusal.reason_code == "voice_profile_denied"
