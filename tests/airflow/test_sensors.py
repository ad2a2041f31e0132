"""CallOutcomesSensor: defers while calls are open, resumes without its kwargs."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import TaskDeferred

from voice_notify.airflow import tasks as pipeline
from voice_notify.airflow.sensors import CallOutcomesSensor


@pytest.fixture
def open_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The open-call counts the next settle passes report (the ledger's answer)."""
    answers: list[int] = []

    def settle(dates):
        assert dates == [dt.date(2026, 11, 26)]
        return {"settled": 0, "still_open": answers.pop(0), "redials": 0, "outcomes": {}}

    monkeypatch.setattr(pipeline, "settle", settle)
    return answers


def _sensor(max_wait_s: float = 60) -> CallOutcomesSensor:
    return CallOutcomesSensor(
        task_id="wait_for_calls",
        campaign_dates="2026-11-26",
        max_wait_s=max_wait_s,
        poll_interval_s=1,
    )


def test_it_defers_while_calls_are_open_and_ends_when_none_are(open_calls) -> None:
    open_calls.extend([3, 1, 0])
    sensor = _sensor()
    ti = SimpleNamespace(start_date=dt.datetime.now(dt.UTC))
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({"ti": ti})
    assert deferred.value.method_name == "resume"
    # `dags test` resumes with the event only: the deadline comes from the start.
    with pytest.raises(TaskDeferred):
        sensor.resume({"ti": ti}, event=None)
    assert sensor.resume({"ti": ti}, event=None) is None
    assert open_calls == []


def test_it_stops_waiting_at_the_deadline(open_calls) -> None:
    open_calls.extend([2])
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    assert _sensor(max_wait_s=60).resume({"ti": SimpleNamespace(start_date=long_ago)}) is None
