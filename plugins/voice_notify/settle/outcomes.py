"""Reconcile: settle dialed calls, schedule redials, write outcomes back to the CRM.

A call's outcome comes from the gateway's status callbacks when they arrived
(stored, verified and deduplicated in ``call_events``), else from polling the
gateway. The CRM write-back is derived from the ledger and ``call_attempts``
alone (never from what a task remembers), as bulk upserts keyed on (notice,
campaign date, attempt), so it can run any number of times with one result.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import sqlalchemy as sa

from voice_notify import ledger
from voice_notify.db import schema, staging
from voice_notify.gateway.base import CallState, CallStatus, VoiceGateway, call_statuses
from voice_notify.ledger import LedgerState
from voice_notify.plan.campaigns import CampaignConfig, RedialPolicy
from voice_notify.reasons import Reason

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    """How one call attempt ended (ledger and ``call_attempts`` ``outcome``)."""

    COMPLETED = "completed"  # answered, heard, no key
    CONFIRMED = "confirmed"  # the confirm key (1)
    OPTED_OUT = "opted_out"  # the opt-out key (9): the CRM's voice_opt_out is set
    ANSWERING_MACHINE = "answering_machine"
    NO_ANSWER = Reason.CALL_NO_ANSWER.value
    BUSY = Reason.CALL_BUSY.value
    CALL_FAILED = Reason.CALL_FAILED.value
    CALL_CANCELED = Reason.CALL_CANCELED.value
    CALL_DECLINED = Reason.CALL_DECLINED.value
    REJECTED = "rejected"  # the gateway refused the request (never rang)
    NOT_SENT = "not_sent"  # a call left in dialing that the gateway never had

    @property
    def reached(self) -> bool:
        """Whether the customer heard the notice."""
        return self in (Outcome.COMPLETED, Outcome.CONFIRMED, Outcome.OPTED_OUT)


_FAILED_OUTCOMES = {
    CallState.NO_ANSWER: Outcome.NO_ANSWER,
    CallState.BUSY: Outcome.BUSY,
    CallState.FAILED: Outcome.CALL_FAILED,
    CallState.CANCELED: Outcome.CALL_CANCELED,
    CallState.DECLINED: Outcome.CALL_DECLINED,
}


def outcome_of(status: CallStatus, confirm_key: str, optout_key: str) -> Outcome:
    """The outcome name recorded in the ledger and the CRM.

    An opt-out key decides whatever state the call ended in (a call cut after the
    customer pressed it still carries the opt-out to the CRM).
    """
    if status.key_pressed == optout_key:
        return Outcome.OPTED_OUT
    if status.state != CallState.COMPLETED:
        return _FAILED_OUTCOMES[status.state]
    if status.key_pressed == confirm_key:
        return Outcome.CONFIRMED
    if status.answered_by == "machine":
        return Outcome.ANSWERING_MACHINE
    return Outcome.COMPLETED


_TERMINAL_KINDS = frozenset(s.value for s in CallState if s.terminal)


def status_from_events(call_id: str, events: Sequence[sa.Row]) -> CallStatus | None:
    """The call's terminal status from its stored callbacks, or None if none is terminal.

    Callbacks may arrive twice, late or out of order: the terminal one decides,
    whenever it came, and a key press counts whichever event carried it.
    """
    terminal = [e for e in events if e.kind in _TERMINAL_KINDS]
    if not terminal:
        return None
    final = max(terminal, key=lambda e: e.sequence)
    key = next(
        (e.key_pressed for e in sorted(events, key=lambda e: e.sequence) if e.key_pressed), None
    )
    answered_by = next((e.answered_by for e in events if e.answered_by), None)
    return CallStatus(
        call_id=call_id,
        idempotency_key=final.idempotency_key or "",
        state=CallState(final.kind),
        key_pressed=key,
        duration_s=final.duration_s,
        answered_by=answered_by,
    )


@dataclass
class ReconcileCounts:
    settled: int = 0
    still_open: int = 0
    redials: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "settled": self.settled,
            "still_open": self.still_open,
            "redials": self.redials,
            "outcomes": dict(sorted(self.outcomes.items())),
        }


def open_calls(conn: sa.Connection, dates: Iterable[dt.date]) -> list[sa.Row]:
    """Ledger rows whose call was placed and has not ended yet (a merged call's second
    notice is settled with its lead, in ``apply_outcomes``)."""
    table = schema.dispatch_ledger
    query = sa.select(table).where(
        table.c.campaign_date.in_(sorted(set(dates))),
        table.c.state == LedgerState.DIALED.value,
        table.c.call_with.is_(None),
    )
    return list(conn.execute(query.order_by(table.c.id)))


# Ids per IN (...) list: SQLite allows 32,766 parameters; smaller lists plan well everywhere.
_CHUNK = 5000


def _chunks(items: Sequence, size: int = _CHUNK):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _events_by_call(conn: sa.Connection, call_ids: Sequence[str]) -> dict[str, list[sa.Row]]:
    grouped: dict[str, list[sa.Row]] = defaultdict(list)
    for chunk in _chunks(list(call_ids)):
        query = sa.select(schema.call_events).where(schema.call_events.c.call_id.in_(chunk))
        for event in conn.execute(query):
            grouped[event.call_id].append(event)
    return grouped


def _ended_calls(
    rows: Sequence[sa.Row], events: dict[str, list[sa.Row]], gateway: VoiceGateway | None
) -> tuple[list[tuple[sa.Row, CallStatus]], int]:
    """Each open row's terminal status (callbacks first, else the gateway); and how many
    are still open."""
    ended, still_open = [], 0
    statuses = {r.call_id: status_from_events(r.call_id, events.get(r.call_id, [])) for r in rows}
    unknown = [call_id for call_id, status in statuses.items() if status is None and call_id]
    if unknown and gateway is not None:
        # Polling, where callbacks are not configured or did not come: in bulk.
        statuses.update(call_statuses(gateway, unknown))
    for row in rows:
        status = statuses.get(row.call_id)
        if status is None or not status.terminal:
            still_open += 1
        else:
            ended.append((row, status))
    return ended, still_open


def settle_calls(
    ledger_engine: sa.Engine,
    dates: Iterable[dt.date],
    gateway: VoiceGateway | None,
    config: CampaignConfig,
    now: dt.datetime,
) -> ReconcileCounts:
    """One pass over the open calls of ``dates``: settle every call that has ended.

    ``gateway`` None means callbacks only (no polling). Calls still open stay
    ``dialed`` for a later pass. The writes are set-based: one statement per kind of
    change over all the settled calls (``apply_outcomes``), so a day of 100,000 calls
    settles in seconds.
    """
    counts = ReconcileCounts()
    with ledger_engine.connect() as conn:
        rows = open_calls(conn, dates)
        events = _events_by_call(conn, [r.call_id for r in rows if r.call_id])
    ended, counts.still_open = _ended_calls(rows, events, gateway)
    for chunk in _chunks(ended):
        for outcome, settlement in apply_outcomes(ledger_engine, chunk, config, now):
            counts.settled += 1
            counts.redials += settlement is Settlement.REDIAL
            counts.outcomes[outcome] = counts.outcomes.get(outcome, 0) + 1
    return counts


class Settlement(StrEnum):
    """What a call's end does to its ledger row."""

    COMPLETE = "complete"  # answered: the notice is delivered
    REDIAL = "redial"  # another attempt of the same row, after the policy's wait
    FAIL = "fail"  # unanswered and no attempt left


