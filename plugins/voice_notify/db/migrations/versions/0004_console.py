"""The notice console and a report built from the ledger alone.

- ``notice_decisions``: every gate check of a notice, at plan and dial time (the
  console's decision trail);
- ``notice_voice_audit`` gains the emotion variant that spoke and why (``emotion``,
  ``tone_rule``), and the rest of the worker's result the report aggregates
  (``master_key``, ``duration_s``, ``engine_seconds``, ``resumed``,
  ``render_attempts``), plus an index by campaign date;
- the view ``notice_audit`` shows the variant, the rule that chose it and the master.

Like the baseline, a database that already holds any of these is adopted as it is.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_BASELINE = importlib.import_module("voice_notify.db.migrations.versions.0001_baseline")
AUDIT_VIEW = _BASELINE.AUDIT_VIEW


def _audit_columns() -> list[sa.Column]:
    return [
        sa.Column("emotion", sa.String(length=16), nullable=True),
        sa.Column("tone_rule", sa.String(length=64), nullable=True),
        sa.Column("master_key", sa.String(length=255), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("engine_seconds", sa.Float(), nullable=True),
        sa.Column("resumed", sa.Boolean(), nullable=True),
        sa.Column("render_attempts", sa.Integer(), nullable=True),
    ]


# The baseline's columns in their order (PostgreSQL's CREATE OR REPLACE VIEW only appends).
_AUDIT_VIEW_SELECT = _BASELINE._AUDIT_VIEW_SELECT.replace(
    "       d.deleted_at AS audio_deleted_at\n",
    "       d.deleted_at AS audio_deleted_at,\n       v.emotion, v.tone_rule, v.master_key\n",
)


def _replace_view(select: str) -> None:
    if op.get_bind().dialect.name == "sqlite":  # no CREATE OR REPLACE VIEW
        op.execute(f"DROP VIEW IF EXISTS {AUDIT_VIEW}")
        op.execute(f"CREATE VIEW {AUDIT_VIEW} AS {select}")
    elif op.get_bind().dialect.name == "postgresql":
        # Dropping columns from a view needs DROP first; adding works in place.
        op.execute(f"DROP VIEW IF EXISTS {AUDIT_VIEW}")
        op.execute(f"CREATE VIEW {AUDIT_VIEW} AS {select}")
    else:
        op.execute(f"CREATE OR REPLACE VIEW {AUDIT_VIEW} AS {select}")


def upgrade() -> None:
    op.create_table(
        "notice_decisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("notice_id", sa.Integer(), nullable=False),
        sa.Column("campaign_date", sa.Date(), nullable=False),
        sa.Column("stage", sa.String(length=8), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("verdict", sa.String(length=80), nullable=False),
        sa.Column("result", sa.String(length=16), nullable=False),
        sa.Column("reason_code", sa.String(length=64), nullable=True),
        sa.Column("checks", sa.Text(), nullable=False),
        sa.Column("decided_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "notice_id", "campaign_date", "stage", "attempt", "verdict", name="uq_notice_decision"
        ),
        if_not_exists=True,
    )
    op.create_index(
        "ix_notice_decisions_date",
        "notice_decisions",
        ["campaign_date", "notice_id"],
        if_not_exists=True,
    )
    present = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("notice_voice_audit")}
    missing = [column for column in _audit_columns() if column.name not in present]
    if missing:
        with op.batch_alter_table("notice_voice_audit") as batch:
            for column in missing:
                batch.add_column(column)
    op.create_index(
        "ix_voice_audit_date", "notice_voice_audit", ["campaign_date"], if_not_exists=True
    )
    _replace_view(_AUDIT_VIEW_SELECT)


def downgrade() -> None:
    # SQLite rebuilds the table to drop columns: no view may depend on it meanwhile.
    op.execute(f"DROP VIEW IF EXISTS {AUDIT_VIEW}")
    op.drop_index("ix_voice_audit_date", table_name="notice_voice_audit")
    with op.batch_alter_table("notice_voice_audit") as batch:
        for column in reversed(_audit_columns()):
            batch.drop_column(column.name)
    _replace_view(_BASELINE._AUDIT_VIEW_SELECT)
    op.drop_index("ix_notice_decisions_date", table_name="notice_decisions")
    op.drop_table("notice_decisions")
