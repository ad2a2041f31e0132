"""Operator paths on a deployed stack, through the REST API the Airflow UI uses.

In order, on one stack (a small campaign: 50 customers, a few dozen notices a date):
trigger a date; clear one mapped ``dial``; clear one mapped ``synthesize`` with its
downstream tasks; clear the whole run; backfill three past dates; backfill them again
reprocessing completed runs. After each path, one ``voice_notice_reconcile`` run, then:

- no (notice, attempt) called twice, in the simulator's own record of calls and in the
  ledger's ``call_attempts``, and no notice called from two campaign dates;
- no call outside the redial policy (attempts, redialled outcomes, ``after_minutes``),
  and no redial placed by a cleared or re-run daily ``dial`` (redials are
  ``voice_notice_reconcile``'s job);
- every notice settled (terminal, or waiting for a redial whose time has not come);
- the runs green;
- the report unchanged for every notice whose ledger row did not change.

Each path records calls placed, duplicates, run states and seconds (printed at the end
of the session). ``test_dials_on_two_workers_share_the_call_rate`` measures the
combined call rate of dial tasks running on both Celery workers at once.
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
from collections import Counter
from typing import Any

import pytest

from tests.deploy.conftest import (
    CALLS_PER_SECOND,
    DAILY,
    PATH_RECORDS,
    RECONCILE,
    Operator,
    duplicate_calls,
    ledger_snapshot,
    placed_by,
    redial_violations,
    redials_by_daily_dial,
    report_drift,
    unsettled,
)

pytestmark = [pytest.mark.deploy, pytest.mark.integration]

BACKFILL_DAYS = 3
# Several dial batches per run, so that dial tasks run on both workers at once.
TRIGGER_CONF = {"batch_size": 6}


def _observe(
    operator: Operator,
    path: str,
    dates: list[dt.date],
    started: float,
    calls_before: int,
    runs: dict[str, Any],
    reports_before: dict[dt.date, dict | None],
    ledger_before: dict[dt.date, dict],
) -> dict[str, Any]:
    """After a path: one reconcile pass, then record and return what the checks need."""
    path_started = operator.shared["path_started"]
    run_seconds = time.monotonic() - started
    runs[RECONCILE], pass_started = operator.reconcile_pass()
    calls = operator.calls()
    attempts = operator.attempts()
    rows = operator.ledger_rows(dates)
    open_rows, waiting = unsettled(rows, pass_started)
    new_calls = calls[calls_before:]
    tasks = operator.dialing_tasks(path_started)
    drift = {}
    for day in dates:
        after = ledger_snapshot(operator.ledger_rows([day]))
        changed = {
            n
            for n in after.keys() | ledger_before[day].keys()
            if after.get(n) != ledger_before[day].get(n)
        }
        if reports_before.get(day) is not None:
            drift[str(day)] = report_drift(reports_before[day], operator.report(day), changed)
    record = {
        "path": path,
        "calls_placed": len(new_calls),
        "calls_by_attempt": dict(Counter(c.attempt for c in new_calls)),
        "placed_by": placed_by(new_calls, tasks),
        "redials_by_daily_dial": redials_by_daily_dial(new_calls, tasks),
        "duplicates": duplicate_calls(calls, attempts),
        "redial_violations": redial_violations(calls, attempts, operator.campaigns_file),
        "run_states": runs,
        "unsettled": open_rows,
        "waiting_for_redial": waiting,
        "report_drift": {d: v for d, v in drift.items() if v},
        "seconds": round(time.monotonic() - started, 1),
        "run_seconds": round(run_seconds, 1),
    }
    PATH_RECORDS.append(record)
    return record


def _before(operator: Operator, dates: list[dt.date]) -> tuple[float, int, dict, dict]:
    operator.shared["path_started"] = dt.datetime.now(dt.UTC)
    reports = {day: operator.report(day) for day in dates}
    ledger = {day: ledger_snapshot(operator.ledger_rows([day])) for day in dates}
    return time.monotonic(), len(operator.calls()), reports, ledger


def _shape(operator: Operator, record: dict[str, Any], run_ids: list[str]) -> None:
    """Diagnostics for the report: plan's batch count and the mapped instances' states."""
    record["run_shape"] = [operator.run_shape(run_id) for run_id in run_ids]


def _assert_path(record: dict[str, Any]) -> None:
    problems = []
    if any(record["duplicates"].values()):
        problems.append(f"duplicate calls {record['duplicates']}")
    if record["redial_violations"]:
        problems.append(f"calls outside the redial policy {record['redial_violations']}")
    if record["redials_by_daily_dial"]:
        problems.append(f"redials placed by the daily dial {record['redials_by_daily_dial']}")
    if record["unsettled"]:
        problems.append(f"{len(record['unsettled'])} notices not settled {record['unsettled']}")
    states = record["run_states"]
    flat = [s for v in states.values() for s in (v if isinstance(v, list) else [v])]
    if any(s != "success" for s in flat):
        problems.append(f"runs not green {states}")
    if record["report_drift"]:
        problems.append(f"report changed for unchanged notices {record['report_drift']}")
    assert not problems, f"{record['path']}: " + "; ".join(problems)


def _day_run(operator: Operator) -> str:
    run_id = operator.shared.get("day_run")
    if run_id is None:
        pytest.fail("the triggered date's run did not start (see test_trigger_a_date)")
    return run_id


def test_trigger_a_date(operator: Operator) -> None:
    operator.unpause(DAILY)
    operator.unpause(RECONCILE)
    day = operator.day
    started, calls_before, reports, ledger = _before(operator, [day])
    logical = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    run_id = operator.trigger(DAILY, logical, TRIGGER_CONF)
    operator.shared["day_run"] = run_id
    state = operator.wait_run(DAILY, run_id)
    operator.shared["first_run_done"] = time.monotonic()
    record = _observe(
        operator, "trigger a date", [day], started, calls_before, {DAILY: state}, reports, ledger
    )
    operator.shared["day_calls"] = record["calls_placed"]
    _shape(operator, record, [run_id])
    assert record["calls_placed"] > 0, "the campaign should have placed calls"
    _assert_path(record)


def test_dials_on_two_workers_share_the_call_rate(operator: Operator) -> None:
    """Dial tasks of the triggered run on both Celery workers at once: the gateway must
    see at most ``VOICE_NOTIFY_CALLS_PER_SECOND`` calls a second in all (the simulator's
    acceptance times), not that rate per worker process."""
    run_id = _day_run(operator)
    owners = operator.worker_of()
    dials = operator.task_instances(run_id, "batch.dial")
    spans = {
        (owners.get(ti.external_executor_id, "?"), ti.map_index): (ti.start_date, ti.end_date)
        for ti in dials
        if ti.start_date and ti.end_date
    }
    workers = {worker for worker, _ in spans}
    # The window in which dials ran on two different workers at once.
    overlap_start = overlap_end = None
    for (w1, _i1), (s1, e1) in spans.items():
        for (w2, _i2), (s2, e2) in spans.items():
            if w1 < w2 and max(s1, s2) < min(e1, e2):
                start, end = max(s1, s2), min(e1, e2)
                overlap_start = start if overlap_start is None else min(overlap_start, start)
                overlap_end = end if overlap_end is None else max(overlap_end, end)
    calls = sorted(
        c.accepted_at
        for c in operator.calls()
        if c.campaign_date == operator.day and c.attempt == 1
    )
    record: dict[str, Any] = {
        "path": "two workers dialing at once",
        "dial_tasks": len(spans),
        "workers": sorted(workers),
        "setting_calls_per_second": CALLS_PER_SECOND,
    }
    if calls:
        in_overlap = [
            t for t in calls if overlap_start is not None and overlap_start <= t <= overlap_end
        ]
        window = in_overlap if len(in_overlap) >= 3 else calls
        elapsed = (window[-1] - window[0]).total_seconds()
        peak = max(sum(1 for u in calls if t <= u < t + dt.timedelta(seconds=1)) for t in calls)
        record.update(
            {
                "calls": len(calls),
                "calls_while_both_dialed": len(in_overlap),
                "combined_calls_per_second": round((len(window) - 1) / elapsed, 2)
                if elapsed > 0
                else None,
                "peak_calls_in_one_second": peak,
            }
        )
    PATH_RECORDS.append(record)
    assert len(workers - {"?"}) == 2, f"dial tasks ran on {workers}, not on both workers"
    assert overlap_start is not None, "no two dial tasks ran on different workers at once"
    rate = record["combined_calls_per_second"]
    said = (
        f"{rate} calls/s in all while both workers dialed ({record['calls_while_both_dialed']} "
        f"calls), peak {record['peak_calls_in_one_second']} in one second, setting "
        f"{CALLS_PER_SECOND}/s"
    )
    # Spacing calls 1/rate apart lets a one-second window hold one more call at its edge.
    assert rate is not None and rate <= CALLS_PER_SECOND * 1.1, said
    assert record["peak_calls_in_one_second"] <= CALLS_PER_SECOND + 1, said


def test_clear_one_mapped_dial(operator: Operator) -> None:
    run_id = _day_run(operator)
    day = operator.day
    started, calls_before, reports, ledger = _before(operator, [day])
    cleared = operator.clear_task(run_id, "batch.dial", 0, downstream=False)
    assert cleared == [("batch.dial", 0)], cleared
    state = operator.wait_run(DAILY, run_id)
    record = _observe(
        operator,
        "clear one mapped dial",
        [day],
        started,
        calls_before,
        {DAILY: state},
        reports,
        ledger,
    )
    _shape(operator, record, [run_id])
    _assert_path(record)


def test_clear_one_mapped_synthesize_with_downstream(operator: Operator) -> None:
    run_id = _day_run(operator)
    day = operator.day
    started, calls_before, reports, ledger = _before(operator, [day])
    cleared = operator.clear_task(run_id, "batch.synthesize", 1, downstream=True)
    assert ("batch.synthesize", 1) in cleared, cleared
    assert any(t == "batch.dial" for t, _ in cleared), cleared
    state = operator.wait_run(DAILY, run_id)
    record = _observe(
        operator,
        "clear one mapped synthesize with downstream",
        [day],
        started,
        calls_before,
        {DAILY: state},
        reports,
        ledger,
    )
    record["cleared"] = sorted({t for t, _ in cleared})
    _shape(operator, record, [run_id])
    _assert_path(record)


def test_clear_the_whole_run(operator: Operator) -> None:
    run_id = _day_run(operator)
    day = operator.day
    started, calls_before, reports, ledger = _before(operator, [day])
    operator.clear_run(run_id)
    state = operator.wait_run(DAILY, run_id)
    record = _observe(
        operator,
        "clear the whole run",
        [day],
        started,
        calls_before,
        {DAILY: state},
        reports,
        ledger,
    )
    _shape(operator, record, [run_id])
    _assert_path(record)


def _backfill(operator: Operator, reprocess: str) -> dict[str, Any]:
    last = operator.day - dt.timedelta(days=1)
    first = last - dt.timedelta(days=BACKFILL_DAYS - 1)
    dates = [first + dt.timedelta(days=n) for n in range(BACKFILL_DAYS)]
    started, calls_before, reports, ledger = _before(operator, dates)
    backfill_id = operator.backfill(first, last, reprocess)
    runs = operator.wait_backfill(backfill_id)
    states = {DAILY: [r["state"] for r in runs]}
    record = _observe(
        operator,
        f"backfill {first}..{last} reprocess={reprocess}",
        dates,
        started,
        calls_before,
        states,
        reports,
        ledger,
    )
    record["backfill_runs"] = [r["logical_date"][:10] for r in runs]
    spans = [(r["start_date"], r["end_date"]) for r in runs]
    # In date order, one at a time: each run starts after the one before it ended.
    record["one_run_at_a_time"] = all(
        later[0] is not None and earlier[1] is not None and later[0] >= earlier[1]
        for earlier, later in itertools.pairwise(spans)
    )
    _shape(operator, record, [r["dag_run_id"] for r in runs])
    return record


def test_backfill_three_past_dates(operator: Operator) -> None:
    record = _backfill(operator, "none")
    assert len(record["backfill_runs"]) == BACKFILL_DAYS, record["backfill_runs"]
    assert record["one_run_at_a_time"], record
    _assert_path(record)


def test_backfill_again_reprocessing_completed(operator: Operator) -> None:
    record = _backfill(operator, "completed")
    assert len(record["backfill_runs"]) == BACKFILL_DAYS, record["backfill_runs"]
    _assert_path(record)


def test_every_notice_settles_once_redials_are_due(operator: Operator) -> None:
    """The last reconcile pass, once every scheduled redial is due: nothing left open."""
    dates = [operator.day - dt.timedelta(days=n) for n in range(BACKFILL_DAYS + 1)]
    due = [
        r.next_attempt_at
        for r in operator.ledger_rows(dates)
        if r.state == "synthesized" and r.next_attempt_at is not None
    ]
    if due:
        latest = max(due).replace(tzinfo=dt.UTC)
        time.sleep(max(0.0, (latest - dt.datetime.now(dt.UTC)).total_seconds() + 2))
    started, calls_before, reports, ledger = _before(operator, dates)
    record = _observe(
        operator, "final reconcile pass", dates, started, calls_before, {}, reports, ledger
    )
    assert record["waiting_for_redial"] == 0, record
    _assert_path(record)
