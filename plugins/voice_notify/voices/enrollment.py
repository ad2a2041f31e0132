"""The enrollment flow: a recording and a consent become a voice profile's prompt.

``validate`` (recording checks, denylist by name) → ``screen_speaker`` (one speaker,
not a denylisted voice, the same speaker as the profile's other variants) →
``voices.store.store`` (registry rows and the published ``voices/<id>/`` objects).
A refusal is recorded with its reason code (``reject``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import sqlalchemy as sa

from voice_notify.voices import registry as voice_profiles
from voice_notify.voices.checks import (
    DENYLIST_SIMILARITY,
    EnrollmentThresholds,
    RecordingRejected,
    RecordingReport,
    check_recording,
    check_speaker,
    cosine,
)
from voice_notify.voices.denylist import Denylist, check_denylist, load_denylist
from voice_notify.voices.store import EnrollmentOutcome, EnrollmentRequest, store

log = logging.getLogger(__name__)

# -- the enrollment flow ------------------------------------------------------------------

#: A warm or serious variant must be the profile's own speaker: the same bar as the
#: denylist (same voice at pitch ±8 / speed ±10 % scored 0.901 or more, see above).
VARIANT_SAME_SPEAKER = DENYLIST_SIMILARITY


def validate(
    conn: sa.Connection,
    request: EnrollmentRequest,
    data: bytes,
    denylist: Denylist,
    thresholds: EnrollmentThresholds = EnrollmentThresholds(),
) -> RecordingReport:
    """Signal checks, the denylist by name, and the prerequisites in the registry.

    :raises RecordingRejected: the first failed check
    """
    report = check_recording(data, thresholds)
    if not request.transcript.strip():
        raise RecordingRejected("transcript_missing", "a prompt needs its transcript")
    check_denylist(
        denylist,
        speaker=request.profile.speaker,
        profile_id=request.profile.profile_id,
        transcript=request.transcript,
        embedding=None,
    )
    row = voice_profiles.profile_row(conn, request.profile.profile_id)
    if row is not None and row.status == voice_profiles.ProfileStatus.DENIED:
        raise RecordingRejected(voice_profiles.VOICE_PROFILE_DENIED, "the profile is denied")
    has_consent = request.consent is not None or bool(
        voice_profiles.consents_of(conn, request.profile.profile_id)
    )
    if not has_consent:
        raise RecordingRejected(voice_profiles.VOICE_CONSENT_MISSING, "no consent record")
    if request.emotion != "normal" and (row is None or not row.embedding):
        raise RecordingRejected("profile_not_enrolled", "enroll the normal variant first")
    return report


def screen_speaker(
    conn: sa.Connection,
    request: EnrollmentRequest,
    data: bytes,
    denylist: Denylist,
    thresholds: EnrollmentThresholds = EnrollmentThresholds(),
) -> tuple[np.ndarray, dict[str, Any]]:
    """Embedding, single speaker, denylisted voices, and (variants) the profile's speaker.

    :raises RecordingRejected: ``recording_multiple_speakers``, ``denylist_voice`` or
        ``variant_speaker_mismatch``
    """
    embedding, metrics = check_speaker(data, thresholds)
    metrics.update(
        check_denylist(
            denylist,
            speaker=request.profile.speaker,
            profile_id=request.profile.profile_id,
            transcript=request.transcript,
            embedding=embedding,
        )
    )
    if request.emotion != "normal":
        row = voice_profiles.profile_row(conn, request.profile.profile_id)
        alike = cosine(embedding, json.loads(row.embedding))
        metrics["profile_similarity"] = round(alike, 4)
        if alike < VARIANT_SAME_SPEAKER:
            raise RecordingRejected(
                "variant_speaker_mismatch",
                f"{alike:.3f} to the profile's voice (< {VARIANT_SAME_SPEAKER})",
                metrics,
            )
    return embedding, metrics


def reject(
    conn: sa.Connection,
    request: EnrollmentRequest,
    sha256: str,
    on: dt.date,
    rejection: RecordingRejected,
) -> EnrollmentOutcome:
    """Record a rejection; a denylisted voice or name also marks the profile denied."""
    if rejection.reason_code in ("denylist_name", "denylist_voice"):
        voice_profiles.deny_profile(conn, request.profile, on, rejection.reason_code)
    voice_profiles.record_enrollment(
        conn,
        profile_id=request.profile.profile_id,
        emotion=request.emotion,
        recording_sha256=sha256,
        on=on,
        reason_code=rejection.reason_code,
        detail=rejection.detail,
        metrics=rejection.metrics,
    )
    log.info(
        "voice profile %s (%s): rejected reason=%s %s",
        request.profile.profile_id,
        request.emotion,
        rejection.reason_code,
        rejection.detail,
    )
    return EnrollmentOutcome(
        request.profile.profile_id,
        request.emotion,
        sha256,
        False,
        rejection.reason_code,
        rejection.detail,
        metrics=rejection.metrics,
    )


def enroll(
    engine: sa.Engine,
    s3_client: Any,
    bucket: str,
    request: EnrollmentRequest,
    data: bytes,
    on: dt.date,
    *,
    denylist: Denylist | None = None,
    thresholds: EnrollmentThresholds = EnrollmentThresholds(),
    extra: Mapping[str, Any] | None = None,
) -> EnrollmentOutcome:
    """Validate → embed → store in one call (the DAG runs the three as tasks).

    A rejected recording is recorded with its reason and returned, not raised.
    """
    denylist = denylist or load_denylist()
    sha256 = hashlib.sha256(data).hexdigest()
    try:
        with engine.connect() as conn:
            report = validate(conn, request, data, denylist, thresholds)
            embedding, speaker_metrics = screen_speaker(conn, request, data, denylist, thresholds)
    except RecordingRejected as rejection:
        with engine.begin() as conn:
            return reject(conn, request, sha256, on, rejection)
    with engine.begin() as conn:
        return store(
            conn,
            s3_client,
            bucket,
            request,
            data,
            embedding,
            {**report.metrics, **speaker_metrics},
            on,
            extra=extra,
        )


def request_from_params(params: Mapping[str, Any]) -> EnrollmentRequest:
    """The DAG's params as an enrollment request (consent fields optional for variants)."""
    spec = voice_profiles.ProfileSpec(
        profile_id=params["profile_id"],
        speaker=params["speaker"],
        language=params.get("language") or "cmn",
        locales=tuple(params.get("locales") or ()),
        notice_types=tuple(params.get("notice_types") or ()),
    )
    consent = None
    if params.get("consent_id"):
        expires = params.get("consent_expires_on")
        consent = voice_profiles.ConsentRecord(
            consent_id=params["consent_id"],
            profile_id=spec.profile_id,
            consented_by=params["consented_by"],
            granted_on=dt.date.fromisoformat(params["consent_granted_on"]),
            expires_on=dt.date.fromisoformat(expires) if expires else None,
            notice_types=tuple(params.get("consent_notice_types") or spec.notice_types),
            locales=tuple(params.get("consent_locales") or spec.locales),
            document_ref=params["consent_document_ref"],
        )
    return EnrollmentRequest(spec, params.get("emotion") or "normal", params["transcript"], consent)
