"""Where an enrolled voice goes: the registry rows and the objects under ``voices/<id>/``."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from voice_notify.voices import registry as voice_profiles
from voice_notify.voices.checks import EMBEDDING_MODEL

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnrollmentRequest:
    """One recording offered as one emotion variant of a profile.

    :param consent: required when the profile has no consent yet
    """

    profile: voice_profiles.ProfileSpec
    emotion: str
    transcript: str
    consent: voice_profiles.ConsentRecord | None = None

    def __post_init__(self) -> None:
        if self.emotion not in voice_profiles.EMOTIONS:
            raise ValueError(f"emotion must be one of {voice_profiles.EMOTIONS}")
        if self.consent is not None and self.consent.profile_id != self.profile.profile_id:
            raise ValueError("the consent belongs to another profile")


@dataclass(frozen=True)
class EnrollmentOutcome:
    profile_id: str
    emotion: str
    sha256: str
    enrolled: bool
    reason_code: str | None = None
    detail: str = ""
    consent_id: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


def store(
    conn: sa.Connection,
    s3_client: Any,
    bucket: str,
    request: EnrollmentRequest,
    data: bytes,
    embedding: Sequence[float],
    metrics: Mapping[str, Any],
    on: dt.date,
    *,
    extra: Mapping[str, Any] | None = None,
) -> EnrollmentOutcome:
    """Record the profile, variant and consent, and publish the profile's S3 objects.

    Safe to run twice: the rows are upserts or insert-if-absent, the objects are
    rewritten only when they differ.
    """
    spec = request.profile
    sha256 = hashlib.sha256(data).hexdigest()
    voice_profiles.upsert_profile(conn, spec, on)
    if request.consent is not None:
        voice_profiles.record_consent(conn, request.consent)
    key = voice_profiles.profile_key(spec.profile_id, voice_profiles.prompt_file(request.emotion))
    voice_profiles.put_if_changed(s3_client, bucket, key, data, "audio/wav")
    variant = {
        "prompt_key": key,
        "prompt_text": request.transcript,
        "sha256": sha256,
        "duration_s": metrics.get("duration_s"),
    }
    normal = request.emotion == "normal"
    voice_profiles.set_variant(
        conn,
        spec.profile_id,
        request.emotion,
        variant,
        embedding=embedding if normal else None,
        embedding_model=EMBEDDING_MODEL if normal else None,
    )
    voice_profiles.record_enrollment(
        conn,
        profile_id=spec.profile_id,
        emotion=request.emotion,
        recording_sha256=sha256,
        on=on,
        reason_code=None,
        metrics=metrics,
    )
    consent_id = publish_profile_document(conn, s3_client, bucket, spec, extra=extra)
    log.info(
        "voice profile %s (%s): enrolled, consent %s", spec.profile_id, request.emotion, consent_id
    )
    return EnrollmentOutcome(
        spec.profile_id, request.emotion, sha256, True, consent_id=consent_id, metrics=dict(metrics)
    )


def publish_profile_document(
    conn: sa.Connection,
    s3_client: Any,
    bucket: str,
    spec: voice_profiles.ProfileSpec,
    *,
    extra: Mapping[str, Any] | None = None,
) -> str | None:
    """Write ``voices/<id>/profile.json`` from the registry; returns its consent id.

    The consent id is the latest granted one not revoked. A profile left without one
    (every consent revoked, or the profile retired) is republished without
    ``consent_id``, so the synthesis worker refuses it too: the registry decides at
    plan and dial time, the worker is the last line. Nothing is written before the
    normal variant exists.
    """
    row = voice_profiles.profile_row(conn, spec.profile_id)
    variants = json.loads(row.variants or "{}") if row is not None else {}
    if "normal" not in variants:
        return None
    usable = [c for c in voice_profiles.consents_of(conn, spec.profile_id) if c.revoked_at is None]
    active = row.status == voice_profiles.ProfileStatus.ACTIVE
    consent_id = usable[0].consent_id if usable and active else None
    document = voice_profiles.profile_document(
        spec, consent_id, variants, embedding_model=row.embedding_model, extra=extra
    )
    body = json.dumps(document, ensure_ascii=False, indent=2, sort_keys=True).encode("utf-8")
    key = voice_profiles.profile_key(spec.profile_id, "profile.json")
    voice_profiles.put_if_changed(s3_client, bucket, key, body, "application/json")
    return consent_id


def republish_profile(conn: sa.Connection, s3_client: Any, bucket: str, profile_id: str) -> bool:
    """Rewrite a profile's ``profile.json`` after a revocation or a status change.

    Call it after :func:`voice_notify.voices.registry.revoke_consent`; returns whether the
    published profile still carries a consent. Other fields of the published document
    (e.g. the demo's ``espeak_variant``) are kept.
    """
    row = voice_profiles.profile_row(conn, profile_id)
    if row is None:
        return False
    key = voice_profiles.profile_key(profile_id, "profile.json")
    try:
        current = json.loads(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())
    except s3_client.exceptions.NoSuchKey:
        current = {}
    spec = voice_profiles.ProfileSpec(
        profile_id,
        row.speaker,
        row.language,
        tuple(json.loads(row.locales)),
        tuple(json.loads(row.notice_types)),
    )
    known = {"prompt_text", "lang", "speaker", "locales", "notice_types", "variants"}
    extra = {k: v for k, v in current.items() if k not in known | {"embedding_model"}}
    return publish_profile_document(conn, s3_client, bucket, spec, extra=extra) is not None
