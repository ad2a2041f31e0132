"""The dispatch ledger: one row per (notice, campaign date), the single source of
truth for "was this customer called".

Every state change is a conditional UPDATE (``WHERE state IN (...)``) whose row
count says whether this process made the change, so a retried task, a re-run
of a date or an overlapping backfill finds the work already done instead of
doing it again. A second table, ``notice_dial_claims``, holds at most one row
per notice: a campaign date must claim the notice before it may dial it, which
makes a second call for the same notice impossible even across dates.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

log = logging.getLogger(__name__)


class LedgerState(enum.StrEnum):
    PLANNED = "planned"
    SYNTHESIZED = "synthesized"
    DIALING = "dialing"
    DIALED = "dialed"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({LedgerState.COMPLETED, LedgerState.FAILED, LedgerState.SKIPPED})

# to_state -> the states it may be entered from.
_PREDECESSORS: dict[LedgerState, frozenset[LedgerState]] = {
    # From dialed: the redial policy schedules another attempt of the same row.
    LedgerState.SYNTHESIZED: frozenset({LedgerState.PLANNED, LedgerState.DIALED}),
    LedgerState.DIALING: frozenset({LedgerState.SYNTHESIZED}),
    LedgerState.DIALED: frozenset({LedgerState.DIALING}),
    LedgerState.COMPLETED: frozenset({LedgerState.DIALED, LedgerState.DIALING}),
    LedgerState.FAILED: frozenset(
        {LedgerState.PLANNED, LedgerState.SYNTHESIZED, LedgerState.DIALING, LedgerState.DIALED}
    ),
    LedgerState.SKIPPED: frozenset({LedgerState.PLANNED, LedgerState.SYNTHESIZED}),
}

metadata = sa.MetaData()

dispatch_ledger = sa.Table(
    "dispatch_ledger",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("notice_id", sa.Integer, nullable=False),
    sa.Column("campaign_date", sa.Date, nullable=False),
    sa.Column("customer_id", sa.Integer),
    sa.Column("notice_type", sa.String(48)),
    sa.Column("locale", sa.String(8)),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("reason_code", sa.String(64)),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="1"),
    sa.Column("batch_key", sa.String(255)),
    sa.Column("audio_key", sa.String(255)),
    sa.Column("engine", sa.String(64)),
    sa.Column("seed", sa.BigInteger),
    sa.Column("idempotency_key", sa.String(128)),
    sa.Column("call_id", sa.String(64)),
    sa.Column("outcome", sa.String(32)),
    sa.Column("key_pressed", sa.String(4)),
    sa.Column("answered_by", sa.String(16)),
    sa.Column("dialing_started_at", sa.DateTime),
    sa.Column("dialed_at", sa.DateTime),
    sa.Column("ended_at", sa.DateTime),
    # A redial waits until then (and until the customer's calling hours).
    sa.Column("next_attempt_at", sa.DateTime),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("notice_id", "campaign_date", name="uq_ledger_notice_date"),
    sa.Index("ix_ledger_date_state", "campaign_date", "state"),
)

notice_dial_claims = sa.Table(
    "notice_dial_claims",
    metadata,
    sa.Column("notice_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("ledger_id", sa.Integer, nullable=False),
    sa.Column("campaign_date", sa.Date, nullable=False),
    sa.Column("claimed_at", sa.DateTime, nullable=False),
)


# One row per call attempt: the history behind the ledger row's current attempt,
# and what the CRM's contact_attempts are written from.
call_attempts = sa.Table(
    "call_attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ledger_id", sa.Integer, nullable=False),
    sa.Column("notice_id", sa.Integer, nullable=False),
    sa.Column("customer_id", sa.Integer),
    sa.Column("campaign_date", sa.Date, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("idempotency_key", sa.String(128), nullable=False),
    sa.Column("gateway", sa.String(32)),
    sa.Column("call_id", sa.String(64)),
    sa.Column("outcome", sa.String(32)),
    sa.Column("key_pressed", sa.String(4)),
    sa.Column("answered_by", sa.String(16)),
    sa.Column("audio_key", sa.String(255)),
    sa.Column("dialing_started_at", sa.DateTime, nullable=False),
    sa.Column("dialed_at", sa.DateTime),
    sa.Column("ended_at", sa.DateTime),
    sa.UniqueConstraint("ledger_id", "attempt", name="uq_call_attempt"),
    sa.UniqueConstraint("idempotency_key", name="uq_call_attempt_key"),
    sa.Index("ix_call_attempts_customer", "customer_id", "dialing_started_at"),
)

# Gateway status callbacks, verified and deduplicated: a repeated callback is
# dropped by the unique key, a later status is kept even if it came first.
call_events = sa.Table(
    "call_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("call_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("sequence", sa.Integer, nullable=False),
    sa.Column("idempotency_key", sa.String(128)),
    sa.Column("key_pressed", sa.String(4)),
    sa.Column("answered_by", sa.String(16)),
    sa.Column("duration_s", sa.Float),
    sa.Column("occurred_at", sa.DateTime),
    sa.Column("received_at", sa.DateTime, nullable=False),
    sa.Column("gateway", sa.String(32)),
    sa.UniqueConstraint("call_id", "kind", "sequence", name="uq_call_event"),
)

# Numbers that must never be called (regulator lists, complaints), across campaigns.
do_not_call = sa.Table(
    "do_not_call",
    metadata,
    sa.Column("phone_e164", sa.String(20), primary_key=True),
    sa.Column("reason", sa.String(64), nullable=False),
    sa.Column("added_at", sa.DateTime, nullable=False),
)


def _utcnow() -> dt.datetime:
    # Audit timestamps record when something happened; business decisions use
    # the campaign date, never this clock.
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def ensure_schema(engine: sa.Engine) -> None:
    """Create the ledger tables where they do not exist yet."""
    metadata.create_all(engine)


def _insert_ignoring_duplicates(conn: sa.Connection, table: sa.Table, keys: Sequence[str]):
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


def record_plan(conn: sa.Connection, rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert planned or skipped rows; rows that exist for (notice, date) are left as they are.

    Each row needs ``notice_id``, ``campaign_date``, ``state`` and may carry
    ``reason_code``, ``customer_id``, ``notice_type``, ``locale``. Returns the
    number of rows inserted.
    """
    now = _utcnow()
    payload = [{**row, "created_at": now, "updated_at": now} for row in rows]
    if not payload:
        return 0
    for row in payload:
        if row["state"] not in (LedgerState.PLANNED, LedgerState.SKIPPED):
            raise ValueError(f"a plan records planned or skipped rows, not {row['state']!r}")
    stmt = _insert_ignoring_duplicates(conn, dispatch_ledger, ("notice_id", "campaign_date"))
    result = conn.execute(stmt, payload)
    return max(result.rowcount, 0)


