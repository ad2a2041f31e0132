"""Staging tables: many rows in at once, then one set-based statement over them.

The write-back merges into the CRM's tables and settling updates the ledger this way:
the rows go into a TEMPORARY table (PostgreSQL's COPY, multi-row INSERTs elsewhere),
then one UPDATE ... FROM (or a deployment's MERGE) applies them all. A temporary table
belongs to its session, so concurrent tasks never see each other's.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import io
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

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
    copy_rows(conn, table.name, columns, (tuple(row.get(c) for c in columns) for row in rows))


def load_rows(conn: sa.Connection, table: sa.Table, rows: Sequence[Sequence]) -> None:
    """:func:`load` for rows as tuples in the table's column order."""
    columns = [c.name for c in table.columns]
    if conn.dialect.name != "postgresql":
        conn.execute(table.insert(), [dict(zip(columns, row, strict=True)) for row in rows])
        return
    copy_rows(conn, table.name, columns, rows)


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


def copy_line(row: Sequence, text: Callable[[object], str] = _copy_text) -> str:
    """One row in COPY's text format, with its newline.

    Joined first and checked once: when the line has one tab per column gap, no line
    break, and exactly one backslash per NULL (``\\N``), no value held a character to
    escape, so the line is right as it is. Otherwise every value is escaped on its own
    (a plan writes millions of values; hardly any needs it).

    :param text: the COPY text of a value other than text, NULL or an integer
    """
    fields = [
        value
        if type(value) is str
        else "\\N"
        if value is None
        else str(value)
        if type(value) is int
        else text(value)
        for value in row
    ]
    line = "\t".join(fields)
    if (
        line.count("\t") == len(fields) - 1
        and "\n" not in line
        and "\r" not in line
        and line.count("\\") == row.count(None)
    ):
        return line + "\n"
    return "\t".join(map(_copy_text, row)) + "\n"


def _remembered_text() -> Callable[[object], str]:
    """``_copy_text`` remembering its answers for one COPY: a plan's rows share their
    timestamps and states, and formatting a datetime costs more than looking it up.

    Only for values whose text follows from equality: naive dates and times, booleans
    and enum members (equal Decimals, or aware times in two zones, can print apart).
    """
    known: dict[tuple[type, object], str] = {}

    def text(value: object) -> str:
        kind = type(value)
        if (
            kind is bool
            or isinstance(value, enum.Enum)
            or (isinstance(value, dt.date) and getattr(value, "tzinfo", None) is None)
        ):
            key = (kind, value)  # by type too: True == 1
            made = known.get(key)
            if made is None:
                made = known[key] = _copy_text(value)
            return made
        return _copy_text(value)

    return text


def copy_rows(
    conn: sa.Connection, table_name: str, columns: Sequence[str], rows: Iterable[Sequence]
) -> None:
    """COPY rows (tuples in ``columns`` order) into a table (PostgreSQL only)."""
    text = _remembered_text()
    buffer = io.StringIO()
    buffer.writelines(copy_line(row, text) for row in rows)
    buffer.seek(0)
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.copy_expert(f"COPY {table_name} ({', '.join(columns)}) FROM STDIN", buffer)
    finally:
        cursor.close()


def _values_of(columns: Sequence[str]) -> Callable[[Mapping[str, object]], tuple]:
    """A row's values in ``columns`` order, as a tuple (whatever the number of columns)."""
    if len(columns) == 1:
        column = columns[0]
        return lambda row: (row[column],)
    return operator.itemgetter(*columns)


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
    values = _values_of(columns)
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
            ((*values(row), seq) for seq, row in enumerate(rows)),
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
