"""SQL helpers every database of voice-notify shares, and the SQL files a deployment edits.

Each deployment's CRM differs, so every statement that touches it lives in
``include/sql/<name>.sql``; a dialect that needs other syntax (MariaDB's upsert) gets
``include/sql/<dialect>/<name>.sql``, which wins when present.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path

import sqlalchemy as sa

from voice_notify.settings import get_settings


def engine_options(url: sa.URL) -> dict:
    """``create_engine`` options every voice-notify database needs, by backend."""
    backend = url.get_backend_name()
    if backend == "sqlite":
        # Airflow tasks of one run may touch the demo CRM from several processes.
        return {"connect_args": {"timeout": 30}}
    if backend == "postgresql":
        # Bulk write-back: batch executemany for UPDATEs too (psycopg2's
        # execute_batch), not only INSERTs; one round trip per page of rows.
        return {
            "pool_pre_ping": True,
            "executemany_mode": "values_plus_batch",
            "executemany_batch_page_size": 1000,
        }
    return {"pool_pre_ping": True}


def make_engine(url: sa.URL | str) -> sa.Engine:
    """An engine for a database URL (tools and tests; tasks get theirs from Connections)."""
    url = sa.make_url(url)
    return sa.create_engine(url, **engine_options(url))


def is_transient_db_error(exc: BaseException) -> bool:
    """A dropped connection or a busy database (the statement may be tried again), as
    opposed to a bug such as a violated constraint."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, sa.exc.OperationalError)


def among(conn: sa.Connection, column: sa.ColumnElement, values: Sequence) -> sa.ColumnElement:
    """``column IN values``; on PostgreSQL ``column = ANY(array)``: one parameter instead
    of one per value, which SQLAlchemy names and renders one by one (a plan's lookups
    of 5,000 ids at a time spent a second of CPU on that)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import ARRAY

        return column == sa.any_(sa.literal(list(values), ARRAY(column.type)))
    return column.in_(list(values))


def insert_ignoring_duplicates(conn: sa.Connection, table: sa.Table, keys: Sequence[str]):
    """An INSERT that leaves rows with the same unique ``keys`` alone, on every dialect."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert

        return insert(table).on_conflict_do_nothing(index_elements=list(keys))
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert

        return insert(table).on_conflict_do_nothing(index_elements=list(keys))
    if dialect in ("mysql", "mariadb"):
        return table.insert().prefix_with("IGNORE")
    raise ValueError(f"unsupported ledger database dialect {dialect!r}")


def upsert(conn: sa.Connection, table: sa.Table, keys: Sequence[str], update: Sequence[str]):
    """An INSERT that, for a row whose unique ``keys`` exist, sets only the ``update`` columns
    from the new values instead; one statement, executed with many rows at once."""
    dialect = conn.dialect.name
    if dialect in ("postgresql", "sqlite"):
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        stmt = insert(table)
        return stmt.on_conflict_do_update(
            index_elements=list(keys), set_={c: stmt.excluded[c] for c in update}
        )
    if dialect in ("mysql", "mariadb"):
        from sqlalchemy.dialects.mysql import insert

        stmt = insert(table)
        return stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in update})
    raise ValueError(f"unsupported ledger database dialect {dialect!r}")


@cache
def _read_sql(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def load_sql(name: str, dialect: str) -> sa.TextClause:
    """The statement ``include/sql/[<dialect>/]<name>.sql`` as a SQLAlchemy text clause."""
    sql_dir = get_settings().include_dir / "sql"
    for path in (sql_dir / dialect / f"{name}.sql", sql_dir / f"{name}.sql"):
        if path.is_file():
            return sa.text(_read_sql(path))
    raise FileNotFoundError(f"no SQL file {name}.sql under {sql_dir}")
