"""Staging tables: the COPY text a row becomes, and what comes back out of the table."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from tests.conftest import database_url, drop_database
from voice_notify.db import staging
from voice_notify.ledger import LedgerState

_ODD = ["", "\\N", "\\", "a\tb", "line\nbreak", "cr\r", "x\\ty", "\\\\N", "N", "t", "普通话"]


def _value(rng: random.Random) -> object:
    kind = rng.randrange(7)
    if kind == 0:
        return None
    if kind == 1:
        return rng.randrange(-(10**12), 10**12)
    if kind == 2:
        return rng.choice((True, False))
    if kind == 3:
        return rng.choice(list(LedgerState))
    if kind == 4:
        zone = rng.choice((None, dt.UTC, dt.timezone(dt.timedelta(hours=8))))
        at = dt.datetime(2026, 11, 26, rng.randrange(24), 0, 0, 1234, tzinfo=zone)
        return rng.choice((at, at.date(), Decimal("1.0"), Decimal("1.00"), 1.0))
    return "".join(rng.choice(_ODD) for _ in range(rng.randrange(4)))


def test_a_line_is_the_same_as_escaping_every_value_on_its_own() -> None:
    # The joined-and-checked fast path against the value-by-value path.
    # Also with the answers remembered across the rows of one COPY.
    rng = random.Random(5)
    remembered = staging._remembered_text()
    for _ in range(20000):
        row = tuple(_value(rng) for _ in range(rng.randrange(1, 8)))
        expected = "\t".join(map(staging._copy_text, row)) + "\n"
        assert staging.copy_line(row) == expected, row
        assert staging.copy_line(row, remembered) == expected, row


_items = sa.Table(
    "vn_test_staged",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("text", sa.Text, nullable=True),
    sa.Column("flag", sa.Boolean, nullable=True),
    prefixes=["TEMPORARY"],
)


def test_staged_rows_come_back_as_sent_on_postgresql(tmp_path: Path) -> None:
    url = database_url("postgresql", tmp_path)
    from voice_notify.db.sql import make_engine

    engine = make_engine(url)
    rows = [
        {"id": index, "text": text, "flag": index % 3 == 0 if index % 5 else None}
        for index, text in enumerate([*_ODD, None, '{"json": "a\\"b\\nc"}', str(uuid.uuid4())])
    ]
    try:
        with engine.begin() as conn, staging.staged(conn, _items, rows) as table:
            back = [r._asdict() for r in conn.execute(sa.select(table).order_by(table.c.id))]
        assert back == rows
    finally:
        engine.dispose()
        drop_database(url)