def settlement_of(
    status: CallStatus, outcome: Outcome, attempt: int, policy: RedialPolicy | None
) -> Settlement:
    """The redial policy applied to one ended call attempt."""
    if status.state == CallState.COMPLETED or outcome is Outcome.OPTED_OUT:
        return Settlement.COMPLETE
    if policy is not None and outcome in policy.on and attempt < policy.max_attempts:
        return Settlement.REDIAL
    return Settlement.FAIL


def _settled_values(
    row: sa.Row,
    settlement: Settlement,
    status: CallStatus,
    outcome: Outcome,
    ended: dt.datetime,
    policy: RedialPolicy | None,
) -> dict:
    """The ledger row's new values for its settlement (all keys, for one executemany)."""
    values = {
        "b_id": row.id,
        "b_state": LedgerState.COMPLETED.value,
        "b_attempt": row.attempt,
        "b_next_attempt_at": row.next_attempt_at,
        "b_outcome": outcome.value,
        "b_key_pressed": status.key_pressed,
        "b_answered_by": status.answered_by,
        "b_reason_code": None,
        "b_ended_at": ended,
        "b_idempotency_key": row.idempotency_key,
        "b_call_id": row.call_id,
    }
    if settlement is Settlement.REDIAL:
        assert policy is not None
        values.update(
            b_state=LedgerState.SYNTHESIZED.value,
            b_attempt=row.attempt + 1,
            b_next_attempt_at=ended + dt.timedelta(minutes=policy.after_minutes),
            b_reason_code=outcome.value,
            b_key_pressed=row.key_pressed,
            b_answered_by=row.answered_by,
            b_ended_at=row.ended_at,
            b_idempotency_key=None,
            b_call_id=None,
        )
    elif settlement is Settlement.FAIL:
        values.update(
            b_state=LedgerState.FAILED.value,
            b_reason_code=outcome.value,
            b_key_pressed=row.key_pressed,
        )
    return values


