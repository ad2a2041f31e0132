"""The SIP call service's call book: ``sip_calls`` and ``sip_call_services``.

Created ``IF NOT EXISTS``, as the baseline's tables are: a database whose tables were
made from the schema module directly (tests, tools) is adopted as it is.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sip_calls",
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("to_sha256", sa.String(length=64), nullable=False),
        sa.Column("to_masked", sa.String(length=32), nullable=True),
        sa.Column("audio_sha256", sa.String(length=64), nullable=False),
        sa.Column("status_callback", sa.String(length=1024), nullable=True),
        sa.Column("ring_timeout_s", sa.Integer(), nullable=True),
        sa.Column("notice_id", sa.String(length=32), nullable=True),
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("error", sa.String(length=64), nullable=True),
        sa.Column("digits", sa.String(length=32), server_default="", nullable=False),
        sa.Column("sip_call_id", sa.String(length=128), nullable=True),
        sa.Column("sip_reason", sa.String(length=96), nullable=True),
        sa.Column("codec", sa.String(length=8), nullable=True),
        sa.Column("audio_s", sa.Float(), nullable=True),
        sa.Column("setup_s", sa.Float(), nullable=True),
        sa.Column("early_media_s", sa.Float(), nullable=True),
        sa.Column("ring_s", sa.Float(), nullable=True),
        sa.Column("talk_s", sa.Float(), nullable=True),
        sa.Column("accepted_at", sa.DateTime(), nullable=False),
        sa.Column("dialed_at", sa.DateTime(), nullable=True),
        sa.Column("answered_at", sa.DateTime(), nullable=True),
        sa.Column("first_key_at", sa.DateTime(), nullable=True),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("call_id"),
        sa.UniqueConstraint("idempotency_key", name="uq_sip_call_key"),
        if_not_exists=True,
    )
    op.create_index(
        "ix_sip_calls_owner_open", "sip_calls", ["owner", "ended_at"], if_not_exists=True
    )
    op.create_table(
        "sip_call_services",
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=128), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=False),
        sa.Column("stopped_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("owner"),
        if_not_exists=True,
    )
    op.create_index("ix_sip_call_services_name", "sip_call_services", ["name"], if_not_exists=True)


def downgrade() -> None:
    op.drop_index("ix_sip_call_services_name", table_name="sip_call_services")
    op.drop_table("sip_call_services")
    op.drop_index("ix_sip_calls_owner_open", table_name="sip_calls")
    op.drop_table("sip_calls")
