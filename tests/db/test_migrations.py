"""Migrations on SQLite, PostgreSQL and MariaDB: from empty, and from a database that
voice-notify created before migrations existed (its tables are adopted, data kept)."""

from __future__ import annotations

import datetime as dt
import importlib

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from voice_notify.db import migrate, schema

BASELINE = importlib.import_module("voice_notify.db.migrations.versions.0001_baseline")
DAY = dt.date(2026, 11, 26)


def _differences(engine: sa.Engine) -> list:
    """What the database lacks or has beyond ``schema.metadata`` (alembic's autogenerate)."""
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"include_object": _ours, "compare_type": False}
        )
        return compare_metadata(context, schema.metadata)


def _ours(obj, name, type_, reflected, compare_to) -> bool:
    # The version table and any table voice-notify does not own are not compared.
    return not (type_ == "table" and reflected and compare_to is None)


def test_an_empty_database_is_brought_to_the_schema(db_engine) -> None:
    assert migrate.current_revision(db_engine) is None
    migrate.upgrade(db_engine)
    assert migrate.current_revision(db_engine) == migrate.head_revision()
    assert _differences(db_engine) == []
    assert schema.AUDIT_VIEW in sa.inspect(db_engine).get_view_names()
    migrate.upgrade(db_engine)  # a second upgrade is a no-op
    assert migrate.current_revision(db_engine) == migrate.head_revision()


def _create_pre_migration_schema(engine: sa.Engine) -> None:
    """The tables as voice-notify 0.1 made them at run time (``create_all``), with its view."""
    old = sa.MetaData()
    for table in schema.metadata.sorted_tables:
        copy = table.to_metadata(old)
        for index in list(copy.indexes):
            if index.name == "ix_ledger_date_batch":  # added by migration 0002
                copy.indexes.discard(index)
    old.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE VIEW notice_audit AS {BASELINE._AUDIT_VIEW_SELECT}"))


def test_a_database_of_the_pre_migration_code_is_adopted_and_upgraded(db_engine) -> None:
    _create_pre_migration_schema(db_engine)
    now = dt.datetime(2026, 11, 26, 9)
    with db_engine.begin() as conn:
        conn.execute(
            schema.dispatch_ledger.insert(),
            {
                "notice_id": 4711,
                "campaign_date": DAY,
                "state": "completed",
                "outcome": "confirmed",
                "created_at": now,
                "updated_at": now,
            },
        )
    indexes = {i["name"] for i in sa.inspect(db_engine).get_indexes("dispatch_ledger")}
    assert "ix_ledger_date_batch" not in indexes
    migrate.upgrade(db_engine)
    assert migrate.current_revision(db_engine) == migrate.head_revision()
    indexes = {i["name"] for i in sa.inspect(db_engine).get_indexes("dispatch_ledger")}
    assert "ix_ledger_date_batch" in indexes
    assert _differences(db_engine) == []
    with db_engine.connect() as conn:
        ledger = schema.dispatch_ledger
        kept = conn.execute(sa.select(ledger.c.notice_id, ledger.c.outcome)).all()
        audited = conn.execute(sa.text("SELECT notice_id FROM notice_audit")).scalars().all()
    assert kept == [(4711, "confirmed")] and audited == [4711]


def test_ensure_current_upgrades_once_and_then_only_reads(db_engine, monkeypatch) -> None:
    calls = []
    real = migrate.upgrade
    monkeypatch.setattr(migrate, "upgrade", lambda e, r="head": calls.append(r) or real(e, r))
    migrate._checked.clear()
    migrate.ensure_current(db_engine)
    migrate.ensure_current(db_engine)
    assert calls == ["head"]
    assert migrate.current_revision(db_engine) == migrate.head_revision()


def test_the_command_line_upgrades_a_url(tmp_path, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    assert migrate.main(["upgrade", "--url", url]) == 0
    assert f"at {migrate.head_revision()}" in capsys.readouterr().out
    assert migrate.main(["current", "--url", url]) == 0
    assert capsys.readouterr().out.strip() == migrate.head_revision()


def test_processes_upgrading_at_once_take_turns(db_url) -> None:
    """A task and the SIP service starting on an empty database together: one migrates,
    the other waits for the lock and finds the database current."""
    import threading

    from voice_notify.db.sql import make_engine

    errors: list[BaseException] = []

    def upgrade() -> None:
        engine = make_engine(db_url)
        try:
            migrate.upgrade(engine)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=upgrade) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    engine = make_engine(db_url)
    try:
        assert migrate.current_revision(engine) == migrate.head_revision()
        assert _differences(engine) == []
    finally:
        engine.dispose()
