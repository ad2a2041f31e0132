"""SQLAlchemy engines from Airflow Connections, and the SQL files a deployment edits.

Each deployment's CRM differs, so every statement that touches it lives in
``include/sql/<name>.sql``; a dialect that needs other syntax (MariaDB's
upsert) gets ``include/sql/<dialect>/<name>.sql``, which wins when present.
"""

from __future__ import annotations

import threading
from functools import cache
from pathlib import Path

import sqlalchemy as sa

from voice_notify.settings import get_settings

# Airflow connection types → SQLAlchemy drivers. MariaDB/MySQL goes through
# the pure-Python PyMySQL driver so no C client library is needed.
_DRIVERS = {
    "postgres": "postgresql+psycopg2",
    "postgresql": "postgresql+psycopg2",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
}

_engines: dict[str, sa.Engine] = {}
_engines_lock = threading.Lock()


def url_from_connection(conn_id: str) -> sa.URL:
    """The SQLAlchemy URL for an Airflow Connection (``postgres``, ``mysql`` or ``sqlite``)."""
    from airflow.sdk import BaseHook  # imported here: only tasks need Airflow

    conn = BaseHook.get_connection(conn_id)
    conn_type = (conn.conn_type or "").lower()
    if conn_type == "sqlite":
        return sa.URL.create("sqlite", database=conn.host or conn.schema)
    driver = _DRIVERS.get(conn_type)
    if driver is None:
        raise ValueError(f"connection {conn_id!r} has unsupported type {conn_type!r}")
    query = {"charset": "utf8mb4"} if driver.startswith("mysql") else {}
    return sa.URL.create(
        driver,
        username=conn.login or None,
        password=conn.password or None,
        host=conn.host or None,
        port=conn.port or None,
        database=conn.schema or None,
        query=query,
    )


def engine_for(conn_id: str) -> sa.Engine:
    """One pooled engine per connection id and process."""
    with _engines_lock:
        engine = _engines.get(conn_id)
        if engine is None:
            engine = make_engine(url_from_connection(conn_id))
            _engines[conn_id] = engine
        return engine


def make_engine(url: sa.URL | str) -> sa.Engine:
    """An engine with the options every voice-notify database needs."""
    url = sa.make_url(url)
    if url.get_backend_name() == "sqlite":
        # Airflow tasks of one run may touch the demo CRM from several processes.
        return sa.create_engine(url, connect_args={"timeout": 30})
    if url.get_backend_name() == "postgresql":
        # Bulk write-back: batch executemany for UPDATEs too (psycopg2's
        # execute_batch), not only INSERTs; one round trip per page of rows.
        return sa.create_engine(
            url,
            pool_pre_ping=True,
            executemany_mode="values_plus_batch",
            executemany_batch_page_size=1000,
        )
    return sa.create_engine(url, pool_pre_ping=True)


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
