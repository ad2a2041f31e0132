"""Reconcile: settle dialed calls from the gateway, then write outcomes back to the CRM.

The CRM write-back is derived from the ledger alone (never from what a task
remembers), as bulk upserts keyed on (notice, campaign date, attempt), so it
can run any number of times with the same result.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from voice_notify import ledger, reasons
from voice_notify.db import load_sql
from voice_notify.gateway.base import CallState, CallStatus, GatewayTransientError, VoiceGateway
from voice_notify.ledger import LedgerState

log = logging.getLogger(__name__)

_FAILED_REASONS = {
    CallState.NO_ANSWER: reasons.CALL_NO_ANSWER,
    CallState.BUSY: reasons.CALL_BUSY,
    CallState.FAILED: reasons.CALL_FAILED,
    CallState.CANCELED: reasons.CALL_CANCELED,
}


def outcome_of(status: CallStatus, confirm_key: str, optout_key: str) -> str:
    """The outcome name recorded in the ledger and the CRM."""
    if status.state != CallState.COMPLETED:
        return _FAILED_REASONS[status.state]
    if status.key_pressed == optout_key:
        return "opted_out"
    if status.key_pressed == confirm_key:
        return "confirmed"
    return "completed"


@dataclass
class ReconcileCounts:
    settled: int = 0
    still_open: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


def settle_calls(
    ledger_engine: sa.Engine,
    campaign_date: dt.date,
    gateway: VoiceGateway,
    *,
    confirm_key: str,
    optout_key: str,
    timeout_s: float,
    poll_interval_s: float,
    clock: Callable[[], float] = time.monotonic,
) -> ReconcileCounts:
    """Poll the gateway for every dialed call of the date until terminal or ``timeout_s``.

    Calls still open at the deadline stay ``dialed``; a later reconcile settles them.
    """
    counts = ReconcileCounts()
    with ledger_engine.connect() as conn:
        open_rows = {
            r.id: r for r in ledger.rows_for_date(conn, campaign_date, [LedgerState.DIALED])
        }
    deadline = clock() + timeout_s
    while open_rows:
        for row_id, row in list(open_rows.items()):
            try:
                status = gateway.call_status(row.call_id)
            except GatewayTransientError as exc:
                log.warning("call %s: status unavailable: %s", row.call_id, exc)
                continue
            if not status.terminal:
                continue
            outcome = outcome_of(status, confirm_key, optout_key)
            to_state = (
                LedgerState.COMPLETED if status.state == CallState.COMPLETED else LedgerState.FAILED
            )
            with ledger_engine.begin() as conn:
                ledger.transition(
                    conn,
                    row_id,
                    to_state,
                    from_states=[LedgerState.DIALED],
                    outcome=outcome,
                    key_pressed=status.key_pressed,
                    reason_code=None if to_state == LedgerState.COMPLETED else outcome,
                    ended_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
                )
            counts.settled += 1
            counts.outcomes[outcome] = counts.outcomes.get(outcome, 0) + 1
            log.info("notice %s: call %s ended outcome=%s", row.notice_id, row.call_id, outcome)
            del open_rows[row_id]
        if not open_rows or clock() >= deadline:
            break
        time.sleep(poll_interval_s)
    counts.still_open = len(open_rows)
    return counts


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


def build_write_back(rows: Sequence[sa.Row], optout_outcome: str = "opted_out") -> WriteBack:
    """The CRM rows that the settled ledger rows of a date imply."""
    attempts, statuses, opt_outs = [], [], []
    for row in rows:
        state = LedgerState(row.state)
        if not state.terminal:
            continue
        if row.call_id:
            attempts.append(
                {
                    "notice_id": row.notice_id,
                    "campaign_date": row.campaign_date,
                    "attempt_no": row.attempt,
                    "call_id": row.call_id,
                    "outcome": row.outcome or row.reason_code or state.value,
                    "key_pressed": row.key_pressed,
                    "audio_key": row.audio_key,
                    "dialed_at": row.dialed_at,
                    "ended_at": row.ended_at,
                }
            )
        if row.outcome == optout_outcome:
            opt_outs.append({"notice_id": row.notice_id})
        if row.reason_code == reasons.ALREADY_CONTACTED:
            continue  # the date that holds the claim writes this notice's status
        statuses.append(
            {
                "notice_id": row.notice_id,
                "status": _NOTICE_STATUS[state],
                "status_reason": row.outcome if state == LedgerState.COMPLETED else row.reason_code,
                "status_updated_at": row.updated_at,
            }
        )
    return WriteBack(attempts, statuses, opt_outs)


def write_back(crm_engine: sa.Engine, plan: WriteBack) -> dict[str, int]:
    """Apply the write-back in one transaction, as bulk statements."""
    dialect = crm_engine.dialect.name
    with crm_engine.begin() as conn:
        if plan.attempts:
            conn.execute(load_sql("upsert_contact_attempt", dialect), plan.attempts)
        if plan.statuses:
            conn.execute(load_sql("update_notice_status", dialect), plan.statuses)
        if plan.opt_outs:
            conn.execute(load_sql("set_customer_opt_out", dialect), plan.opt_outs)
    return {
        "attempts": len(plan.attempts),
        "statuses": len(plan.statuses),
        "opt_outs": len(plan.opt_outs),
    }
