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
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import sqlalchemy as sa

from voice_notify import ledger
from voice_notify.db import schema
from voice_notify.gateway.base import CallState, CallStatus, GatewayError, VoiceGateway
from voice_notify.ledger import LedgerState
from voice_notify.logsafe import escape
from voice_notify.phone import redact_numbers
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
    """The outcome name recorded in the ledger and the CRM."""
    if status.state != CallState.COMPLETED:
        return _FAILED_OUTCOMES[status.state]
    if status.key_pressed == optout_key:
        return Outcome.OPTED_OUT
    if status.key_pressed == confirm_key:
        return Outcome.CONFIRMED
    if status.answered_by == "machine":
        return Outcome.ANSWERING_MACHINE
    return Outcome.COMPLETED


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
                log.warning(
                    "call %s: status unavailable: %s", escape(row.call_id), redact_numbers(exc)
                )
        if status is None or not status.terminal:
            counts.still_open += 1
            continue
        outcome, redialed = apply_outcome(ledger_engine, row, status, config, now)
        counts.settled += 1
        counts.redials += redialed
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
    if status.state == CallState.COMPLETED:
        return Settlement.COMPLETE
    if policy is not None and outcome in policy.on and attempt < policy.max_attempts:
        return Settlement.REDIAL
    return Settlement.FAIL


def _end_attempt(
    conn: sa.Connection, row: sa.Row, status: CallStatus, outcome: Outcome, ended: dt.datetime
) -> None:
    attempts = schema.call_attempts
    conn.execute(
        attempts.update()
        .where(
            attempts.c.ledger_id == row.id,
            attempts.c.attempt == row.attempt,
            attempts.c.outcome.is_(None),
        )
        .values(
            outcome=outcome,
            key_pressed=status.key_pressed,
            answered_by=status.answered_by,
            ended_at=ended,
        )
    )


def _settle_row(
    conn: sa.Connection,
    row: sa.Row,
    settlement: Settlement,
    status: CallStatus,
    outcome: Outcome,
    ended: dt.datetime,
    policy: RedialPolicy | None,
) -> bool:
    """Move the row out of ``dialed``; False if another pass already did."""
    if settlement is Settlement.REDIAL:
        assert policy is not None
        return ledger.transition(
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
    if settlement is Settlement.COMPLETE:
        return ledger.transition(
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
    return ledger.transition(
        conn,
        row.id,
        LedgerState.FAILED,
        from_states=[LedgerState.DIALED],
        outcome=outcome,
        reason_code=outcome,
        answered_by=status.answered_by,
        ended_at=ended,
    )


def apply_outcome(
    engine: sa.Engine,
    row: sa.Row,
    status: CallStatus,
    config: CampaignConfig,
    now: dt.datetime,
) -> tuple[Outcome, bool]:
    """Record a call's end; returns the outcome and whether a redial was scheduled."""
    outcome = outcome_of(status, config.confirm_key, config.optout_key)
    ended = now.astimezone(dt.UTC).replace(tzinfo=None)
    type_config = config.notice_types.get(row.notice_type)
    policy = type_config.redial if type_config else None
    settlement = settlement_of(status, outcome, row.attempt, policy)
    with engine.begin() as conn:
        _end_attempt(conn, row, status, outcome, ended)
        moved = _settle_row(conn, row, settlement, status, outcome, ended, policy)
    if moved:
        log.info(
            "notice %s: call %s (attempt %s) ended outcome=%s%s",
            row.notice_id,
            escape(row.call_id),
            row.attempt,
            outcome,
            " redial scheduled" if settlement is Settlement.REDIAL else "",
        )
    return outcome, settlement is Settlement.REDIAL
