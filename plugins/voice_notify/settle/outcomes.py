"""Reconcile: settle dialed calls, schedule redials, write outcomes back to the CRM.

A call's outcome comes from the gateway's status callbacks when they arrived
(stored, verified and deduplicated in ``call_events``), else from polling the
gateway. The CRM write-back is derived from the ledger and ``call_attempts``
alone (never from what a task remembers), as bulk upserts keyed on (notice,
campaign date, attempt), so it can run any number of times with one result.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from voice_notify import ledger, reasons
from voice_notify.db import schema
from voice_notify.db.sql import load_sql
from voice_notify.gateway.base import CallState, CallStatus, GatewayError, VoiceGateway
from voice_notify.ledger import LedgerState
from voice_notify.plan.campaigns import CampaignConfig

log = logging.getLogger(__name__)

_FAILED_OUTCOMES = {
    CallState.NO_ANSWER: reasons.CALL_NO_ANSWER,
    CallState.BUSY: reasons.CALL_BUSY,
    CallState.FAILED: reasons.CALL_FAILED,
    CallState.CANCELED: reasons.CALL_CANCELED,
}
ANSWERING_MACHINE = "answering_machine"


def outcome_of(status: CallStatus, confirm_key: str, optout_key: str) -> str:
    """The outcome name recorded in the ledger and the CRM."""
    if status.state != CallState.COMPLETED:
        return _FAILED_OUTCOMES[status.state]
    if status.key_pressed == optout_key:
        return "opted_out"
    if status.key_pressed == confirm_key:
        return "confirmed"
    if status.answered_by == "machine":
        return ANSWERING_MACHINE
    return "completed"


def status_from_events(call_id: str, events: Sequence[sa.Row]) -> CallStatus | None:
    """The call's terminal status from its stored callbacks, or None if none is terminal.

    Callbacks may arrive twice, late or out of order: the terminal one decides,
    whenever it came, and a key press counts whichever event carried it.
    """
    terminal = [
        e for e in events if e.kind in {s.value for s in CallState} and CallState(e.kind).terminal
    ]
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
    """Ledger rows whose call was placed and has not ended yet."""
    table = schema.dispatch_ledger
    query = sa.select(table).where(
        table.c.campaign_date.in_(sorted(set(dates))), table.c.state == LedgerState.DIALED.value
    )
    return list(conn.execute(query.order_by(table.c.id)))


def _events_by_call(conn: sa.Connection, call_ids: Sequence[str]) -> dict[str, list[sa.Row]]:
    grouped: dict[str, list[sa.Row]] = defaultdict(list)
    if call_ids:
        query = sa.select(schema.call_events).where(schema.call_events.c.call_id.in_(call_ids))
        for event in conn.execute(query):
            grouped[event.call_id].append(event)
    return grouped


def settle_calls(
    ledger_engine: sa.Engine,
    dates: Iterable[dt.date],
    gateway: VoiceGateway | None,
    config: CampaignConfig,
    now: dt.datetime,
) -> ReconcileCounts:
    """One pass over the open calls of ``dates``: settle each call that has ended.

    ``gateway`` None means callbacks only (no polling). Calls still open stay
    ``dialed`` for a later pass.
    """
    counts = ReconcileCounts()
    with ledger_engine.connect() as conn:
        rows = open_calls(conn, dates)
        events = _events_by_call(conn, [r.call_id for r in rows if r.call_id])
    for row in rows:
        status = status_from_events(row.call_id, events.get(row.call_id, []))
        if status is None and gateway is not None:
            try:
                status = gateway.call_status(row.call_id)
            except GatewayError as exc:
                log.warning("call %s: status unavailable: %s", row.call_id, exc)
        if status is None or not status.terminal:
            counts.still_open += 1
            continue
        outcome, redialed = _apply_outcome(ledger_engine, row, status, config, now)
        counts.settled += 1
        counts.redials += redialed
        counts.outcomes[outcome] = counts.outcomes.get(outcome, 0) + 1
    return counts


def _apply_outcome(
    engine: sa.Engine,
    row: sa.Row,
    status: CallStatus,
    config: CampaignConfig,
    now: dt.datetime,
) -> tuple[str, bool]:
    """Record a call's end; returns the outcome and whether a redial was scheduled."""
    outcome = outcome_of(status, config.confirm_key, config.optout_key)
    ended = now.astimezone(dt.UTC).replace(tzinfo=None)
    type_config = config.notice_types.get(row.notice_type)
    policy = type_config.redial if type_config else None
    redial = (
        status.state != CallState.COMPLETED
        and policy is not None
        and outcome in policy.on
        and row.attempt < policy.max_attempts
    )
    with engine.begin() as conn:
        conn.execute(
            schema.call_attempts.update()
            .where(
                schema.call_attempts.c.ledger_id == row.id,
                schema.call_attempts.c.attempt == row.attempt,
                schema.call_attempts.c.outcome.is_(None),
            )
            .values(
                outcome=outcome,
                key_pressed=status.key_pressed,
                answered_by=status.answered_by,
                ended_at=ended,
            )
        )
        if redial:
            moved = ledger.transition(
                conn,
                row.id,
                LedgerState.SYNTHESIZED,
                from_states=[LedgerState.DIALED],
                attempt=row.attempt + 1,
                next_attempt_at=ended + dt.timedelta(minutes=policy.after_minutes),
                outcome=outcome,
                reason_code=outcome,
                idempotency_key=None,
                call_id=None,
            )
        elif status.state == CallState.COMPLETED:
            moved = ledger.transition(
                conn,
                row.id,
                LedgerState.COMPLETED,
                from_states=[LedgerState.DIALED],
                outcome=outcome,
                key_pressed=status.key_pressed,
                answered_by=status.answered_by,
                reason_code=None,
                ended_at=ended,
            )
        else:
            moved = ledger.transition(
                conn,
                row.id,
                LedgerState.FAILED,
                from_states=[LedgerState.DIALED],
                outcome=outcome,
                reason_code=outcome,
                answered_by=status.answered_by,
                ended_at=ended,
            )
    if moved:
        log.info(
            "notice %s: call %s (attempt %s) ended outcome=%s%s",
            row.notice_id,
            row.call_id,
            row.attempt,
            outcome,
            " redial scheduled" if redial else "",
        )
    return outcome, redial


