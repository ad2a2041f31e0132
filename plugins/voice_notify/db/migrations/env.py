"""Alembic's environment for voice-notify's tables (run through ``voice_notify.db.migrate``).

Migrations run on the connection ``migrate.upgrade`` hands over in the config's
attributes: the ledger database, which may be the CRM's own, so the version table has
a name of its own (``voice_notify_alembic_version``) and autogenerate looks only at
the tables in ``voice_notify.db.schema``.
"""

from __future__ import annotations

from alembic import context

from voice_notify.db.migrate import VERSION_TABLE
from voice_notify.db.schema import metadata


def _include_object(obj, name, type_, reflected, compare_to) -> bool:
    # The CRM's own tables (and any other) are not ours to compare or drop.
    return not (reflected and compare_to is None and type_ == "table")


def run_migrations() -> None:
    connection = context.config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        include_object=_include_object,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
