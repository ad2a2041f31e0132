"""Staging tables: many rows in at once, then one set-based statement over them.

The write-back merges into the CRM's tables and settling updates the ledger this way:
the rows go into a TEMPORARY table (PostgreSQL's COPY, multi-row INSERTs elsewhere),
then one UPDATE ... FROM (or a deployment's MERGE) applies them all. A temporary table
belongs to its session, so concurrent tasks never see each other's.
"""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Iterator, Sequence

import sqlalchemy as sa


def drop(conn: sa.Connection, table: sa.Table) -> None:
    """Drop a staging table if this session has one (a pooled session may, after a failure)."""
    dialect = conn.dialect.name
    if dialect in ("mysql", "mariadb"):
        conn.execute(sa.text(f"DROP TEMPORARY TABLE IF EXISTS {table.name}"))
    elif dialect == "postgresql":
        conn.execute(sa.text(f"DROP TABLE IF EXISTS pg_temp.{table.name}"))
    else:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS temp.{table.name}"))


def load(conn: sa.Connection, table: sa.Table, rows: Sequence[dict]) -> None:
    """Fill a staging table: PostgreSQL's COPY where available, multi-row INSERTs elsewhere."""
    if conn.dialect.name != "postgresql":
        conn.execute(table.insert(), rows)
        return
    columns = [c.name for c in table.columns]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in rows:
        # CSV NULL is an unquoted empty field; staged strings are never empty.
        writer.writerow(["" if row.get(c) is None else row[c] for c in columns])
    buffer.seek(0)
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.copy_expert(
            f"COPY {table.name} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)", buffer
        )
    finally:
        cursor.close()


@contextlib.contextmanager
def staged(conn: sa.Connection, table: sa.Table, rows: Sequence[dict]) -> Iterator[sa.Table]:
    """``table`` (``prefixes=["TEMPORARY"]``) created and filled for the block, then dropped."""
    drop(conn, table)
    table.create(conn)
    load(conn, table, rows)
    try:
        yield table
    finally:
        drop(conn, table)