_SETTLED_COLUMNS = (
    "state",
    "attempt",
    "next_attempt_at",
    "outcome",
    "key_pressed",
    "answered_by",
    "reason_code",
    "ended_at",
    "idempotency_key",
    "call_id",
)
_staging = sa.MetaData()
# What one settle pass changes, staged (voice_notify.db.staging) and applied with one
# UPDATE ... FROM per table.
_ATTEMPT_ENDS = sa.Table(
    "vn_stage_attempt_ends",
    _staging,
    sa.Column("b_ledger_id", sa.Integer),
    sa.Column("b_attempt", sa.Integer),
    sa.Column("b_outcome", sa.String(32)),
    sa.Column("b_key_pressed", sa.String(4)),
    sa.Column("b_answered_by", sa.String(16)),
    sa.Column("b_ended_at", sa.DateTime),
    prefixes=["TEMPORARY"],
)
_ROW_SETTLEMENTS = sa.Table(
    "vn_stage_row_settlements",
    _staging,
    sa.Column("b_id", sa.Integer),
    sa.Column("b_state", sa.String(16)),
    sa.Column("b_attempt", sa.Integer),
    sa.Column("b_next_attempt_at", sa.DateTime),
    sa.Column("b_outcome", sa.String(32)),
    sa.Column("b_key_pressed", sa.String(4)),
    sa.Column("b_answered_by", sa.String(16)),
    sa.Column("b_reason_code", sa.String(64)),
    sa.Column("b_ended_at", sa.DateTime),
    sa.Column("b_idempotency_key", sa.String(128)),
    sa.Column("b_call_id", sa.String(64)),
    prefixes=["TEMPORARY"],
)


def apply_outcomes(
    engine: sa.Engine,
    ended: Sequence[tuple[sa.Row, CallStatus]],
    config: CampaignConfig,
    now: dt.datetime,
) -> list[tuple[Outcome, Settlement]]:
    """Record the end of these calls in one transaction: the attempts, then the rows.

    Each row moves only from ``dialed`` (a conditional UPDATE, as every ledger change):
    a pass that runs beside another finds the row moved and changes nothing. The notices
    a merged call carried besides its lead (``call_with``) settle with it: the lead's
    settlement (completed, redial or failed), each its own outcome from its own confirm
    key; the call's one attempt stays the lead's.
    """
    if not ended:
        return []
    stamp = now.astimezone(dt.UTC).replace(tzinfo=None)
    attempts, ledger_rows, decided = [], [], []
    with engine.connect() as conn:
        riders = ledger.riders_of(conn, [row.id for row, _ in ended])
    for row, status in ended:
        outcome = outcome_of(status, row.confirm_key or config.confirm_key, config.optout_key)
        type_config = config.notice_types.get(row.notice_type)
        policy = type_config.redial if type_config else None
        settlement = settlement_of(status, outcome, row.attempt, policy)
        attempts.append(
            {
                "b_ledger_id": row.id,
                "b_attempt": row.attempt,
                "b_outcome": outcome.value,
                "b_key_pressed": status.key_pressed,
                "b_answered_by": status.answered_by,
                "b_ended_at": stamp,
            }
        )
        ledger_rows.append(_settled_values(row, settlement, status, outcome, stamp, policy))
        decided.append((outcome, settlement))
        for rider in riders.get(row.id, ()):
            if rider.state != LedgerState.DIALED:
                continue  # left out of the call at dial time
            own = outcome_of(status, rider.confirm_key or config.confirm_key, config.optout_key)
            ledger_rows.append(_settled_values(rider, settlement, status, own, stamp, policy))
    table, tries = schema.dispatch_ledger, schema.call_attempts
    with engine.begin() as conn:
        with staging.staged(conn, _ATTEMPT_ENDS, attempts) as ends:
            conn.execute(
                tries.update()
                .where(
                    tries.c.ledger_id == ends.c.b_ledger_id,
                    tries.c.attempt == ends.c.b_attempt,
                    tries.c.outcome.is_(None),
                )
                .values(
                    outcome=ends.c.b_outcome,
                    key_pressed=ends.c.b_key_pressed,
                    answered_by=ends.c.b_answered_by,
                    ended_at=ends.c.b_ended_at,
                )
            )
        with staging.staged(conn, _ROW_SETTLEMENTS, ledger_rows) as moves:
            # From ``dialed`` only: a row another pass settled first is left alone.
            conn.execute(
                table.update()
                .where(table.c.id == moves.c.b_id, table.c.state == LedgerState.DIALED.value)
                .values(
                    {name: moves.c[f"b_{name}"] for name in _SETTLED_COLUMNS}
                    | {"updated_at": stamp}
                )
            )
    by_kind = Counter(
        f"{o.value}{' (redial)' if s is Settlement.REDIAL else ''}" for o, s in decided
    )
    log.info("settled %d calls: %s", len(decided), dict(sorted(by_kind.items())))
    return decided
