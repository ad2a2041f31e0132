"""The voice profile registry: whose voice may speak which notice, and on what consent.

A profile is a consenting agent's voice: the speaker, prompt recordings with their
transcripts in three emotion variants (normal, warm, serious), the language and
dialects it may speak, the notice types it may speak, and one or more consent
records (who consented, when, to what scope, on which document, until when or until
revoked). It lives in two places:

- the ledger database: tables ``voice_profiles``, ``voice_consents`` and
  ``voice_enrollments`` (every enrollment decision, accepted or rejected), on a
  in ``voice_notify.db.schema``;
- S3, in the layout ``synthesis.voices`` reads (``voices/<id>/profile.json`` with
  ``consent_id``, ``prompt_text``, ``lang``; ``voices/<id>/prompt.wav``), plus
  ``prompt-warm.wav``, ``prompt-serious.wav`` and the extra ``profile.json`` fields
  ``speaker``, ``locales``, ``notice_types``, ``variants``, ``embedding_model``.

**Locales** are the ledger's (``cmn``, ``yue``, ``en``), optionally with a dialect
from ``include/cosyvoice3/instructs.yaml`` after a dash (``cmn-sichuan``). A profile
and its consent each list the locales they cover, exactly: ``cmn`` does not cover
``cmn-sichuan``.

**Consent decisions** (:func:`consent_for`, :func:`choose_profile`) carry one of
these reason codes when they refuse:

| reason code | meaning |
| --- | --- |
| ``voice_profile_unknown`` | no profile with that id (or no profiles at all) |
| ``voice_profile_denied`` | enrollment put the voice on the denylist |
| ``voice_profile_inactive`` | the profile was retired |
| ``voice_consent_missing`` | no consent granted on or before the date |
| ``voice_consent_expired`` | the current consent expired on or before the date |
| ``voice_consent_revoked`` | the current consent was revoked |
| ``voice_consent_scope`` | notice type or locale not covered by profile and consent |

A revocation takes effect on the next plan, whatever campaign date it plans: a
revoked consent is never valid again, also not for a backfill of earlier dates.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from voice_notify.db.schema import voice_consents, voice_enrollments, voice_profiles
from voice_notify.ledger import insert_ignoring_duplicates

log = logging.getLogger(__name__)

EMOTIONS = ("normal", "warm", "serious")
PROFILE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

VOICE_PROFILE_UNKNOWN = "voice_profile_unknown"
VOICE_PROFILE_DENIED = "voice_profile_denied"
VOICE_PROFILE_INACTIVE = "voice_profile_inactive"
VOICE_CONSENT_MISSING = "voice_consent_missing"
VOICE_CONSENT_EXPIRED = "voice_consent_expired"
VOICE_CONSENT_REVOKED = "voice_consent_revoked"
VOICE_CONSENT_SCOPE = "voice_consent_scope"
REASON_CODES = (
    VOICE_PROFILE_UNKNOWN,
    VOICE_PROFILE_DENIED,
    VOICE_PROFILE_INACTIVE,
    VOICE_CONSENT_MISSING,
    VOICE_CONSENT_EXPIRED,
    VOICE_CONSENT_REVOKED,
    VOICE_CONSENT_SCOPE,
)
# When no profile qualifies, the refusal that says most about how close one came.
_REFUSAL_ORDER = (
    VOICE_CONSENT_SCOPE,
    VOICE_CONSENT_EXPIRED,
    VOICE_CONSENT_REVOKED,
    VOICE_CONSENT_MISSING,
    VOICE_PROFILE_INACTIVE,
    VOICE_PROFILE_DENIED,
    VOICE_PROFILE_UNKNOWN,
)


class ProfileStatus(enum.StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    DENIED = "denied"


def _utcnow() -> dt.datetime:
    # Audit timestamps only; consent decisions use the date they are asked about.
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _json_list(values: Iterable[str]) -> str:
    return json.dumps(sorted(set(values)), ensure_ascii=False)


# -- records ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileSpec:
    """What a profile may speak.

    :param language: the prompt recordings' language (``cmn``, ``yue``, ``en``)
    :param locales: locales the voice may speak, ``cmn`` or ``cmn-<dialect>``
    """

    profile_id: str
    speaker: str
    language: str
    locales: tuple[str, ...]
    notice_types: tuple[str, ...]

    def __post_init__(self) -> None:
        if not PROFILE_ID.match(self.profile_id):
            raise ValueError(f"profile id {self.profile_id!r} must match {PROFILE_ID.pattern}")
        if not self.speaker.strip():
            raise ValueError("a profile needs its speaker's name")
        if not self.locales or not self.notice_types:
            raise ValueError("a profile lists the locales and notice types it may speak")


@dataclass(frozen=True)
class ConsentRecord:
    """A speaker's consent to use their voice, as signed.

    :param granted_on: first campaign date the consent covers
    :param expires_on: first campaign date it no longer covers (None: until revoked)
    :param document_ref: where the signed document is kept (DMS id, S3 key, ...)
    """

    consent_id: str
    profile_id: str
    consented_by: str
    granted_on: dt.date
    notice_types: tuple[str, ...]
    locales: tuple[str, ...]
    document_ref: str
    expires_on: dt.date | None = None

    def __post_init__(self) -> None:
        if not self.consent_id or len(self.consent_id) > 64:
            raise ValueError("a consent id is 1-64 characters")
        if not self.consented_by.strip() or not self.document_ref.strip():
            raise ValueError("a consent names who consented and its document")
        if not self.notice_types or not self.locales:
            raise ValueError("a consent's scope lists notice types and locales")
        if self.expires_on is not None and self.expires_on <= self.granted_on:
            raise ValueError("a consent expires after it is granted")


def upsert_profile(
    conn: sa.Connection,
    spec: ProfileSpec,
    on: dt.date,
    status: ProfileStatus = ProfileStatus.ACTIVE,
) -> None:
    """Insert a profile, or update what it may speak; a denied profile stays denied."""
    now = _utcnow()
    conn.execute(
        insert_ignoring_duplicates(conn, voice_profiles, ("profile_id",)),
        {
            "profile_id": spec.profile_id,
            "speaker": spec.speaker,
            "language": spec.language,
            "locales": _json_list(spec.locales),
            "notice_types": _json_list(spec.notice_types),
            "status": status.value,
            "variants": "{}",
            "enrolled_on": on,
            "created_at": now,
            "updated_at": now,
        },
    )
    conn.execute(
        voice_profiles.update()
        .where(voice_profiles.c.profile_id == spec.profile_id)
        .values(
            speaker=spec.speaker,
            language=spec.language,
            locales=_json_list(spec.locales),
            notice_types=_json_list(spec.notice_types),
            updated_at=now,
        )
    )


def deny_profile(conn: sa.Connection, spec: ProfileSpec, on: dt.date, reason_code: str) -> None:
    """Mark a profile denied (denylisted voice or name); no consent makes it usable again."""
    upsert_profile(conn, spec, on, ProfileStatus.DENIED)
    conn.execute(
        voice_profiles.update()
        .where(voice_profiles.c.profile_id == spec.profile_id)
        .values(status=ProfileStatus.DENIED.value, status_reason=reason_code, updated_at=_utcnow())
    )


def set_status(conn: sa.Connection, profile_id: str, status: ProfileStatus, reason: str) -> bool:
    """Retire (inactive) or re-activate a profile; a denied profile cannot be re-activated."""
    stmt = voice_profiles.update().where(voice_profiles.c.profile_id == profile_id)
    if status is not ProfileStatus.DENIED:
        stmt = stmt.where(voice_profiles.c.status != ProfileStatus.DENIED.value)
    stmt = stmt.values(status=status.value, status_reason=reason[:64], updated_at=_utcnow())
    return conn.execute(stmt).rowcount == 1


def set_variant(
    conn: sa.Connection,
    profile_id: str,
    emotion: str,
    variant: Mapping[str, Any],
    embedding: Sequence[float] | None = None,
    embedding_model: str | None = None,
) -> None:
    """Record one emotion variant's prompt (and, for ``normal``, the profile's embedding)."""
    if emotion not in EMOTIONS:
        raise ValueError(f"emotion must be one of {EMOTIONS}, not {emotion!r}")
    current = conn.execute(
        sa.select(voice_profiles.c.variants).where(voice_profiles.c.profile_id == profile_id)
    ).scalar_one()
    variants = json.loads(current or "{}")
    variants[emotion] = dict(variant)
    values: dict[str, Any] = {
        "variants": json.dumps(variants, ensure_ascii=False, sort_keys=True),
        "updated_at": _utcnow(),
    }
    if embedding is not None:
        values["embedding"] = json.dumps([round(float(x), 6) for x in embedding])
        values["embedding_model"] = embedding_model
    conn.execute(
        voice_profiles.update().where(voice_profiles.c.profile_id == profile_id).values(**values)
    )


def record_consent(conn: sa.Connection, consent: ConsentRecord) -> bool:
    """Store a consent record if its id is new; True if this call stored it.

    A consent is never edited: a changed scope or a renewal is a new consent id.
    """
    result = conn.execute(
        insert_ignoring_duplicates(conn, voice_consents, ("consent_id",)),
        {
            "consent_id": consent.consent_id,
            "profile_id": consent.profile_id,
            "consented_by": consent.consented_by,
            "granted_on": consent.granted_on,
            "expires_on": consent.expires_on,
            "notice_types": _json_list(consent.notice_types),
            "locales": _json_list(consent.locales),
            "document_ref": consent.document_ref,
            "recorded_at": _utcnow(),
        },
    )
    stored = result.rowcount == 1
    if stored:
        log.info("consent %s recorded for voice profile %s", consent.consent_id, consent.profile_id)
    return stored


def revoke_consent(conn: sa.Connection, consent_id: str, when: dt.datetime, reason: str) -> bool:
    """Revoke a consent; True if this call revoked it (False: unknown or already revoked).

    Effective on the next plan: :func:`consent_for` refuses a revoked consent for any
    date. ``when`` is recorded for the audit (naive UTC, or aware and converted).
    """
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC).replace(tzinfo=None)
    stmt = (
        voice_consents.update()
        .where(voice_consents.c.consent_id == consent_id, voice_consents.c.revoked_at.is_(None))
        .values(revoked_at=when, revoked_reason=(reason or "unspecified")[:255])
    )
    revoked = conn.execute(stmt).rowcount == 1
    log.info("consent %s revoked: %s", consent_id, "yes" if revoked else "no change")
    return revoked


def record_enrollment(
    conn: sa.Connection,
    *,
    profile_id: str,
    emotion: str,
    recording_sha256: str,
    on: dt.date,
    reason_code: str | None,
    detail: str = "",
    metrics: Mapping[str, Any] | None = None,
) -> None:
    """Record one enrollment decision (insert-if-absent: a rerun keeps the first)."""
    conn.execute(
        insert_ignoring_duplicates(
            conn, voice_enrollments, ("profile_id", "emotion", "recording_sha256")
        ),
        {
            "profile_id": profile_id,
            "emotion": emotion,
            "recording_sha256": recording_sha256,
            "decided_on": on,
            "outcome": "rejected" if reason_code else "enrolled",
            "reason_code": reason_code,
            "detail": detail[:255],
            "metrics": json.dumps(dict(metrics or {}), sort_keys=True),
            "recorded_at": _utcnow(),
        },
    )


# -- consent decisions ----------------------------------------------------------------------


@dataclass(frozen=True)
class ConsentDecision:
    """May ``profile_id`` speak a notice? ``consent_id`` is the consent relied on (or the
    consent that failed); ``reason_code`` says why not."""

    allowed: bool
    reason_code: str | None
    profile_id: str
    consent_id: str | None


@dataclass(frozen=True)
class _Profile:
    profile_id: str
    status: str
    locales: frozenset[str]
    notice_types: frozenset[str]
    variants: frozenset[str] = frozenset()  # enrolled emotion variants


@dataclass(frozen=True)
class _Consent:
    consent_id: str
    granted_on: dt.date
    expires_on: dt.date | None
    revoked: bool
    locales: frozenset[str]
    notice_types: frozenset[str]


@dataclass
class ConsentBook:
    """Profiles and consents loaded once, for deciding many notices (a plan's batch).

    :func:`consent_for` and :func:`choose_profile` load one per call; a plan of
    thousands of notices loads one with :func:`load_consent_book` and asks it.
    """

    profiles: dict[str, _Profile] = field(default_factory=dict)
    consents: dict[str, list[_Consent]] = field(default_factory=dict)

    def consent_for(
        self, profile_id: str, notice_type: str, locale: str, on: dt.date
    ) -> ConsentDecision:
        profile = self.profiles.get(profile_id)
        if profile is None:
            return ConsentDecision(False, VOICE_PROFILE_UNKNOWN, profile_id, None)
        if profile.status == ProfileStatus.DENIED:
            return ConsentDecision(False, VOICE_PROFILE_DENIED, profile_id, None)
        if profile.status != ProfileStatus.ACTIVE:
            return ConsentDecision(False, VOICE_PROFILE_INACTIVE, profile_id, None)
        started = [c for c in self.consents.get(profile_id, ()) if c.granted_on <= on]
        if not started:
            return ConsentDecision(False, VOICE_CONSENT_MISSING, profile_id, None)
        profile_covers = notice_type in profile.notice_types and locale in profile.locales
        for consent in started:
            if _refusal(consent, profile_covers, notice_type, locale, on) is None:
                return ConsentDecision(True, None, profile_id, consent.consent_id)
        current = started[0]  # the latest granted: its refusal is the one that matters
        reason = _refusal(current, profile_covers, notice_type, locale, on)
        return ConsentDecision(False, reason, profile_id, current.consent_id)

    def choose(
        self, notice_type: str, locale: str, on: dt.date, preferred: str | None = None
    ) -> ConsentDecision:
        order = sorted(self.profiles)
        if preferred is not None:
            order = [preferred] + [p for p in order if p != preferred]
        refusals = []
        for profile_id in order:
            decision = self.consent_for(profile_id, notice_type, locale, on)
            if decision.allowed:
                return decision
            refusals.append(decision)
        if not refusals:
            return ConsentDecision(False, VOICE_PROFILE_UNKNOWN, preferred or "", None)
        if preferred is not None and refusals[0].reason_code != VOICE_PROFILE_UNKNOWN:
            return refusals[0]

        def closeness(decision: ConsentDecision) -> tuple[int, int]:
            # A voice fit for the notice (by its profile's scope) says more than one that
            # was never meant for it.
            profile = self.profiles[decision.profile_id]
            fit = notice_type in profile.notice_types and locale in profile.locales
            return (0 if fit else 1, _REFUSAL_ORDER.index(decision.reason_code))

        return min(refusals, key=closeness)

    def variants_of(self, profile_id: str) -> frozenset[str]:
        """The emotion variants a profile has enrolled (normal, warm, serious)."""
        profile = self.profiles.get(profile_id)
        return profile.variants if profile is not None else frozenset()


def _refusal(
    consent: _Consent, profile_covers: bool, notice_type: str, locale: str, on: dt.date
) -> str | None:
    if consent.revoked:
        return VOICE_CONSENT_REVOKED
    if consent.expires_on is not None and on >= consent.expires_on:
        return VOICE_CONSENT_EXPIRED
    if not (profile_covers and notice_type in consent.notice_types and locale in consent.locales):
        return VOICE_CONSENT_SCOPE
    return None


def load_consent_book(conn: sa.Connection, profile_ids: Iterable[str] | None = None) -> ConsentBook:
    """Every profile (or the named ones) with its consents, newest grant first."""
    profiles_q = sa.select(
        voice_profiles.c.profile_id,
        voice_profiles.c.status,
        voice_profiles.c.locales,
        voice_profiles.c.notice_types,
        voice_profiles.c.variants,
    )
    consents_q = sa.select(voice_consents).order_by(
        voice_consents.c.granted_on.desc(), voice_consents.c.consent_id.desc()
    )
    if profile_ids is not None:
        ids = list(profile_ids)
        profiles_q = profiles_q.where(voice_profiles.c.profile_id.in_(ids))
        consents_q = consents_q.where(voice_consents.c.profile_id.in_(ids))
    book = ConsentBook()
    for row in conn.execute(profiles_q):
        book.profiles[row.profile_id] = _Profile(
            row.profile_id,
            row.status,
            frozenset(json.loads(row.locales)),
            frozenset(json.loads(row.notice_types)),
            frozenset(json.loads(row.variants or "{}")),
        )
    for row in conn.execute(consents_q):
        book.consents.setdefault(row.profile_id, []).append(
            _Consent(
                row.consent_id,
                _as_date(row.granted_on),
                _as_date(row.expires_on) if row.expires_on is not None else None,
                row.revoked_at is not None,
                frozenset(json.loads(row.locales)),
                frozenset(json.loads(row.notice_types)),
            )
        )
    return book


def _as_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, str):
        return dt.date.fromisoformat(value[:10])
    return value


def consent_for(
    conn: sa.Connection, profile_id: str, notice_type: str, locale: str, on: dt.date
) -> ConsentDecision:
    """May ``profile_id`` speak a ``notice_type`` notice in ``locale`` on campaign date ``on``?

    Allowed only if the profile exists and is active, and one of its consents was granted
    on or before ``on``, has not expired by ``on`` (``on < expires_on``), is not revoked,
    and covers the notice type and locale (as does the profile). Refusals carry the
    reason of the latest consent granted by ``on`` (see the module's table).
    """
    return load_consent_book(conn, [profile_id]).consent_for(profile_id, notice_type, locale, on)


def choose_profile(
    conn: sa.Connection,
    notice_type: str,
    locale: str,
    on: dt.date,
    preferred: str | None = None,
) -> ConsentDecision:
    """The voice for a notice: ``preferred`` if it has valid consent, else the first
    profile by id that has; deterministic for the same registry and arguments.

    When none qualifies: the preferred profile's refusal if it exists, else the refusal
    that came closest: first among profiles whose own scope fits the notice, in the
    order scope, expired, revoked, missing, inactive, denied.
    """
    return load_consent_book(conn).choose(notice_type, locale, on, preferred)


# -- S3 objects -----------------------------------------------------------------------------


def prompt_file(emotion: str) -> str:
    """``prompt.wav`` for normal (what ``synthesis.voices`` reads), ``prompt-<emotion>.wav``."""
    return "prompt.wav" if emotion == "normal" else f"prompt-{emotion}.wav"


def profile_key(profile_id: str, name: str, prefix: str = "voices") -> str:
    return f"{prefix}/{profile_id}/{name}"


def profile_document(
    spec: ProfileSpec,
    consent_id: str | None,
    variants: Mapping[str, Mapping[str, Any]],
    *,
    embedding_model: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``profile.json`` as ``synthesis.voices`` reads it (``consent_id``, ``prompt_text``,
    ``lang`` from the normal variant), with the registry's fields added.

    Without a ``consent_id`` (all consents revoked, profile retired or denied) the key is
    left out, and the worker refuses the profile (``voice_profile_no_consent``).
    """
    normal = variants.get("normal")
    if normal is None:
        raise ValueError("a published profile needs its normal variant")
    consent = {"consent_id": consent_id} if consent_id else {}
    return {
        **{k: v for k, v in (extra or {}).items() if k != "consent_id"},
        **consent,
        "prompt_text": normal["prompt_text"],
        "lang": spec.language,
        "speaker": spec.speaker,
        "locales": sorted(spec.locales),
        "notice_types": sorted(spec.notice_types),
        "embedding_model": embedding_model,
        "variants": {
            emotion: {"prompt": prompt_file(emotion), "prompt_text": v["prompt_text"]}
            for emotion, v in sorted(variants.items())
        },
    }


def put_if_changed(s3_client: Any, bucket: str, key: str, body: bytes, content_type: str) -> bool:
    """Write ``body`` unless the object already holds exactly it; True if written."""
    from botocore.exceptions import ClientError

    try:
        head = s3_client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
            raise
        head = None
    if head is not None and head.get("ETag", "").strip('"') == hashlib.md5(body).hexdigest():
        return False
    s3_client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
    return True


def profile_row(conn: sa.Connection, profile_id: str) -> sa.Row | None:
    return conn.execute(
        sa.select(voice_profiles).where(voice_profiles.c.profile_id == profile_id)
    ).first()


def consents_of(conn: sa.Connection, profile_id: str) -> list[sa.Row]:
    return list(
        conn.execute(
            sa.select(voice_consents)
            .where(voice_consents.c.profile_id == profile_id)
            .order_by(voice_consents.c.granted_on.desc(), voice_consents.c.consent_id.desc())
        )
    )
