"""Settle logic on its own: the outcome of a call, its settlement, and the write-back rows."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from voice_notify.gateway.base import CallState, CallStatus
from voice_notify.plan.campaigns import RedialPolicy
from voice_notify.settle.outcomes import (
    Outcome,
    Settlement,
    outcome_of,
    settlement_of,
    status_from_events,
)
from voice_notify.settle.writeback import build_write_back

DAY = dt.date(2026, 11, 26)
BUSY_TWICE = RedialPolicy(on=frozenset({"busy", "no_answer"}), after_minutes=30, max_attempts=2)


def _status(state: CallState, key: str | None = None, answered_by: str | None = None):
    return CallStatus("c1", "k", state, key_pressed=key, answered_by=answered_by)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (_status(CallState.COMPLETED, "1"), Outcome.CONFIRMED),
        (_status(CallState.COMPLETED, "9"), Outcome.OPTED_OUT),
        (_status(CallState.COMPLETED, "5"), Outcome.COMPLETED),
        (_status(CallState.COMPLETED, answered_by="machine"), Outcome.ANSWERING_MACHINE),
        (_status(CallState.BUSY), Outcome.BUSY),
        (_status(CallState.NO_ANSWER), Outcome.NO_ANSWER),
        (_status(CallState.FAILED), Outcome.CALL_FAILED),
        (_status(CallState.CANCELED), Outcome.CALL_CANCELED),
    ],
)
def test_outcome_of_a_call(status, outcome) -> None:
    assert outcome_of(status, confirm_key="1", optout_key="9") is outcome


def test_an_opt_out_key_wins_over_a_machine_guess() -> None:
    status = _status(CallState.COMPLETED, "9", answered_by="machine")
    assert outcome_of(status, "1", "9") is Outcome.OPTED_OUT


@pytest.mark.parametrize(
    ("state", "attempt", "policy", "settlement"),
    [
        (CallState.COMPLETED, 1, BUSY_TWICE, Settlement.COMPLETE),
        (CallState.BUSY, 1, BUSY_TWICE, Settlement.REDIAL),
        (CallState.BUSY, 2, BUSY_TWICE, Settlement.FAIL),  # attempts used up
        (CallState.FAILED, 1, BUSY_TWICE, Settlement.FAIL),  # not an outcome to redial
        (CallState.NO_ANSWER, 1, None, Settlement.FAIL),  # no policy for the type
    ],
)
def test_the_redial_policy_decides_the_settlement(state, attempt, policy, settlement) -> None:
    status = _status(state)
    outcome = outcome_of(status, "1", "9")
    assert settlement_of(status, outcome, attempt, policy) is settlement


def _event(kind: str, sequence: int, key: str | None = None):
    return SimpleNamespace(
        kind=kind,
        sequence=sequence,
        key_pressed=key,
        answered_by=None,
        idempotency_key="vn-1-2026-11-26-1",
        duration_s=12.0 if kind == "completed" else None,
    )


def test_callbacks_decide_whatever_their_order_and_repeats() -> None:
    events = [
        _event("completed", 4),
        _event("ringing", 1),
        _event("digits", 3, "9"),
        _event("completed", 4),
        _event("in_progress", 2),
    ]
    status = status_from_events("c1", events)
    assert status is not None and status.state == CallState.COMPLETED
    assert status.key_pressed == "9"
    assert status_from_events("c1", [_event("ringing", 1), _event("in_progress", 2)]) is None


def _ledger_row(notice_id: int, state: str, reason: str | None = None, outcome=None):
    return SimpleNamespace(
        notice_id=notice_id,
        state=state,
        reason_code=reason,
        outcome=outcome,
        updated_at=dt.datetime(2026, 11, 26, 10),
    )


def _attempt(notice_id: int, attempt: int, outcome: str | None):
    return SimpleNamespace(
        notice_id=notice_id,
        campaign_date=DAY,
        attempt=attempt,
        call_id=f"c{notice_id}-{attempt}",
        outcome=outcome,
        key_pressed="9" if outcome == Outcome.OPTED_OUT else None,
        audio_key="audio/x.wav",
        dialed_at=dt.datetime(2026, 11, 26, 9),
        ended_at=dt.datetime(2026, 11, 26, 9, 1),
    )


def test_the_write_back_follows_the_ledger_alone() -> None:
    rows = [
        _ledger_row(1, "completed", outcome=Outcome.OPTED_OUT),
        _ledger_row(2, "failed", reason="busy", outcome=Outcome.BUSY),
        _ledger_row(3, "skipped", reason="invalid_phone"),
        _ledger_row(4, "dialed"),  # still open: not written yet
        _ledger_row(5, "skipped", reason="already_contacted"),  # the claiming date writes it
    ]
    attempts = [
        _attempt(1, 1, Outcome.OPTED_OUT),
        _attempt(2, 1, Outcome.BUSY),
        _attempt(2, 2, Outcome.BUSY),
        _attempt(4, 1, None),
    ]
    plan = build_write_back(rows, attempts)
    assert [(a["notice_id"], a["attempt_no"]) for a in plan.attempts] == [(1, 1), (2, 1), (2, 2)]
    assert {s["notice_id"]: (s["status"], s["status_reason"]) for s in plan.statuses} == {
        1: ("delivered", "opted_out"),
        2: ("undelivered", "busy"),
        3: ("skipped", "invalid_phone"),
    }
    assert plan.opt_outs == [{"notice_id": 1}]
    assert build_write_back(rows, attempts) == plan  # the same ledger, the same write-back
