"""Schema migrations of voice-notify's tables: ``voice-notify-db upgrade``.

One command brings a ledger database to the current schema, whatever state it is in:
empty, created by voice-notify before migrations existed (its tables are adopted as
they are), or at any earlier revision. Deployments run it on upgrade, before the new
DAGs (the Helm chart's migration job, ``make stack``). Every task that opens the ledger
also checks the revision once per process (``ensure_current``) and upgrades a database
that is behind, so the demo and a laptop need no extra step; upgrades take a
database-wide lock, so processes starting at once never run DDL side by side.

    voice-notify-db upgrade --url postgresql+psycopg2://...   # or --conn-id crm_db
    voice-notify-db current --url ...
    voice-notify-db revision -m "what changes" --url sqlite:///scratch.db  # autogenerate
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "voice_notify_alembic_version"

log = logging.getLogger(__name__)
_checked: set[str] = set()
_lock = threading.Lock()


def _config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision in ``migrations/versions``."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


def current_revision(engine: sa.Engine) -> str | None:
    """The revision a database is at (None: never migrated)."""
    with engine.connect() as conn:
        return MigrationContext.configure(
            conn, opts={"version_table": VERSION_TABLE}
        ).get_current_revision()


# A key of the database-wide lock migrations take, so that two processes (a task and the
# SIP call service, two tasks) never run DDL at once: the second waits, then finds the
# database current.
_LOCK_KEY = 0x766E6D6967  # "vnmig"
_SQLITE_LOCK = "voice_notify_migration_lock"


def _take_migration_lock(conn: sa.Connection) -> None:
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    elif dialect in ("mysql", "mariadb"):
        # Session-wide, so it outlives MariaDB's implicit commits around DDL.
        got = conn.execute(sa.text("SELECT GET_LOCK('voice_notify_migrate', 300)")).scalar()
        if got != 1:
            raise RuntimeError("another process holds the migration lock for 300 s")
    elif dialect == "sqlite":
        # A write opens the transaction and takes the database's write lock at once (the
        # sqlite3 module runs DDL outside a transaction until one is open).
        conn.execute(sa.text(f"CREATE TABLE IF NOT EXISTS {_SQLITE_LOCK} (taken INTEGER)"))
        conn.execute(sa.text(f"DELETE FROM {_SQLITE_LOCK}"))


def _release_migration_lock(conn: sa.Connection) -> None:
    if conn.dialect.name in ("mysql", "mariadb"):
        conn.execute(sa.text("SELECT RELEASE_LOCK('voice_notify_migrate')"))


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Apply every migration the database lacks (a no-op when it is current), under a
    database-wide lock."""
    with engine.begin() as conn:
        _take_migration_lock(conn)
        try:
            command.upgrade(_config(conn), revision)
        finally:
            _release_migration_lock(conn)


def ensure_current(engine: sa.Engine) -> None:
    """Upgrade the database if it is behind; checked once per engine and process.

    What the DAGs' first task calls. A deployment normally upgrades with the command
    before new code runs, so this finds the database current and only reads its version.
    """
    key = engine.url.render_as_string(hide_password=True)
    with _lock:
        if key in _checked:
            return
        if current_revision(engine) != head_revision():
            log.info("ledger database behind %s: upgrading", head_revision())
            upgrade(engine)
        _checked.add(key)


def _engine(args: argparse.Namespace) -> sa.Engine:
    from voice_notify.db.sql import make_engine

    if args.url:
        return make_engine(args.url)
    from voice_notify.airflow.hooks import engine_for  # a Connection needs Airflow

    return engine_for(args.conn_id)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="voice-notify-db", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("action", choices=("upgrade", "current", "revision"))
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--url", help="SQLAlchemy URL of the ledger database")
    target.add_argument(
        "--conn-id", help="Airflow Connection of the ledger database (default: the setting)"
    )
    parser.add_argument("-m", "--message", help="revision: what the migration changes")
    args = parser.parse_args(argv)
    if not args.url and not args.conn_id:
        from voice_notify.settings import get_settings

        args.conn_id = get_settings().ledger_conn_id
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    engine = _engine(args)
    if args.action == "upgrade":
        upgrade(engine)
        print(f"at {current_revision(engine)} (head {head_revision()})")
    elif args.action == "current":
        print(current_revision(engine) or "not migrated")
    else:
        if not args.message:
            parser.error("revision needs -m MESSAGE")
        with engine.begin() as conn:
            command.revision(_config(conn), message=args.message, autogenerate=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