def transition(
    conn: sa.Connection,
    ledger_id: int,
    to_state: LedgerState,
    *,
    from_states: Iterable[LedgerState] | None = None,
    **values: Any,
) -> bool:
    """Move one row to ``to_state`` if it is in one of ``from_states``.

    Returns False when the row was not in an allowed state (another attempt got
    there first, or the work is done); the caller treats that as "not mine".
    """
    allowed = _PREDECESSORS[to_state]
    sources = frozenset(from_states) if from_states is not None else allowed
    if not sources <= allowed:
        raise ValueError(f"{to_state} cannot be entered from {sorted(sources - allowed)}")
    stmt = (
        dispatch_ledger.update()
        .where(dispatch_ledger.c.id == ledger_id)
        .where(dispatch_ledger.c.state.in_([s.value for s in sources]))
        .values(state=to_state.value, updated_at=_utcnow(), **values)
    )
    return conn.execute(stmt).rowcount == 1


def update_in_state(conn: sa.Connection, ledger_id: int, state: LedgerState, **values: Any) -> bool:
    """Change fields of a row only while it is in ``state`` (no state change)."""
    stmt = (
        dispatch_ledger.update()
        .where(dispatch_ledger.c.id == ledger_id, dispatch_ledger.c.state == state.value)
        .values(updated_at=_utcnow(), **values)
    )
    return conn.execute(stmt).rowcount == 1


def claim_notice(
    conn: sa.Connection, notice_id: int, ledger_id: int, campaign_date: dt.date
) -> bool:
    """Claim the right to dial a notice; True if this ledger row holds the claim.

    The claim is a row keyed on the notice alone, so two campaign dates (an
    overlapping backfill) or two runs of one date cannot both dial the notice.
    """
    stmt = _insert_ignoring_duplicates(conn, notice_dial_claims, ("notice_id",))
    conn.execute(
        stmt,
        {
            "notice_id": notice_id,
            "ledger_id": ledger_id,
            "campaign_date": campaign_date,
            "claimed_at": _utcnow(),
        },
    )
    holder = conn.execute(
        sa.select(notice_dial_claims.c.ledger_id).where(notice_dial_claims.c.notice_id == notice_id)
    ).scalar_one()
    return holder == ledger_id


def notices_claimed_by_others(conn: sa.Connection, ledger_ids: Mapping[int, int]) -> set[int]:
    """Of ``{notice_id: ledger_id}``, the notices whose dial claim another ledger row holds."""
    if not ledger_ids:
        return set()
    claims = notice_dial_claims
    query = sa.select(claims.c.notice_id, claims.c.ledger_id).where(
        claims.c.notice_id.in_(list(ledger_ids))
    )
    return {notice for notice, holder in conn.execute(query) if holder != ledger_ids[notice]}


def rows_for_date(
    conn: sa.Connection,
    campaign_date: dt.date,
    states: Iterable[LedgerState] | None = None,
    *,
    batch_key: str | None = None,
) -> list[sa.Row]:
    """Ledger rows of one campaign date, optionally narrowed to states or one batch."""
    query = sa.select(dispatch_ledger).where(dispatch_ledger.c.campaign_date == campaign_date)
    if states is not None:
        query = query.where(dispatch_ledger.c.state.in_([s.value for s in states]))
    if batch_key is not None:
        query = query.where(dispatch_ledger.c.batch_key == batch_key)
    return list(conn.execute(query.order_by(dispatch_ledger.c.notice_id)))


def notices_settled_elsewhere(
    conn: sa.Connection, notice_ids: Sequence[int], campaign_date: dt.date
) -> set[int]:
    """Notices that another campaign date already claimed for dialing."""
    if not notice_ids:
        return set()
    query = sa.select(notice_dial_claims.c.notice_id).where(
        notice_dial_claims.c.notice_id.in_(list(notice_ids)),
        notice_dial_claims.c.campaign_date != campaign_date,
    )
    return set(conn.execute(query).scalars())


def count_by_state(conn: sa.Connection, campaign_date: dt.date) -> dict[str, int]:
    """How many rows of a campaign date are in each state."""
    query = (
        sa.select(dispatch_ledger.c.state, sa.func.count())
        .where(dispatch_ledger.c.campaign_date == campaign_date)
        .group_by(dispatch_ledger.c.state)
    )
    return {state: n for state, n in conn.execute(query)}


def insert_ignoring_duplicates(conn: sa.Connection, table: sa.Table, keys: Sequence[str]):
    """An INSERT that leaves rows with the same unique ``keys`` alone, on every dialect."""
    return _insert_ignoring_duplicates(conn, table, keys)
