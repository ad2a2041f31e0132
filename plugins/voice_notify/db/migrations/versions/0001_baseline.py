"""Baseline: the tables of voice-notify 0.1, and the audit view.

A database that voice-notify created before migrations existed already holds these
tables: they are adopted as they are (``IF NOT EXISTS``), and the view is recreated.

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

AUDIT_VIEW = "notice_audit"
_AUDIT_VIEW_SELECT = """
SELECT l.id AS ledger_id, l.notice_id, l.campaign_date, l.customer_id, l.notice_type,
       l.locale, l.state, l.reason_code, l.outcome AS notice_outcome, l.attempt AS attempts,
       l.audio_key, COALESCE(v.engine, l.engine) AS engine, COALESCE(v.seed, l.seed) AS seed,
       v.voice_profile, v.consent_id, v.instruct, v.fallback, v.synthesis_status,
       v.error_code AS synthesis_error, v.labels, v.qc, v.synth_seconds,
       c.consented_by, c.granted_on AS consent_granted_on,
       c.expires_on AS consent_expires_on, c.revoked_at AS consent_revoked_at,
       c.revoked_reason AS consent_revoked_reason, c.document_ref AS consent_document_ref,
       a.attempt, a.idempotency_key, a.gateway, a.call_id, a.outcome AS attempt_outcome,
       a.key_pressed, a.answered_by, a.dialing_started_at, a.dialed_at, a.ended_at,
       d.deleted_at AS audio_deleted_at
