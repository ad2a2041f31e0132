"""Staging tables: many rows in at once, then one set-based statement over them.

The write-back merges into the CRM's tables and settling updates the ledger this way:
the rows go into a TEMPORARY table (PostgreSQL's COPY, multi-row INSERTs elsewhere),
then one UPDATE ... FROM (or a deployment's MERGE) applies them all. A temporary table
belongs to its session, so concurrent tasks never see each other's.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import enum
import io
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence

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


# COPY's text format: a backslash, a tab, a newline and a carriage return inside a value
# are escaped; \N (unescaped) is NULL, so an empty string stays an empty string.
_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")
_COPY_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _copy_text(value: object) -> str:
    # Most values are plain text or integers: those first, and text is only rewritten
    # when it holds a character to escape (a plan encodes millions of values).
    kind = type(value)
    if kind is str:
        if _COPY_SPECIAL.search(value) is None:
            return value
        return _COPY_SPECIAL.sub(lambda m: _COPY_ESCAPES[m[0]], value)
    if value is None:
        return "\\N"
    if kind is int:
        return str(value)
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, enum.Enum):
        return _copy_text(value.value)
    if isinstance(value, dt.date):  # datetimes too: ISO text PostgreSQL reads as given
        return value.isoformat(" ") if isinstance(value, dt.datetime) else value.isoformat()
    return _copy_text(str(value))


def copy_rows(
    conn: sa.Connection, table_name: str, columns: Sequence[str], rows: Iterable[Sequence]
) -> None:
    """COPY rows (tuples in ``columns`` order) into a table (PostgreSQL only)."""
    buffer = io.StringIO()
    buffer.writelines("\t".join(map(_copy_text, row)) + "\n" for row in rows)
    buffer.seek(0)
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.copy_expert(f"COPY {table_name} ({', '.join(columns)}) FROM STDIN", buffer)
    finally:
        cursor.close()


def insert_copied(
    conn: sa.Connection,
    table: sa.Table,
    rows: Sequence[Mapping[str, object]],
    keys: Sequence[str],
    update: Sequence[str] = (),
) -> int:
    """PostgreSQL's bulk path for an insert-if-absent (or, with ``update``, an upsert) of
    many rows: the rows COPYed into a temporary table of their columns, then one
    ``INSERT ... SELECT ... ON CONFLICT`` on ``keys``. Returns the rows it reported
    inserted (or updated).

    What ``executemany`` of the same statement does, without building and sending one
    parameter set per row: a plan writes hundreds of thousands of rows.
    """
    from sqlalchemy.dialects.postgresql import insert

    if not rows:
        return 0
    columns = list(rows[0])
    name = f"vn_copy_{table.name}"
    drop(conn, sa.Table(name, sa.MetaData()))
    conn.execute(
        sa.text(
            f"CREATE TEMPORARY TABLE {name} AS SELECT {', '.join(columns)}, 0 AS vn_seq "
            f"FROM {table.name} WITH NO DATA"
        )
    )
    try:
        copy_rows(
            conn,
            name,
            [*columns, "vn_seq"],
            ((*(row[c] for c in columns), seq) for seq, row in enumerate(rows)),
        )
        source = sa.table(name, *(sa.column(c) for c in [*columns, "vn_seq"]))
        # In the order given, as executemany inserts them (serial ids follow it).
        select = sa.select(*(source.c[c] for c in columns)).order_by(source.c.vn_seq)
        statement = insert(table).from_select(columns, select)
        if update:
            statement = statement.on_conflict_do_update(
                index_elements=list(keys), set_={c: statement.excluded[c] for c in update}
            )
        else:
            statement = statement.on_conflict_do_nothing(index_elements=list(keys))
        return max(conn.execute(statement).rowcount, 0)
    finally:
        drop(conn, sa.Table(name, sa.MetaData()))
