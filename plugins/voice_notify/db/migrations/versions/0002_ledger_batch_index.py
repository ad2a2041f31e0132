"""An index on the ledger's (campaign date, batch): every dial task reads its own batch.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_ledger_date_batch",
        "dispatch_ledger",
        ["campaign_date", "batch_key"],
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_index("ix_ledger_date_batch", table_name="dispatch_ledger")
