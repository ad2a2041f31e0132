"""A SIP campaign on the deployed Celery stack (``make stack GATEWAY=sip``).

Issue 11's "done when": the four Airflow services and two Celery workers as separate
processes, the SIP call service and a baresip test callee as services of the stack,
one campaign date triggered through the REST API as an operator does. Then:

- the run is green and every notice of the date settled (a reconcile pass settles
  what ended after ``wait_for_calls`` looked);
- every call the callee answered was played to the end: its recording equals the
  telephone audio sent for it (the demo's comparison, ``demo._sip_matches``), and no
  call was cut (no ``interrupted`` in the call book or the ledger);
- every key the callee pressed reached the CRM: 9 opted the customer out, 1
  confirmed the notice;
- no idempotency key was placed twice: not in the callee's record of calls, the call
  book or the ledger's attempts, and the callee saw no call the book does not hold.

The campaign is small (``insurance`` on 67 customers: 10 notices, see
``SIP_CUSTOMERS``) because real calls last as long as their audio, and it calls no
customer twice: the test callee has one baresip account per number, which puts a
call on hold when a second call to the same number is answered (its recording stops
there), where a phone would say busy.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.deploy.conftest import DAILY, PATH_RECORDS, RECONCILE, Operator, unsettled

pytestmark = [pytest.mark.deploy, pytest.mark.integration]

CAMPAIGN = "insurance"
MAX_CALLS = 20
KEY_OUTCOMES = {"9": "opted_out", "1": "confirmed"}


def _crm_state(operator: Operator, notice_ids: set[int]) -> dict[int, tuple]:
    """notice id -> (status, status_reason, the customer's voice opt-out), from the CRM."""
    from voice_notify_dev import demo_crm

    notices, customers = demo_crm.notices, demo_crm.customers
    query = (
        sa.select(
            notices.c.id, notices.c.status, notices.c.status_reason, customers.c.voice_opt_out
        )
        .join(customers, customers.c.id == notices.c.customer_id)
        .where(notices.c.id.in_(notice_ids))
    )
    with operator.crm.connect() as conn:
        return {
            r.id: (r.status, r.status_reason, bool(r.voice_opt_out)) for r in conn.execute(query)
        }


def _callee_record(operator: Operator, sip_call_ids: set[str]) -> list[dict[str, Any]]:
    """The callee's calls once it has written down every call the book sent it (a line
    is written when the callee has finished the call's recording, seconds after it)."""
    deadline = time.monotonic() + 60
    while True:
        calls = operator.callee_calls()
        if sip_call_ids <= {c["call_id"] for c in calls} or time.monotonic() > deadline:
            return calls
        time.sleep(1)


def _recordings_match(operator: Operator, attempts: list[sa.Row]) -> list[dict[str, Any]]:
    """The demo's check, on the stack's folders: each answered call's recording against
    the audio sent under its SIP Call-ID."""
    from voice_notify_dev import demo, localrun

    s3 = localrun.S3Endpoint(operator.state.s3_url, None)
    return demo._sip_matches(Path(operator.state.state_dir), s3, operator.state.crm_url, attempts)


def test_a_sip_campaign_plays_every_answered_call_and_writes_back_every_key(
    sip_operator: Operator,
) -> None:
    operator = sip_operator
    operator.unpause(DAILY)
    operator.unpause(RECONCILE)
    day = operator.day
    started = time.monotonic()
    run_id = operator.trigger(
        DAILY, dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC), {"campaign": CAMPAIGN}
    )
    states = {DAILY: operator.wait_run(DAILY, run_id, timeout_s=600)}
    run_seconds = time.monotonic() - started
    open_rows, _ = unsettled(operator.ledger_rows([day]), dt.datetime.now(dt.UTC))
    if open_rows:  # calls that ended after wait_for_calls last looked
        states[RECONCILE], _ = operator.reconcile_pass()

    rows = operator.ledger_rows([day])
    attempts = [a for a in operator.attempts() if a.campaign_date == day]
    book = operator.sip_calls()
    callee = _callee_record(operator, {b.sip_call_id for b in book if b.sip_call_id})
    matches = _recordings_match(operator, attempts)

    by_sip_id = {b.sip_call_id: b for b in book if b.sip_call_id}
    attempt_of = {a.call_id: a for a in attempts}
    keys_seen = Counter(
        by_sip_id[c["call_id"]].idempotency_key for c in callee if c["call_id"] in by_sip_id
    )
    answered = [c for c in callee if c.get("answered_at") is not None]
    pressed = {}  # notice id -> key the callee pressed
    for call in callee:
        if call.get("key_sent") and call["call_id"] in by_sip_id:
            attempt = attempt_of.get(by_sip_id[call["call_id"]].call_id)
            pressed[attempt.notice_id if attempt else call["call_id"]] = call["key_sent"]
    ledger = {r.notice_id: r for r in rows}
    crm = _crm_state(operator, {n for n in pressed if isinstance(n, int)})
    keys_written = {
        n: key
        for n, key in pressed.items()
        if isinstance(n, int)
        and ledger[n].outcome == KEY_OUTCOMES[key]
        and ledger[n].key_pressed == key
        and crm[n][:2] == ("delivered", KEY_OUTCOMES[key])
        and crm[n][2] == (key == "9")
    }
    record = {
        "path": f"SIP campaign ({CAMPAIGN})",
        "run_states": states,
        "notices": len(rows),
        "calls_placed": len(attempts),
        "callee_calls": len(callee),
        "answered": len(answered),
        "played_to_end": sum(m["matches"] for m in matches),
        "keys_pressed": dict(Counter(pressed.values())),
        "keys_written_back": len(keys_written),
        "outcomes": dict(Counter(r.outcome for r in rows)),
        "interrupted": sum(b.error == "interrupted" for b in book)
        + sum(r.reason_code == "interrupted" for r in rows),
        "keys_placed_twice": {k: n for k, n in keys_seen.items() if n > 1},
        "attempt_keys_twice": sum(
            n - 1 for n in Counter(a.idempotency_key for a in attempts).values() if n > 1
        ),
        "calls_unknown_to_the_book": [
            c["call_id"] for c in callee if c["call_id"] not in by_sip_id
        ],
        "unsettled": unsettled(rows, dt.datetime.now(dt.UTC))[0],
        "run_seconds": round(run_seconds, 1),
        "seconds": round(time.monotonic() - started, 1),
        "mismatches": [m for m in matches if not m["matches"]],
    }
    PATH_RECORDS.append(record)

    assert all(s == "success" for s in states.values()), record
    assert 0 < len(attempts) <= MAX_CALLS, record
    assert not record["unsettled"], record
    # Every answered call, and no other, compared; each recording equals the audio sent.
    assert answered and len(matches) == len(answered), record
    assert not record["mismatches"], record
    assert record["interrupted"] == 0, record
    # The seed's campaign holds an opt-out (9) and a confirmation (1); both reach the CRM.
    assert set(pressed.values()) == set(KEY_OUTCOMES), record
    assert keys_written == pressed, record
    assert not record["keys_placed_twice"], record
    assert record["attempt_keys_twice"] == 0, record
    assert not record["calls_unknown_to_the_book"], record
    # One call per notice: no redials in this campaign file, so no notice rang twice.
    assert len(keys_seen) == len(callee) == len(attempts), record
