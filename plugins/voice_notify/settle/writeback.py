"""The CRM write-back: settled notices and ended call attempts into the CRM's own tables.

Derived from the ledger and ``call_attempts`` alone (never from what a task remembers),
as bulk upserts keyed on (notice, campaign date, attempt), so it can run any number of
times with one result. Rows are staged in temporary tables of the CRM (PostgreSQL's
COPY, multi-row INSERTs elsewhere), then merged set-based by the statements in
``include/sql/`` a deployment edits for its CRM.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from voice_notify.db import schema, staging
from voice_notify.db.sql import load_sql
from voice_notify.ledger import LedgerState
from voice_notify.reasons import Reason
from voice_notify.settle.outcomes import Outcome

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


def build_write_back(rows: Sequence[sa.Row], attempts: Sequence[sa.Row]) -> WriteBack:
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
    # The call's opt-out is the customer's: written once, from the call's own attempt.
    opt_outs = [{"notice_id": a.notice_id} for a in attempts if a.outcome == Outcome.OPTED_OUT]
    attempt_rows += _carried_attempts(rows, attempts)
    statuses = []
    for row in rows:
        state = LedgerState(row.state)
        if not state.terminal or row.reason_code == Reason.ALREADY_CONTACTED:
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


def _carried_attempts(rows: Sequence[sa.Row], attempts: Sequence[sa.Row]) -> list[dict]:
    """The contact attempts of the notices a merged call carried besides its lead: the
    lead's attempts, each with the outcome it had for this notice (its own confirm key
    decides confirmed or completed). A notice left out of the call at its n-th attempt
    (skipped at dial) was in the calls before that one only."""
    riders = [row for row in rows if getattr(row, "call_with", None) is not None]
    if not riders:
        return []  # no merged call on these dates
    by_ledger: dict[int, list[sa.Row]] = {}
    for attempt in attempts:
        if attempt.outcome is not None:
            by_ledger.setdefault(attempt.ledger_id, []).append(attempt)
    carried = []
    for row in riders:
        last = row.attempt - (row.state == LedgerState.SKIPPED)
        for a in by_ledger.get(row.call_with, ()):
            if a.attempt > last:
                continue
            outcome = a.outcome
            if outcome in (Outcome.CONFIRMED, Outcome.COMPLETED):
                heard = a.key_pressed is not None and a.key_pressed == row.confirm_key
                outcome = Outcome.CONFIRMED.value if heard else Outcome.COMPLETED.value
            carried.append(
                {
                    "notice_id": row.notice_id,
                    "campaign_date": a.campaign_date,
                    "attempt_no": a.attempt,
                    "call_id": a.call_id,
                    "outcome": outcome,
                    "key_pressed": a.key_pressed,
                    "audio_key": a.audio_key,
                    "dialed_at": a.dialed_at,
                    "ended_at": a.ended_at,
                }
            )
    return carried


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


# Staging tables for the write-back (``voice_notify.db.staging``): one set-based
# statement per SQL file merges them into the CRM's own tables.
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


def write_back(crm_engine: sa.Engine, plan: WriteBack) -> dict[str, int]:
    """Apply the write-back in one transaction: stage the rows, then merge set-based."""
    dialect = crm_engine.dialect.name
    batches = {"attempts": plan.attempts, "statuses": plan.statuses, "opt_outs": plan.opt_outs}
    with crm_engine.begin() as conn:
        for name, rows in batches.items():
            if not rows:
                continue
            with staging.staged(conn, _STAGES[name], rows):
                conn.execute(load_sql(_MERGES[name], dialect))
    return {name: len(rows) for name, rows in batches.items()}
