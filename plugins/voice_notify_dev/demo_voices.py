"""The demo's four agents, enrolled with consent records from ``include/voices/*/profile.json``;
their recordings are rendered with espeak-ng (deterministic bytes every run).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from voice_notify.db import migrate
from voice_notify.voices import registry as voice_profiles
from voice_notify.voices.denylist import _voices_dir, load_denylist
from voice_notify.voices.enrollment import EnrollmentRequest, enroll
from voice_notify.voices.store import publish_profile_document
from voice_notify.voices.synthetic import SyntheticVoice, render_synthetic, wav_bytes

log = logging.getLogger(__name__)

# -- the demo agents ------------------------------------------------------------------------


def _demo_requests(
    profile_id: str, config: Mapping[str, Any]
) -> list[tuple[EnrollmentRequest, SyntheticVoice]]:
    spec = voice_profiles.ProfileSpec(
        profile_id=profile_id,
        speaker=config["speaker"],
        language=config.get("lang", "cmn"),
        locales=tuple(config["locales"]),
        notice_types=tuple(config["notice_types"]),
    )
    raw = config["consent"]
    consent = voice_profiles.ConsentRecord(
        consent_id=config["consent_id"],
        profile_id=profile_id,
        consented_by=raw["consented_by"],
        granted_on=dt.date.fromisoformat(raw["granted_on"]),
        expires_on=dt.date.fromisoformat(raw["expires_on"]) if raw.get("expires_on") else None,
        notice_types=tuple(raw["notice_types"]),
        locales=tuple(raw["locales"]),
        document_ref=raw["document_ref"],
    )
    variant = config["espeak_variant"]
    requests = [
        (
            EnrollmentRequest(spec, "normal", config["prompt_text"], consent),
            SyntheticVoice(variant),
        )
    ]
    for emotion in ("warm", "serious"):
        v = config["variants"][emotion]
        requests.append(
            (
                EnrollmentRequest(spec, emotion, v["prompt_text"]),
                SyntheticVoice(variant, int(v["pitch"]), float(v["speed"])),
            )
        )
    return requests


def enroll_demo_profiles(
    ledger_engine: sa.Engine,
    s3_client: Any,
    bucket: str,
    on_date: dt.date,
    include_dir: Path | None = None,
) -> list[str]:
    """Enroll the four demo agents (``include/voices/<id>/profile.json``) with consent.

    Their recordings are rendered with espeak-ng (deterministic: same bytes every run),
    so nothing binary is committed. Idempotent: a variant whose recording is already
    enrolled skips the checks and the embedding; the S3 objects are (re)published when
    missing or different (the demo's S3 starts empty each run). Returns the ids of the
    profiles enrolled (all four, unless a check rejected one: that is logged and
    recorded in ``voice_enrollments``).

    :param s3_client: a boto3 S3 client (in Airflow: ``S3Hook(...).get_conn()``)
    """
    migrate.upgrade(ledger_engine)
    denylist = load_denylist(include_dir)
    folder = _voices_dir(include_dir)
    enrolled = []
    for path in sorted(folder.glob("*/profile.json")):
        profile_id = path.parent.name
        config = json.loads(path.read_text(encoding="utf-8"))
        extra = {"espeak_variant": config["espeak_variant"]}
        ok = True
        for request, voice in _demo_requests(profile_id, config):
            audio, rate = render_synthetic(request.transcript, request.profile.language, voice)
            data = wav_bytes(audio, rate)
            if _already_enrolled(ledger_engine, request, data):
                continue
            outcome = enroll(
                ledger_engine,
                s3_client,
                bucket,
                request,
                data,
                on_date,
                denylist=denylist,
                extra=extra,
            )
            ok = ok and outcome.enrolled
            if not ok:
                break
        if ok:
            _republish(ledger_engine, s3_client, bucket, profile_id, config, include_dir, extra)
            enrolled.append(profile_id)
    return enrolled


def _already_enrolled(engine: sa.Engine, request: EnrollmentRequest, data: bytes) -> bool:
    with engine.connect() as conn:
        row = voice_profiles.profile_row(conn, request.profile.profile_id)
    if row is None or row.status != voice_profiles.ProfileStatus.ACTIVE:
        return False
    variant = json.loads(row.variants or "{}").get(request.emotion) or {}
    return variant.get("sha256") == hashlib.sha256(data).hexdigest()


def _republish(
    engine: sa.Engine,
    s3_client: Any,
    bucket: str,
    profile_id: str,
    config: Mapping[str, Any],
    include_dir: Path | None,
    extra: Mapping[str, Any],
) -> None:
    """Put back every object of an enrolled demo profile (rendered again, same bytes)."""
    for request, voice in _demo_requests(profile_id, config):
        audio, rate = render_synthetic(request.transcript, request.profile.language, voice)
        key = voice_profiles.profile_key(profile_id, voice_profiles.prompt_file(request.emotion))
        voice_profiles.put_if_changed(s3_client, bucket, key, wav_bytes(audio, rate), "audio/wav")
    with engine.connect() as conn:
        publish_profile_document(
            conn, s3_client, bucket, _demo_requests(profile_id, config)[0][0].profile, extra=extra
        )
