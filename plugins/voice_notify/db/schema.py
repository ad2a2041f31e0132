"""Every table voice-notify owns, on one ``MetaData``: the schema Alembic migrates.

The tables live in the ledger database (``VOICE_NOTIFY_LEDGER_CONN_ID``, by default the
CRM's own database). Nothing creates them at run time: ``voice-notify-db upgrade``
(``voice_notify.db.migrate``) applies the migrations in ``migrations/versions``, and a
change here goes with a new migration there.

- the dispatch ledger and what exactly-once dialing rests on: ``dispatch_ledger``,
  ``notice_dial_claims``, ``call_attempts``, ``call_events``, ``do_not_call``, and the
  cross-worker pacing and per-customer locks (``gateway_pacing``, ``customer_dial_locks``);
- the voice registry: ``voice_profiles``, ``voice_consents``, ``voice_enrollments``;
- the audit: ``notice_voice_audit`` and the view ``notice_audit`` over them all;
- the decision trail: ``notice_decisions`` (every gate check, at plan and dial time);
- retention: ``audio_deletions``;
- the SIP call service's call book: ``sip_calls`` and ``sip_call_services``.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# --- the dispatch ledger -------------------------------------------------------------

dispatch_ledger = sa.Table(
    "dispatch_ledger",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("notice_id", sa.Integer, nullable=False),
    sa.Column("campaign_date", sa.Date, nullable=False),
    sa.Column("customer_id", sa.Integer),
    sa.Column("notice_type", sa.String(48)),
    sa.Column("locale", sa.String(8)),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("reason_code", sa.String(64)),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="1"),
    sa.Column("batch_key", sa.String(255)),
    sa.Column("audio_key", sa.String(255)),
    sa.Column("engine", sa.String(64)),
    sa.Column("seed", sa.BigInteger),
    sa.Column("idempotency_key", sa.String(128)),
    sa.Column("call_id", sa.String(64)),
    sa.Column("outcome", sa.String(32)),
    sa.Column("key_pressed", sa.String(4)),
    sa.Column("answered_by", sa.String(16)),
    sa.Column("dialing_started_at", sa.DateTime),
    sa.Column("dialed_at", sa.DateTime),
    sa.Column("ended_at", sa.DateTime),
    # A redial waits until then (and until the customer's calling hours).
    sa.Column("next_attempt_at", sa.DateTime),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    # Added by migration 0006, for one call per customer: a notice spoken in another
    # notice's call (a merged call) holds that row's id here and follows its state
    # (``ledger.transition``); ``confirm_key`` is the key that confirms this notice on
    # its call (null: the campaign's).
    sa.Column("call_with", sa.Integer),
    sa.Column("confirm_key", sa.String(4)),
    sa.UniqueConstraint("notice_id", "campaign_date", name="uq_ledger_notice_date"),
    sa.Index("ix_ledger_date_state", "campaign_date", "state"),
    sa.Index("ix_ledger_date_batch", "campaign_date", "batch_key"),
    sa.Index("ix_ledger_call_with", "call_with"),
)

notice_dial_claims = sa.Table(
    "notice_dial_claims",
    metadata,
    sa.Column("notice_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("ledger_id", sa.Integer, nullable=False),
    sa.Column("campaign_date", sa.Date, nullable=False),
    sa.Column("claimed_at", sa.DateTime, nullable=False),
)


# One row per call attempt: the history behind the ledger row's current attempt,
# and what the CRM's contact_attempts are written from.
call_attempts = sa.Table(
    "call_attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ledger_id", sa.Integer, nullable=False),
    sa.Column("notice_id", sa.Integer, nullable=False),
    sa.Column("customer_id", sa.Integer),
    sa.Column("campaign_date", sa.Date, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("idempotency_key", sa.String(128), nullable=False),
    sa.Column("gateway", sa.String(32)),
    sa.Column("call_id", sa.String(64)),
    sa.Column("outcome", sa.String(32)),
    sa.Column("key_pressed", sa.String(4)),
    sa.Column("answered_by", sa.String(16)),
    sa.Column("audio_key", sa.String(255)),
    sa.Column("dialing_started_at", sa.DateTime, nullable=False),
    sa.Column("dialed_at", sa.DateTime),
    sa.Column("ended_at", sa.DateTime),
    sa.UniqueConstraint("ledger_id", "attempt", name="uq_call_attempt"),
    sa.UniqueConstraint("idempotency_key", name="uq_call_attempt_key"),
    sa.Index("ix_call_attempts_customer", "customer_id", "dialing_started_at"),
)

# Gateway status callbacks, verified and deduplicated: a repeated callback is
# dropped by the unique key, a later status is kept even if it came first.
call_events = sa.Table(
    "call_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("call_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("sequence", sa.Integer, nullable=False),
    sa.Column("idempotency_key", sa.String(128)),
    sa.Column("key_pressed", sa.String(4)),
    sa.Column("answered_by", sa.String(16)),
    sa.Column("duration_s", sa.Float),
    sa.Column("occurred_at", sa.DateTime),
    sa.Column("received_at", sa.DateTime, nullable=False),
    sa.Column("gateway", sa.String(32)),
    sa.UniqueConstraint("call_id", "kind", "sequence", name="uq_call_event"),
)

# Numbers that must never be called (regulator lists, complaints), across campaigns.
do_not_call = sa.Table(
    "do_not_call",
    metadata,
    sa.Column("phone_e164", sa.String(20), primary_key=True),
    sa.Column("reason", sa.String(64), nullable=False),
    sa.Column("added_at", sa.DateTime, nullable=False),
)


# One row per gateway: the start time (epoch seconds, UTC) of the next free call slot.
# Every dial task on every worker reserves its slot here, so the call rate holds across
# all of them (``voice_notify.dial.ratelimit.SharedRateLimiter``).
gateway_pacing = sa.Table(
    "gateway_pacing",
    metadata,
    sa.Column("gateway", sa.String(64), primary_key=True),
    sa.Column("next_slot_at", sa.Double, nullable=False),  # DOUBLE: epoch seconds to the µs
)

# One row per customer ever dialled: the lock a dial takes while it checks the
# customer's caps, opt-out and do-not-call and records the attempt, so parallel dial
# tasks see each other's attempts (``voice_notify.dial.dialer``).
customer_dial_locks = sa.Table(
    "customer_dial_locks",
    metadata,
    sa.Column("customer_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("locked_at", sa.DateTime, nullable=False),
)


# --- the voice registry --------------------------------------------------------------

voice_profiles = sa.Table(
    "voice_profiles",
    metadata,
    sa.Column("profile_id", sa.String(64), primary_key=True),
    sa.Column("speaker", sa.String(200), nullable=False),
    sa.Column("language", sa.String(8), nullable=False),
    sa.Column("locales", sa.Text, nullable=False),  # JSON list
    sa.Column("notice_types", sa.Text, nullable=False),  # JSON list
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("status_reason", sa.String(64)),
    sa.Column("embedding", sa.Text),  # JSON list of floats (normal variant)
    sa.Column("embedding_model", sa.String(32)),
    sa.Column("variants", sa.Text, nullable=False),  # JSON {emotion: {...}}
    sa.Column("enrolled_on", sa.Date),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)

voice_consents = sa.Table(
    "voice_consents",
    metadata,
    sa.Column("consent_id", sa.String(64), primary_key=True),
    sa.Column("profile_id", sa.String(64), nullable=False, index=True),
    sa.Column("consented_by", sa.String(200), nullable=False),
    sa.Column("granted_on", sa.Date, nullable=False),
    sa.Column("expires_on", sa.Date),
    sa.Column("notice_types", sa.Text, nullable=False),  # JSON list
    sa.Column("locales", sa.Text, nullable=False),  # JSON list
    sa.Column("document_ref", sa.String(255), nullable=False),
    sa.Column("recorded_at", sa.DateTime, nullable=False),
    sa.Column("revoked_at", sa.DateTime),
    sa.Column("revoked_reason", sa.String(255)),
)

# Every enrollment decision, accepted or rejected: what a compliance officer reads
# to see which recordings were refused and why.
voice_enrollments = sa.Table(
    "voice_enrollments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("profile_id", sa.String(64), nullable=False),
    sa.Column("emotion", sa.String(16), nullable=False),
    sa.Column("recording_sha256", sa.String(64), nullable=False),
    sa.Column("decided_on", sa.Date, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),  # enrolled | rejected
    sa.Column("reason_code", sa.String(64)),
    sa.Column("detail", sa.String(255)),
    sa.Column("metrics", sa.Text),  # JSON
    sa.Column("recorded_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("profile_id", "emotion", "recording_sha256", name="uq_voice_enrollment"),
)


# --- the audit -----------------------------------------------------------------------

notice_voice_audit = sa.Table(
    "notice_voice_audit",
    metadata,
    sa.Column("ledger_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("notice_id", sa.Integer, nullable=False),
    sa.Column("campaign_date", sa.Date, nullable=False),
    sa.Column("voice_profile", sa.String(64)),
    sa.Column("consent_id", sa.String(64)),
    sa.Column("instruct", sa.String(64)),
    sa.Column("engine", sa.String(64)),
    sa.Column("seed", sa.BigInteger),
    sa.Column("fallback", sa.Boolean),
    sa.Column("synthesis_status", sa.String(16)),
    sa.Column("error_code", sa.String(64)),
    sa.Column("labels", sa.Text),  # JSON
    sa.Column("qc", sa.Text),  # JSON
    sa.Column("synth_seconds", sa.Float),
    sa.Column("speech_audio_s", sa.Float),
    sa.Column("cached_audio_s", sa.Float),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    # Added by migration 0004 (the console and the report read them): the emotion variant
    # chosen at plan time and why, and the rest of the worker's result, recorded when the
    # dial step records a batch's results (the report only reads).
    sa.Column("emotion", sa.String(16)),
    sa.Column("tone_rule", sa.String(64)),
    sa.Column("master_key", sa.String(255)),
    sa.Column("duration_s", sa.Float),
    sa.Column("engine_seconds", sa.Float),
    sa.Column("resumed", sa.Boolean),
    sa.Column("render_attempts", sa.Integer),
    # Added by migration 0006: the S3 bytes of the telephone file and of the master.
    sa.Column("telephone_bytes", sa.BigInteger),
    sa.Column("master_bytes", sa.BigInteger),
    sa.Index("ix_voice_audit_notice", "notice_id", "campaign_date"),
    sa.Index("ix_voice_audit_date", "campaign_date"),
)

# The decision trail: one row per gate evaluation of a notice (the plan's eligibility,
# voice and tone checks; each dial-time gate), its checks as a JSON list in order
# (``[{"check": ..., "result": allow|skip|wait|not_reached, "reason": ..., "detail": ...}]``).
# Written set-based; an identical re-evaluation (same stage, attempt and verdict) is kept
# once, a changed one is added, so the trail shows what changed between runs.
notice_decisions = sa.Table(
    "notice_decisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("notice_id", sa.Integer, nullable=False),
    sa.Column("campaign_date", sa.Date, nullable=False),
    sa.Column("stage", sa.String(8), nullable=False),  # plan | dial
    sa.Column("attempt", sa.Integer, nullable=False),  # 0 at plan time
    sa.Column("verdict", sa.String(80), nullable=False),  # "<result>:<reason code>"
    sa.Column("result", sa.String(16), nullable=False),
    sa.Column("reason_code", sa.String(64)),
    sa.Column("checks", sa.Text, nullable=False),  # JSON list
    sa.Column("decided_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint(
        "notice_id", "campaign_date", "stage", "attempt", "verdict", name="uq_notice_decision"
    ),
    sa.Index("ix_notice_decisions_date", "campaign_date", "notice_id"),
)

# The view ``notice_audit`` (one row per ledger row and call attempt, with the voice,
# consent and audio deletion): created by migration 0001, extended by 0004; changed only
# by a migration.
AUDIT_VIEW = "notice_audit"


# --- retention -----------------------------------------------------------------------

audio_deletions = sa.Table(
    "audio_deletions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("object_key", sa.String(512), nullable=False),
    sa.Column("last_modified", sa.DateTime, nullable=False),  # naive UTC
    sa.Column("size_bytes", sa.BigInteger),
    sa.Column("cutoff", sa.DateTime, nullable=False),
    sa.Column("logical_date", sa.Date, nullable=False),
    sa.Column("recorded_at", sa.DateTime, nullable=False),
    sa.Column("deleted_at", sa.DateTime),  # null: recorded, delete not confirmed yet
    sa.UniqueConstraint("object_key", "last_modified", name="uq_audio_deletion"),
    sa.Index("ix_audio_deletions_date", "logical_date"),
)


# --- the SIP call service ------------------------------------------------------------

# One row per call the SIP call service accepted (``voice_notify.gateway.sip.callbook``):
# any replica, and any process with the database, can look a call up by its key or id.
# A key press is written here the moment it arrives, before anything else happens.
sip_calls = sa.Table(
    "sip_calls",
    metadata,
    sa.Column("call_id", sa.String(64), primary_key=True),
    sa.Column("idempotency_key", sa.String(128), nullable=False),
    sa.Column("to_sha256", sa.String(64), nullable=False),
    sa.Column("to_masked", sa.String(32)),
    sa.Column("audio_sha256", sa.String(64), nullable=False),
    sa.Column("status_callback", sa.String(1024)),
    sa.Column("ring_timeout_s", sa.Integer),
    sa.Column("notice_id", sa.String(32)),
    # The service run that carries the call (``sip_call_services.owner``).
    sa.Column("owner", sa.String(128), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("error", sa.String(64)),
    sa.Column("digits", sa.String(32), nullable=False, server_default=""),
    sa.Column("sip_call_id", sa.String(128)),
    sa.Column("sip_reason", sa.String(96)),
    sa.Column("codec", sa.String(8)),
    sa.Column("audio_s", sa.Float),
    sa.Column("setup_s", sa.Float),
    sa.Column("early_media_s", sa.Float),
    sa.Column("ring_s", sa.Float),
    sa.Column("talk_s", sa.Float),
    sa.Column("accepted_at", sa.DateTime, nullable=False),
    sa.Column("dialed_at", sa.DateTime),
    sa.Column("answered_at", sa.DateTime),
    sa.Column("first_key_at", sa.DateTime),
    sa.Column("ended_at", sa.DateTime),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("idempotency_key", name="uq_sip_call_key"),
    sa.Index("ix_sip_calls_owner_open", "owner", "ended_at"),
)

# The service runs that carry calls, with a heartbeat: calls of a run that stopped
# beating (or of an earlier run of a restarted service) are settled as interrupted.
sip_call_services = sa.Table(
    "sip_call_services",
    metadata,
    sa.Column("owner", sa.String(128), primary_key=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("host", sa.String(128)),
    sa.Column("pid", sa.Integer),
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("heartbeat_at", sa.DateTime, nullable=False),
    sa.Column("stopped_at", sa.DateTime),
    sa.Index("ix_sip_call_services_name", "name"),
)
