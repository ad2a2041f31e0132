"""What every voice-notify DAG shares: owner, retry policy, and the campaign date of a run."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from voice_notify.settings import get_settings

log = logging.getLogger(__name__)


def task_defaults() -> dict[str, Any]:
    """``default_args`` of every voice-notify DAG: the owner and the retry policy."""
    settings = get_settings()
    return {
        "owner": "voice-notify",
        "retries": settings.task_retries,
        "retry_delay": dt.timedelta(seconds=settings.retry_delay_s),
        "execution_timeout": dt.timedelta(seconds=settings.task_timeout_s),
    }


def run_day(context: Mapping[str, Any], key: str = "logical_date") -> dt.date:
    """The day of a run's ``key`` time (its logical date by default), else the day it runs.

    Airflow 3 lets a run be triggered without a logical date (the UI's "trigger" with
    the field empty, ``"logical_date": null`` in the REST API): such a run's day is the
    day it runs (``run_after``), said once in the log. A plain date: the logical date is
    a pendulum object some database drivers reject.
    """
    moment = context.get(key)
    if moment is None:
        moment = getattr(context.get("dag_run"), "run_after", None)
        if moment is None:
            raise ValueError(
                "this run has neither a logical date nor a run_after time: trigger it with a "
                "logical date (the campaign date)"
            )
        log.info("run without a %s: the day it runs, %s", key, moment.date())
    return dt.date(moment.year, moment.month, moment.day)


def campaign_date_of(context: Mapping[str, Any]) -> dt.date:
    """The campaign date of a run: its logical date, else the day it runs."""
    return run_day(context, "logical_date")
