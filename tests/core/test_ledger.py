"""The ledger's guarantees, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import datetime as dt

import pytest

from voice_notify import ledger
from voice_notify.db import migrate
from voice_notify.ledger import LedgerState

DAY = dt.date(2026, 11, 26)


def _plan(engine, notice_id: int, day: dt.date = DAY, state=LedgerState.PLANNED) -> int:
    with engine.begin() as conn:
        ledger.record_plan(conn, [{"notice_id": notice_id, "campaign_date": day, "state": state}])
        rows = [r for r in ledger.rows_for_date(conn, day) if r.notice_id == notice_id]
    return rows[0].id


def test_one_row_per_notice_and_date(db_engine) -> None:
    migrate.upgrade(db_engine)
    with db_engine.begin() as conn:
        row = {"notice_id": 1, "campaign_date": DAY, "state": LedgerState.PLANNED}
        assert ledger.record_plan(conn, [row]) == 1
        assert ledger.record_plan(conn, [row, {**row, "notice_id": 2}]) == 1
        assert ledger.record_plan(conn, [{**row, "campaign_date": DAY + dt.timedelta(days=1)}]) == 1
        assert len(ledger.rows_for_date(conn, DAY)) == 2


def test_transitions_are_conditional(db_engine) -> None:
    migrate.upgrade(db_engine)
    row_id = _plan(db_engine, 10)
    with db_engine.begin() as conn:
        assert ledger.transition(conn, row_id, LedgerState.SYNTHESIZED, audio_key="audio/x.wav")
        # A retry of the same step finds the work done and changes nothing.
        assert not ledger.transition(conn, row_id, LedgerState.SYNTHESIZED)
        assert ledger.transition(conn, row_id, LedgerState.DIALING, idempotency_key="k")
        assert ledger.transition(conn, row_id, LedgerState.DIALED, call_id="c1")
        assert ledger.transition(conn, row_id, LedgerState.COMPLETED, outcome="confirmed")
        assert not ledger.transition(conn, row_id, LedgerState.FAILED)
        assert ledger.count_by_state(conn, DAY) == {"completed": 1}


def test_an_illegal_transition_is_a_programming_error(db_engine) -> None:
    migrate.upgrade(db_engine)
    row_id = _plan(db_engine, 11)
    with db_engine.begin() as conn, pytest.raises(ValueError, match="cannot be entered"):
        ledger.transition(conn, row_id, LedgerState.DIALED, from_states=[LedgerState.PLANNED])


def test_only_one_campaign_date_can_claim_a_notice(db_engine) -> None:
    migrate.upgrade(db_engine)
    first = _plan(db_engine, 12, DAY)
    second = _plan(db_engine, 12, DAY + dt.timedelta(days=1))
    with db_engine.begin() as conn:
        assert ledger.claim_notice(conn, 12, first, DAY)
        assert ledger.claim_notice(conn, 12, first, DAY)  # the holder may ask again
        assert not ledger.claim_notice(conn, 12, second, DAY + dt.timedelta(days=1))
        assert ledger.notices_settled_elsewhere(conn, [12], DAY + dt.timedelta(days=1)) == {12}
        assert ledger.notices_settled_elsewhere(conn, [12], DAY) == set()


def test_plan_rejects_states_beyond_planning(db_engine) -> None:
    migrate.upgrade(db_engine)
    with db_engine.begin() as conn, pytest.raises(ValueError):
        ledger.record_plan(
            conn, [{"notice_id": 1, "campaign_date": DAY, "state": LedgerState.COMPLETED}]
        )


def test_planned_rows_keep_their_text_exactly_and_inserting_twice_keeps_the_first(
    db_engine,
) -> None:
    # PostgreSQL takes them by COPY: escapes, empty text and NULL must come back as sent.
    migrate.upgrade(db_engine)
    odd = {20: "tab\there", 21: "line\nbreak\r", 22: "back\\slash \\N", 23: "", 24: None}
    rows = [
        {
            "notice_id": notice_id,
            "campaign_date": DAY,
            "state": LedgerState.SKIPPED,
            "reason_code": "opted_out" if text is None else None,
            "notice_type": text,
            "customer_id": None,
            "locale": "cmn",
        }
        for notice_id, text in odd.items()
    ]
    with db_engine.begin() as conn:
        assert ledger.record_plan(conn, rows) == 5
        again = [{**row, "locale": "en"} for row in rows[:2]]
        assert ledger.record_plan(conn, again) == 0
    with db_engine.connect() as conn:
        stored = {r.notice_id: r for r in ledger.rows_for_date(conn, DAY)}
    assert {n: stored[n].notice_type for n in odd} == odd
    assert {r.locale for r in stored.values()} == {"cmn"}
    assert stored[24].reason_code == "opted_out" and stored[20].reason_code is None
    assert stored[20].customer_id is None and stored[20].state == "skipped"
