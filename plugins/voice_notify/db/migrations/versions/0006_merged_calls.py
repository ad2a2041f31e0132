"""One call per customer, and the audio's bytes in the audit.

- ``dispatch_ledger.call_with``: a notice spoken in another notice's call (a merged
  call) holds that row's id; its state follows that row's. ``confirm_key``: the key
  that confirms this notice on its call (null: the campaign's ``confirm_key``);
- ``notice_voice_audit.telephone_bytes`` and ``master_bytes``: the S3 bytes of the
  notice's audio as the worker stored it (the report's bytes per notice).

Like the earlier migrations, a database that already holds these is adopted as it is.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# (name, type) per table: a Column object belongs to one table, so each use makes its own.
_LEDGER = (("call_with", sa.Integer()), ("confirm_key", sa.String(length=4)))
_AUDIT = (("telephone_bytes", sa.BigInteger()), ("master_bytes", sa.BigInteger()))


def _add_missing(table: str, columns: tuple[tuple[str, sa.types.TypeEngine], ...]) -> None:
    present = {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}
    for name, type_ in columns:
        if name not in present:
            # ADD COLUMN in place on every backend (SQLite too): the audit view stays.
            op.add_column(table, sa.Column(name, type_, nullable=True))


def upgrade() -> None:
    _add_missing("dispatch_ledger", _LEDGER)
    _add_missing("notice_voice_audit", _AUDIT)
    op.create_index("ix_ledger_call_with", "dispatch_ledger", ["call_with"], if_not_exists=True)


def downgrade() -> None:
    op.drop_index("ix_ledger_call_with", table_name="dispatch_ledger")
    for table, columns in (("notice_voice_audit", _AUDIT), ("dispatch_ledger", _LEDGER)):
        with op.batch_alter_table(table) as batch:
            for name, _ in reversed(columns):
                batch.drop_column(name)
