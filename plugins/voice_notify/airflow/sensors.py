"""Waiting for calls to end, without holding a worker slot."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from airflow.sdk import BaseSensorOperator

from voice_notify.airflow.defaults import campaign_date_of

log = logging.getLogger(__name__)


class CallOutcomesSensor(BaseSensorOperator):
    """Waits until every call placed for the campaign dates has ended.

    Each check is one settle pass: outcomes from stored gateway callbacks,
    else by asking the gateway (polling, where callbacks are not configured).
    Between checks the sensor defers to the triggerer, so a long ring or a
    slow gateway holds no worker slot. After ``max_wait_s`` it stops waiting
    and succeeds: calls still open stay ``dialed`` and ``voice_notice_reconcile``
    settles them later; a campaign is never failed for a slow phone network.

    :param campaign_dates: comma-separated ISO dates (templated); None: the run's own
        campaign date (its logical date, else the day it runs)
    :param max_wait_s: seconds to wait in all
    :param poll_interval_s: seconds between checks
    """

    template_fields = ("campaign_dates",)

    def __init__(
        self,
        *,
        campaign_dates: str | None = None,
        max_wait_s: float = 3600,
        poll_interval_s: float = 30,
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poll_interval_s, **kwargs)
        self.campaign_dates = campaign_dates
        self.max_wait_s = max_wait_s
        self.poll_interval_s = poll_interval_s
        self.deferrable = deferrable

    def _dates(self, context: Any) -> list[dt.date]:
        if self.campaign_dates is None:
            return [campaign_date_of(context)]
        return [
            dt.date.fromisoformat(d.strip()) for d in self.campaign_dates.split(",") if d.strip()
        ]

    def poke(self, context: Any) -> bool:
        from voice_notify.airflow import tasks as pipeline

        counts = pipeline.settle(self._dates(context))
        log.info("calls: %s", counts)
        return counts["still_open"] == 0

    def execute(self, context: Any) -> Any:
        deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.max_wait_s)
        if not self.deferrable:
            return super().execute(context)
        return self._check_or_defer(context, deadline.isoformat())

    def resume(self, context: Any, event: Any = None, deadline: str = "") -> Any:
        # `airflow dags test` hands back only the trigger's event, not the kwargs
        # given to defer(): fall back to the task's start, which a deferral keeps.
        return self._check_or_defer(context, deadline or self._deadline_from_start(context))

    def _deadline_from_start(self, context: Any) -> str:
        started = getattr(context.get("ti"), "start_date", None) or dt.datetime.now(dt.UTC)
        if started.tzinfo is None:
            started = started.replace(tzinfo=dt.UTC)
        return (started + dt.timedelta(seconds=self.max_wait_s)).isoformat()

    def _check_or_defer(self, context: Any, deadline: str) -> None:
        from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger

        if self.poke(context):
            return
        if dt.datetime.now(dt.UTC) >= dt.datetime.fromisoformat(deadline):
            log.warning(
                "stopped waiting after %s s; open calls are left to reconcile", self.max_wait_s
            )
            return
        self.defer(
            trigger=TimeDeltaTrigger(dt.timedelta(seconds=self.poll_interval_s)),
            method_name="resume",
            kwargs={"deadline": deadline},
        )
