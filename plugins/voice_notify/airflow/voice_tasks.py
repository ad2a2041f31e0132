"""The ``voice_profile_enroll`` DAG's tasks: read and stage a recording, check it, store it.

A rejected recording is permanent (``AirflowFailException``): retrying the same bytes
cannot pass; the rejection is recorded in ``voice_enrollments`` first.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from voice_notify.airflow import hooks
from voice_notify.db import migrate
from voice_notify.voices import registry as voice_profiles
from voice_notify.voices.checks import EMBEDDING_MODEL, RecordingRejected
from voice_notify.voices.denylist import load_denylist
from voice_notify.voices.enrollment import (
    EnrollmentRequest,
    reject,
    request_from_params,
    screen_speaker,
    validate,
)
from voice_notify.voices.store import store
from voice_notify.voices.synthetic import SyntheticVoice, render_synthetic, wav_bytes

log = logging.getLogger(__name__)


def read_source(recording: str, transcript: str, language: str) -> bytes:
    """The recording named by the DAG's ``recording`` param.

    ``s3://bucket/key``; ``include:<path>`` under the include folder; ``synthetic:<variant>``
    renders the transcript with espeak-ng (demo and trials only); else a key in the bucket.
    """
    from voice_notify.airflow import storage
    from voice_notify.settings import get_settings

    if recording.startswith("synthetic:"):
        audio, rate = render_synthetic(transcript, language, SyntheticVoice(recording[10:]))
        return wav_bytes(audio, rate)
    if recording.startswith("include:"):
        root = get_settings().include_dir.resolve()
        path = (root / recording[8:]).resolve()
        if root not in path.parents:
            raise RecordingRejected("recording_unreadable", "include: path leaves include/")
        return path.read_bytes()
    if recording.startswith("s3://"):
        bucket, _, key = recording[5:].partition("/")
        return storage.s3_hook().get_conn().get_object(Bucket=bucket, Key=key)["Body"].read()
    return storage.read_bytes(recording)


def _task_context() -> tuple[sa.Engine, Any, str]:
    from voice_notify.airflow import storage
    from voice_notify.settings import get_settings

    engine = hooks.engine_for(get_settings().ledger_conn_id)
    migrate.ensure_current(engine)
    return engine, storage.s3_hook().get_conn(), storage.ensure_bucket()


def _fail(engine: sa.Engine, request: EnrollmentRequest, sha: str, on: dt.date, exc) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    with engine.begin() as conn:
        reject(conn, request, sha, on, exc)
    # A rejected recording is permanent: retrying the same bytes cannot pass.
    raise AirflowFailException(f"recording rejected: {exc.reason_code}: {exc.detail}")


def staging_key(profile_id: str, sha256: str) -> str:
    return voice_profiles.profile_key(profile_id, f"enroll/{sha256}.wav")


def validate_task(params: Mapping[str, Any], on: dt.date) -> dict[str, Any]:
    """Read, stage (``voices/<id>/enroll/<sha256>.wav``) and check the recording."""
    engine, s3_client, bucket = _task_context()
    request = request_from_params(params)
    data = read_source(params["recording"], request.transcript, request.profile.language)
    sha = hashlib.sha256(data).hexdigest()
    key = staging_key(request.profile.profile_id, sha)
    voice_profiles.put_if_changed(s3_client, bucket, key, data, "audio/wav")
    try:
        with engine.connect() as conn:
            report = validate(conn, request, data, load_denylist())
    except RecordingRejected as exc:
        _fail(engine, request, sha, on, exc)
    return {"staged_key": key, "sha256": sha, "metrics": report.metrics}


def embed_task(params: Mapping[str, Any], staged: Mapping[str, Any], on: dt.date) -> dict:
    """Speaker embedding and screening; the embedding goes to S3 beside the staged file."""
    engine, s3_client, bucket = _task_context()
    request = request_from_params(params)
    data = s3_client.get_object(Bucket=bucket, Key=staged["staged_key"])["Body"].read()
    try:
        with engine.connect() as conn:
            embedding, metrics = screen_speaker(conn, request, data, load_denylist())
    except RecordingRejected as exc:
        _fail(engine, request, staged["sha256"], on, exc)
    key = staged["staged_key"].removesuffix(".wav") + ".embedding.json"
    body = json.dumps({"model": EMBEDDING_MODEL, "embedding": [float(x) for x in embedding]})
    voice_profiles.put_if_changed(s3_client, bucket, key, body.encode(), "application/json")
    return {**staged, "embedding_key": key, "metrics": {**staged["metrics"], **metrics}}


def store_task(params: Mapping[str, Any], embedded: Mapping[str, Any], on: dt.date) -> dict:
    """Record the profile, variant and consent; publish ``voices/<id>/``."""
    engine, s3_client, bucket = _task_context()
    request = request_from_params(params)
    data = s3_client.get_object(Bucket=bucket, Key=embedded["staged_key"])["Body"].read()
    raw = s3_client.get_object(Bucket=bucket, Key=embedded["embedding_key"])["Body"].read()
    embedding = json.loads(raw)["embedding"]
    with engine.begin() as conn:
        outcome = store(conn, s3_client, bucket, request, data, embedding, embedded["metrics"], on)
    return {
        "profile_id": outcome.profile_id,
        "emotion": outcome.emotion,
        "consent_id": outcome.consent_id,
        "sha256": outcome.sha256,
    }