# Ledger state -> the CRM notice status it settles to.
_NOTICE_STATUS = {
    LedgerState.COMPLETED: "delivered",
    LedgerState.FAILED: "undelivered",
    LedgerState.SKIPPED: "skipped",
}


@dataclass(frozen=True)
class WriteBack:
    attempts: list[dict]
    statuses: list[dict]
    opt_outs: list[dict]


def build_write_back(
    rows: Sequence[sa.Row], attempts: Sequence[sa.Row], optout_outcome: str = "opted_out"
) -> WriteBack:
    """The CRM rows that the ledger rows and ended call attempts imply."""
    attempt_rows = [
        {
            "notice_id": a.notice_id,
            "campaign_date": a.campaign_date,
            "attempt_no": a.attempt,
            "call_id": a.call_id,
            "outcome": a.outcome,
            "key_pressed": a.key_pressed,
            "audio_key": a.audio_key,
            "dialed_at": a.dialed_at,
            "ended_at": a.ended_at,
        }
        for a in attempts
        if a.outcome is not None
    ]
    opt_outs = [{"notice_id": a.notice_id} for a in attempts if a.outcome == optout_outcome]
    statuses = []
    for row in rows:
        state = LedgerState(row.state)
        if not state.terminal or row.reason_code == reasons.ALREADY_CONTACTED:
            continue  # the date that holds the claim writes this notice's status
        statuses.append(
            {
                "notice_id": row.notice_id,
                "status": _NOTICE_STATUS[state],
                "status_reason": row.outcome if state == LedgerState.COMPLETED else row.reason_code,
                "status_updated_at": row.updated_at,
            }
        )
    return WriteBack(attempt_rows, statuses, opt_outs)