FROM dispatch_ledger l
LEFT JOIN notice_voice_audit v ON v.ledger_id = l.id
LEFT JOIN voice_consents c ON c.consent_id = v.consent_id
LEFT JOIN call_attempts a ON a.ledger_id = l.id
LEFT JOIN (
    SELECT object_key, MAX(deleted_at) AS deleted_at FROM audio_deletions GROUP BY object_key
) d ON d.object_key = l.audio_key
"""


def upgrade() -> None:
    op.create_table(
        "audio_deletions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("object_key", sa.String(length=512), nullable=False),
        sa.Column("last_modified", sa.DateTime(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("cutoff", sa.DateTime(), nullable=False),
        sa.Column("logical_date", sa.Date(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("object_key", "last_modified", name="uq_audio_deletion"),
        if_not_exists=True,
    )
    op.create_index(
        "ix_audio_deletions_date", "audio_deletions", ["logical_date"], if_not_exists=True
    )

    op.create_table(
        "call_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ledger_id", sa.Integer(), nullable=False),
        sa.Column("notice_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("campaign_date", sa.Date(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("gateway", sa.String(length=32), nullable=True),
        sa.Column("call_id", sa.String(length=64), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("key_pressed", sa.String(length=4), nullable=True),
        sa.Column("answered_by", sa.String(length=16), nullable=True),
        sa.Column("audio_key", sa.String(length=255), nullable=True),
        sa.Column("dialing_started_at", sa.DateTime(), nullable=False),
        sa.Column("dialed_at", sa.DateTime(), nullable=True),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key", name="uq_call_attempt_key"),
        sa.UniqueConstraint("ledger_id", "attempt", name="uq_call_attempt"),
        if_not_exists=True,
    )
    op.create_index(
        "ix_call_attempts_customer",
        "call_attempts",
        ["customer_id", "dialing_started_at"],
        if_not_exists=True,
    )

    op.create_table(
        "call_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=True),
        sa.Column("key_pressed", sa.String(length=4), nullable=True),
        sa.Column("answered_by", sa.String(length=16), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("occurred_at", sa.DateTime(), nullable=True),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("gateway", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("call_id", "kind", "sequence", name="uq_call_event"),
        if_not_exists=True,
    )
    op.create_table(
        "dispatch_ledger",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("notice_id", sa.Integer(), nullable=False),
        sa.Column("campaign_date", sa.Date(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("notice_type", sa.String(length=48), nullable=True),
        sa.Column("locale", sa.String(length=8), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason_code", sa.String(length=64), nullable=True),
        sa.Column("attempt", sa.Integer(), server_default="1", nullable=False),
        sa.Column("batch_key", sa.String(length=255), nullable=True),
        sa.Column("audio_key", sa.String(length=255), nullable=True),
        sa.Column("engine", sa.String(length=64), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=128), nullable=True),
        sa.Column("call_id", sa.String(length=64), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("key_pressed", sa.String(length=4), nullable=True),
        sa.Column("answered_by", sa.String(length=16), nullable=True),
        sa.Column("dialing_started_at", sa.DateTime(), nullable=True),
        sa.Column("dialed_at", sa.DateTime(), nullable=True),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("notice_id", "campaign_date", name="uq_ledger_notice_date"),
        if_not_exists=True,
    )
    op.create_index(
        "ix_ledger_date_state", "dispatch_ledger", ["campaign_date", "state"], if_not_exists=True
    )

    op.create_table(
        "do_not_call",
        sa.Column("phone_e164", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("added_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("phone_e164"),
        if_not_exists=True,
    )
    op.create_table(
        "notice_dial_claims",
        sa.Column("notice_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("ledger_id", sa.Integer(), nullable=False),
        sa.Column("campaign_date", sa.Date(), nullable=False),
        sa.Column("claimed_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("notice_id"),
        if_not_exists=True,
    )
    op.create_table(
        "notice_voice_audit",
        sa.Column("ledger_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("notice_id", sa.Integer(), nullable=False),
        sa.Column("campaign_date", sa.Date(), nullable=False),
        sa.Column("voice_profile", sa.String(length=64), nullable=True),
        sa.Column("consent_id", sa.String(length=64), nullable=True),
        sa.Column("instruct", sa.String(length=64), nullable=True),
        sa.Column("engine", sa.String(length=64), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("fallback", sa.Boolean(), nullable=True),
        sa.Column("synthesis_status", sa.String(length=16), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("labels", sa.Text(), nullable=True),
        sa.Column("qc", sa.Text(), nullable=True),
        sa.Column("synth_seconds", sa.Float(), nullable=True),
        sa.Column("speech_audio_s", sa.Float(), nullable=True),
        sa.Column("cached_audio_s", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("ledger_id"),
        if_not_exists=True,
    )
    op.create_index(
        "ix_voice_audit_notice",
        "notice_voice_audit",
        ["notice_id", "campaign_date"],
        if_not_exists=True,
    )

    op.create_table(
        "voice_consents",
        sa.Column("consent_id", sa.String(length=64), nullable=False),
        sa.Column("profile_id", sa.String(length=64), nullable=False),
        sa.Column("consented_by", sa.String(length=200), nullable=False),
        sa.Column("granted_on", sa.Date(), nullable=False),
        sa.Column("expires_on", sa.Date(), nullable=True),
        sa.Column("notice_types", sa.Text(), nullable=False),
        sa.Column("locales", sa.Text(), nullable=False),
        sa.Column("document_ref", sa.String(length=255), nullable=False),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_reason", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("consent_id"),
        if_not_exists=True,
    )
    op.create_index(
        op.f("ix_voice_consents_profile_id"), "voice_consents", ["profile_id"], if_not_exists=True
    )

    op.create_table(
        "voice_enrollments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("profile_id", sa.String(length=64), nullable=False),
        sa.Column("emotion", sa.String(length=16), nullable=False),
        sa.Column("recording_sha256", sa.String(length=64), nullable=False),
        sa.Column("decided_on", sa.Date(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason_code", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.String(length=255), nullable=True),
        sa.Column("metrics", sa.Text(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "profile_id", "emotion", "recording_sha256", name="uq_voice_enrollment"
        ),
        if_not_exists=True,
    )
    op.create_table(
        "voice_profiles",
        sa.Column("profile_id", sa.String(length=64), nullable=False),
        sa.Column("speaker", sa.String(length=200), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("locales", sa.Text(), nullable=False),
        sa.Column("notice_types", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_reason", sa.String(length=64), nullable=True),
        sa.Column("embedding", sa.Text(), nullable=True),
        sa.Column("embedding_model", sa.String(length=32), nullable=True),
        sa.Column("variants", sa.Text(), nullable=False),
        sa.Column("enrolled_on", sa.Date(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("profile_id"),
        if_not_exists=True,
    )
    _create_view()


def _create_view() -> None:
    if op.get_bind().dialect.name == "sqlite":  # no CREATE OR REPLACE VIEW
        op.execute(f"DROP VIEW IF EXISTS {AUDIT_VIEW}")
        op.execute(f"CREATE VIEW {AUDIT_VIEW} AS {_AUDIT_VIEW_SELECT}")
    else:
        op.execute(f"CREATE OR REPLACE VIEW {AUDIT_VIEW} AS {_AUDIT_VIEW_SELECT}")


def downgrade() -> None:
    op.execute(f"DROP VIEW IF EXISTS {AUDIT_VIEW}")
    op.drop_table("voice_profiles")
    op.drop_table("voice_enrollments")
    op.drop_index(op.f("ix_voice_consents_profile_id"), table_name="voice_consents")

    op.drop_table("voice_consents")
    op.drop_index("ix_voice_audit_notice", table_name="notice_voice_audit")

    op.drop_table("notice_voice_audit")
    op.drop_table("notice_dial_claims")
    op.drop_table("do_not_call")
    op.drop_index("ix_ledger_date_state", table_name="dispatch_ledger")

    op.drop_table("dispatch_ledger")
    op.drop_table("call_events")
    op.drop_index("ix_call_attempts_customer", table_name="call_attempts")

    op.drop_table("call_attempts")
    op.drop_index("ix_audio_deletions_date", table_name="audio_deletions")

    op.drop_table("audio_deletions")
