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

from voice_notify.db import schema, staging
from voice_notify.db.sql import among, insert_ignoring_duplicates

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


def _utcnow() -> dt.datetime:
    # Audit timestamps record when something happened; business decisions use
    # the campaign date, never this clock.
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


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
    keys = ("notice_id", "campaign_date")
    if conn.dialect.name == "postgresql":
        return staging.insert_copied(conn, schema.dispatch_ledger, payload, keys)
    stmt = insert_ignoring_duplicates(conn, schema.dispatch_ledger, keys)
    result = conn.execute(stmt, payload)
    return max(result.rowcount, 0)


def transition(
    conn: sa.Connection,
    ledger_id: int,
    to_state: LedgerState,
    *,
    from_states: Iterable[LedgerState] | None = None,
    carry: bool = True,
    **values: Any,
) -> bool:
    """Move one row to ``to_state`` if it is in one of ``from_states``.

    Returns False when the row was not in an allowed state (another attempt got
    there first, or the work is done); the caller treats that as "not mine".

    :param carry: move the notices riding in this row's call too (a merged call); False
        only where the caller knows the row has none (it saves a statement per change)
    """
    allowed = _PREDECESSORS[to_state]
    sources = frozenset(from_states) if from_states is not None else allowed
    if not sources <= allowed:
        raise ValueError(f"{to_state} cannot be entered from {sorted(sources - allowed)}")
    table = schema.dispatch_ledger
    states = [s.value for s in sources]
    changes = {"state": to_state.value, "updated_at": _utcnow(), **values}
    stmt = table.update().where(table.c.id == ledger_id, table.c.state.in_(states))
    if conn.execute(stmt.values(changes)).rowcount != 1:
        return False
    if carry:
        _carry_riders(conn, ledger_id, states, changes)
    return True


def _carry_riders(
    conn: sa.Connection, ledger_id: int, states: Sequence[str], changes: Mapping[str, Any]
) -> None:
    """The same change on the notices spoken in this row's call (``call_with``), in the
    same transaction: a merged call's notices move together, whoever moves the call.

    Only riders in the same state move: one that left earlier (skipped at dial, another
    date's claim) stays where it is. Its settlement is per rider
    (``settle.outcomes.apply_outcomes``): its own confirm key decides its outcome.
    """
    table = schema.dispatch_ledger
    conn.execute(
        table.update()
        .where(table.c.call_with == ledger_id, table.c.state.in_(list(states)))
        .values(dict(changes))
    )


def skip_planned(conn: sa.Connection, ledger_ids: Sequence[int], reason_code: str) -> int:
    """Move these rows to skipped with one reason, those still ``planned``: one statement
    per few thousand rows. Returns how many moved."""
    table = schema.dispatch_ledger
    moved = 0
    ids = list(ledger_ids)
    for start in range(0, len(ids), 5000):
        moved += conn.execute(
            table.update()
            .where(
                table.c.id.in_(ids[start : start + 5000]),
                table.c.state == LedgerState.PLANNED.value,
            )
            .values(state=LedgerState.SKIPPED.value, reason_code=reason_code, updated_at=_utcnow())
        ).rowcount
    return moved


def update_in_state(
    conn: sa.Connection, ledger_id: int, state: LedgerState, carry: bool = True, **values: Any
) -> bool:
    """Change fields of a row only while it is in ``state`` (no state change); ``carry`` as
    in :func:`transition`."""
    table = schema.dispatch_ledger
    changes = {"updated_at": _utcnow(), **values}
    stmt = table.update().where(table.c.id == ledger_id, table.c.state == state.value)
    if conn.execute(stmt.values(changes)).rowcount != 1:
        return False
    if carry:
        _carry_riders(conn, ledger_id, [state.value], changes)
    return True


def claim_notice(
    conn: sa.Connection, notice_id: int, ledger_id: int, campaign_date: dt.date
) -> bool:
    """Claim the right to dial a notice; True if this ledger row holds the claim.

    The claim is a row keyed on the notice alone, so two campaign dates (an
    overlapping backfill) or two runs of one date cannot both dial the notice.
    """
    stmt = insert_ignoring_duplicates(conn, schema.notice_dial_claims, ("notice_id",))
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
        sa.select(schema.notice_dial_claims.c.ledger_id).where(
            schema.notice_dial_claims.c.notice_id == notice_id
        )
    ).scalar_one()
    return holder == ledger_id


def notices_claimed_by_others(conn: sa.Connection, ledger_ids: Mapping[int, int]) -> set[int]:
    """Of ``{notice_id: ledger_id}``, the notices whose dial claim another ledger row holds."""
    if not ledger_ids:
        return set()
    claims = schema.notice_dial_claims
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
    query = sa.select(schema.dispatch_ledger).where(
        schema.dispatch_ledger.c.campaign_date == campaign_date
    )
    if states is not None:
        query = query.where(schema.dispatch_ledger.c.state.in_([s.value for s in states]))
    if batch_key is not None:
        query = query.where(schema.dispatch_ledger.c.batch_key == batch_key)
    return list(conn.execute(query.order_by(schema.dispatch_ledger.c.notice_id)))


def riders_of(conn: sa.Connection, ledger_ids: Sequence[int]) -> dict[int, list[sa.Row]]:
    """The rows spoken in these rows' calls (merged calls), by the lead's ledger id."""
    table = schema.dispatch_ledger
    riders: dict[int, list[sa.Row]] = {}
    ids = list(ledger_ids)
    for start in range(0, len(ids), 5000):
        query = sa.select(table).where(table.c.call_with.in_(ids[start : start + 5000]))
        for row in conn.execute(query.order_by(table.c.notice_id)):
            riders.setdefault(row.call_with, []).append(row)
    return riders


def notices_settled_elsewhere(
    conn: sa.Connection, notice_ids: Sequence[int], campaign_date: dt.date
) -> set[int]:
    """Notices that another campaign date already claimed for dialing."""
    if not notice_ids:
        return set()
    query = sa.select(schema.notice_dial_claims.c.notice_id).where(
        among(conn, schema.notice_dial_claims.c.notice_id, notice_ids),
        schema.notice_dial_claims.c.campaign_date != campaign_date,
    )
    return set(conn.execute(query).scalars())


def count_by_state(conn: sa.Connection, campaign_date: dt.date) -> dict[str, int]:
    """How many rows of a campaign date are in each state."""
    query = (
        sa.select(schema.dispatch_ledger.c.state, sa.func.count())
        .where(schema.dispatch_ledger.c.campaign_date == campaign_date)
        .group_by(schema.dispatch_ledger.c.state)
    )
    return {state: n for state, n in conn.execute(query)}


def hold_for_dry_run(conn: sa.Connection, campaign_date: dt.date, batch_key: str) -> int:
    """Mark a dry run's synthesized first attempts (``Reason.DRY_RUN``): no pass but a real
    run of the date may dial them. Returns how many rows were marked."""
    from voice_notify.reasons import Reason

    table = schema.dispatch_ledger
    return conn.execute(
        table.update()
        .where(
            table.c.campaign_date == campaign_date,
            table.c.batch_key == batch_key,
            table.c.state == LedgerState.SYNTHESIZED.value,
            table.c.attempt == 1,
        )
        .values(reason_code=Reason.DRY_RUN.value, updated_at=_utcnow())
    ).rowcount
