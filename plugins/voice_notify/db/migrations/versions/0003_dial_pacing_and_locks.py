"""Dialing across workers: the shared call pacing per gateway, and per-customer locks.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateway_pacing",
        sa.Column("gateway", sa.String(length=64), nullable=False),
        sa.Column("next_slot_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("gateway"),
        if_not_exists=True,
    )
    op.create_table(
        "customer_dial_locks",
        sa.Column("customer_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("locked_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id"),
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_table("customer_dial_locks")
    op.drop_table("gateway_pacing")