def load_write_back(conn: sa.Connection, dates: Iterable[dt.date]) -> WriteBack:
    """The write-back of the given campaign dates, from the ledger database."""
    wanted = sorted(set(dates))
    rows = list(
        conn.execute(
            sa.select(schema.dispatch_ledger).where(
                schema.dispatch_ledger.c.campaign_date.in_(wanted)
            )
        )
    )
    attempts = list(
        conn.execute(
            sa.select(schema.call_attempts).where(schema.call_attempts.c.campaign_date.in_(wanted))
        )
    )
    return build_write_back(rows, attempts)


_stage = sa.MetaData()
# Staging tables for the write-back: rows go in as multi-row INSERTs, then one
# set-based statement per SQL file merges them into the CRM's own tables.
_STAGES = {
    "attempts": sa.Table(
        "vn_stage_contact_attempts",
        _stage,
        sa.Column("notice_id", sa.Integer),
        sa.Column("campaign_date", sa.Date),
        sa.Column("attempt_no", sa.Integer),
        sa.Column("call_id", sa.String(64)),
        sa.Column("outcome", sa.String(32)),
        sa.Column("key_pressed", sa.String(4)),
        sa.Column("audio_key", sa.String(255)),
        sa.Column("dialed_at", sa.DateTime),
        sa.Column("ended_at", sa.DateTime),
        prefixes=["TEMPORARY"],
    ),
    "statuses": sa.Table(
        "vn_stage_notice_status",
        _stage,
        sa.Column("notice_id", sa.Integer),
        sa.Column("status", sa.String(16)),
        sa.Column("status_reason", sa.String(64)),
        sa.Column("status_updated_at", sa.DateTime),
        prefixes=["TEMPORARY"],
    ),
    "opt_outs": sa.Table(
        "vn_stage_opt_outs", _stage, sa.Column("notice_id", sa.Integer), prefixes=["TEMPORARY"]
    ),
}
_MERGES = {
    "attempts": "merge_contact_attempts",
    "statuses": "apply_notice_status",
    "opt_outs": "apply_opt_outs",
}


def _drop_stage(conn: sa.Connection, table: sa.Table) -> None:
    dialect = conn.dialect.name
    if dialect in ("mysql", "mariadb"):
        conn.execute(sa.text(f"DROP TEMPORARY TABLE IF EXISTS {table.name}"))
    elif dialect == "postgresql":
        conn.execute(sa.text(f"DROP TABLE IF EXISTS pg_temp.{table.name}"))
    else:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS temp.{table.name}"))


def _load_stage(conn: sa.Connection, stage: sa.Table, rows: Sequence[dict]) -> None:
    """Fill a staging table: PostgreSQL's COPY where available, multi-row INSERTs elsewhere."""
    if conn.dialect.name != "postgresql":
        conn.execute(stage.insert(), rows)
        return
    columns = [c.name for c in stage.columns]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in rows:
        # CSV NULL is an unquoted empty field; real strings here are never empty.
        writer.writerow(["" if row.get(c) is None else row[c] for c in columns])
    buffer.seek(0)
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.copy_expert(
            f"COPY {stage.name} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)", buffer
        )
    finally:
        cursor.close()


def write_back(crm_engine: sa.Engine, plan: WriteBack) -> dict[str, int]:
    """Apply the write-back in one transaction: stage the rows, then merge set-based."""
    dialect = crm_engine.dialect.name
    batches = {"attempts": plan.attempts, "statuses": plan.statuses, "opt_outs": plan.opt_outs}
    with crm_engine.begin() as conn:
        for name, rows in batches.items():
            if not rows:
                continue
            stage = _STAGES[name]
            _drop_stage(conn, stage)  # a pooled session may hold one from a failed run
            stage.create(conn)
            _load_stage(conn, stage, rows)
            conn.execute(load_sql(_MERGES[name], dialect))
            _drop_stage(conn, stage)
    return {name: len(rows) for name, rows in batches.items()}
